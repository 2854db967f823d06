"""Key-value buckets of the NATS backend: JetStream KV, one value per key (history 1).

``keys()`` does not use nats-py's (a watch: an ephemeral push consumer per call), which in
a cluster that just lost a node kept timing out for minutes; it asks the stream which
subjects hold a message (STREAM.INFO with a subjects filter, answered by the stream's
leader like any get) and drops deleted keys with one get each.
"""

from __future__ import annotations

import asyncio

import nats.js.errors
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue as JsKeyValue

from keiko.store.nats_api import JsApi, nats_errors
from keiko.store.nats_codec import key_from_kv, kv_key


class NatsKeyValue:
    """keiko's KeyValue over a JetStream KV bucket; any string works as a key."""

    def __init__(self, kv: JsKeyValue, api: JsApi, bucket: str) -> None:
        self._kv, self._api = kv, api
        self._stream, self._prefix = f"KV_{bucket}", f"$KV.{bucket}."

    async def get(self, key: str) -> bytes | None:
        with nats_errors("kv get"):
            try:
                entry = await self._kv.get(kv_key(key))
            except nats.js.errors.KeyNotFoundError:  # also deleted keys
                return None
        return entry.value or b""

    async def put(self, key: str, value: bytes) -> None:
        with nats_errors("kv put"):
            await self._kv.put(kv_key(key), bytes(value))

    async def swap(self, key: str, expected: bytes | None, value: bytes) -> bool:
        stored = kv_key(key)
        with nats_errors("kv swap"):
            try:
                if expected is None:
                    # create() also re-creates over a delete marker (with last=its revision).
                    await self._kv.create(stored, bytes(value))
                    return True
                entry = await self._kv.get(stored)
                if (entry.value or b"") != expected:
                    return False
                await self._kv.update(stored, bytes(value), last=entry.revision)
                return True
            except (
                nats.js.errors.KeyWrongLastSequenceError,  # another writer got there first
                nats.js.errors.KeyNotFoundError,  # absent/deleted, or vanished mid-create
            ):
                return False

    async def delete(self, key: str) -> None:
        with nats_errors("kv delete"):
            await self._kv.delete(kv_key(key))

    async def keys(self) -> list[str]:
        body = {"subjects_filter": f"{self._prefix}>"}
        info = await self._api.request(f"STREAM.INFO.{self._stream}", body)
        subjects = (info.get("state") or {}).get("subjects") or {}
        keys = sorted(key_from_kv(s.removeprefix(self._prefix)) for s in subjects)
        values = await asyncio.gather(*(self.get(key) for key in keys))
        return [key for key, value in zip(keys, values, strict=True) if value is not None]


async def open_bucket(js: JetStreamContext, api: JsApi, name: str, replicas: int) -> NatsKeyValue:
    """The bucket ``name``, created (file storage, history 1) when it does not exist."""
    with nats_errors("kv bucket"):
        try:
            kv = await js.key_value(name)
        except nats.js.errors.BucketNotFoundError:
            kv = await js.create_key_value(
                bucket=name,
                history=1,
                storage=nats.js.api.StorageType.FILE,
                replicas=replicas,
            )
    return NatsKeyValue(kv, api, name)
