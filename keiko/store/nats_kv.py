"""Key-value buckets of the NATS backend: JetStream KV, one value per key (history 1)."""

from __future__ import annotations

import nats.js.errors
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue as JsKeyValue

from keiko.store.nats_api import nats_errors
from keiko.store.nats_codec import key_from_kv, kv_key


class NatsKeyValue:
    """keiko's KeyValue over a JetStream KV bucket; any string works as a key."""

    def __init__(self, kv: JsKeyValue) -> None:
        self._kv = kv

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
        with nats_errors("kv keys"):
            try:
                stored = await self._kv.keys()
            except nats.js.errors.NoKeysError:
                return []
        return sorted(key_from_kv(key) for key in stored)


async def open_bucket(js: JetStreamContext, name: str, replicas: int) -> NatsKeyValue:
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
    return NatsKeyValue(kv)
