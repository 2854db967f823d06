"""Dedup keys of delivered items in a key-value bucket: ``<target>.<item id>`` -> the unix
time it was delivered. Written after a delivery and before the offset commit, so an item
replayed after a crash in between is recognised and not delivered again. Keys older than
``dedup_ttl`` are garbage-collected."""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Protocol

from keiko.store.base import KeyValue

# What NATS KV accepts in a key; anything else is hashed so every backend takes it.
_SAFE = re.compile(r"^(?=.{1,160}$)[-_=A-Za-z0-9]+(\.[-_=A-Za-z0-9]+)*$")


def key_part(text: str) -> str:
    """``text`` if it is a safe key token, else a stable hash of it."""
    if _SAFE.match(text):
        return text
    return "h" + hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


class Ledger(Protocol):
    """What a target may use to remember parts of an item it already delivered (e.g. a
    receiver with several channels: which channels took a notification)."""

    async def seen(self, key: str) -> bool:
        """Whether ``key`` was marked (and not yet garbage-collected)."""
        ...

    async def mark(self, key: str) -> None:
        """Remember ``key`` as done now."""
        ...


class DedupBucket:
    """The outbox's dedup keys in one bucket; :meth:`ledger` scopes them to a target."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    def key(self, target: str, item_id: str) -> str:
        """The bucket key of ``item_id`` delivered to ``target``."""
        return f"{key_part(target)}.{key_part(item_id)}"

    async def seen(self, target: str, item_id: str) -> bool:
        """Whether the item was delivered to the target already."""
        return await self.kv.get(self.key(target, item_id)) is not None

    async def mark(self, target: str, item_id: str) -> None:
        """Record the item as delivered now."""
        await self.kv.put(self.key(target, item_id), json.dumps({"t": time.time()}).encode())

    def ledger(self, target: str) -> Ledger:
        """A :class:`Ledger` whose keys live under ``<target>.``."""
        return _TargetLedger(self, target)

    async def collect(self, ttl: float, now: float | None = None) -> int:
        """Delete keys older than ``ttl`` seconds (or unreadable); how many were deleted."""
        cutoff = (time.time() if now is None else now) - ttl
        deleted = 0
        for key in await self.kv.keys():
            raw = await self.kv.get(key)
            if raw is None:
                continue
            try:
                stamp = float(json.loads(raw)["t"])
            except (ValueError, KeyError, TypeError):
                stamp = 0.0  # not ours or damaged: nothing depends on it
            if stamp < cutoff:
                await self.kv.delete(key)
                deleted += 1
        return deleted


class _TargetLedger:
    def __init__(self, bucket: DedupBucket, target: str) -> None:
        self.bucket, self.target = bucket, target

    async def seen(self, key: str) -> bool:
        return await self.bucket.seen(self.target, key)

    async def mark(self, key: str) -> None:
        await self.bucket.mark(self.target, key)
