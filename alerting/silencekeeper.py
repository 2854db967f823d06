"""Silences kept in the store's key-value space, shared by every replica of alerting.

A change is made on the stored copy with a compare-and-swap (read, change, write only if
nobody wrote in between, else again), so two replicas taking silences at the same time lose
neither; the API answers once it is stored. Each change is also a ``silence`` event (who,
why, until when) for the audit trail. ``refresh`` picks up other replicas' changes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from alerting.model import rfc3339
from alerting.silences import Silence, Silences
from keiko.errors import StoreUnavailable
from keiko.records import Kind, NewRecord
from keiko.store.base import Store

log = logging.getLogger(__name__)
KEY = "silences"
SWAP_TRIES = 20
T = TypeVar("T")


class SilenceKeeper:
    """The silences the engine consults (``silences``), and their stored copy."""

    def __init__(self, store: Store, bucket: str, lock: threading.Lock, retention: float) -> None:
        self.store = store
        self.bucket = bucket
        self.lock = lock  # the engine's: silences change between its flushes, not during
        self.retention = retention  # expired silences are dropped this long after they end
        self.silences = Silences()  # replaced whole, so readers go through the keeper
        self._stored: bytes | None = None  # the stored snapshot ``silences`` was built from

    async def load(self) -> int:
        """Read the stored silences (at start); how many."""
        await self.refresh()
        return len(self.silences)

    async def refresh(self) -> None:
        """Take the stored silences if another replica changed them."""
        data = await (await self.store.kv(self.bucket)).get(KEY)
        if data != self._stored:
            restored = Silences.restore(data) if data else Silences()
            with self.lock:
                self.silences, self._stored = restored, data

    async def upsert(self, silence: Silence) -> str:
        """Create or update; the id it is stored under. SilenceError/KeyError as Silences."""
        now = time.time()
        sid = await self._change(lambda s: s.upsert(silence, now), now)
        saved = self.silences.get(sid)
        assert saved is not None
        await self._event("updated" if sid == silence.id else "created", saved, now)
        return sid

    async def expire(self, sid: str) -> None:
        """Expire now. KeyError if unknown, SilenceError if already expired."""
        now = time.time()
        await self._change(lambda s: s.expire(sid, now), now)
        expired = self.silences.get(sid)
        assert expired is not None
        await self._event("expired", expired, now)

    async def _change(self, change: Callable[[Silences], T], now: float) -> T:
        kv = await self.store.kv(self.bucket)
        for _ in range(SWAP_TRIES):
            stored = await kv.get(KEY)
            silences = Silences.restore(stored) if stored else Silences()
            result = change(silences)  # raises before anything is written
            silences.gc(now, self.retention)
            new = silences.snapshot()
            if await kv.swap(KEY, stored, new):
                with self.lock:
                    self.silences, self._stored = silences, new
                return result
        raise StoreUnavailable(f"silences changed by other replicas {SWAP_TRIES} times in a row")

    async def _event(self, what: str, s: Silence, now: float) -> None:
        body: dict[str, Any] = {
            "type": "silence",
            "status": what,
            "id": s.id,
            "matchers": [f"{m.name}{m.op}{json.dumps(m.value)}" for m in s.matchers],
            "startsAt": rfc3339(s.starts_at),
            "endsAt": rfc3339(s.ends_at),
            "createdBy": s.created_by,
            "comment": s.comment,
            "time": rfc3339(now),
            "time_unix_nano": int(now * 1e9),
        }
        record = NewRecord(Kind.EVENT_JSON, json.dumps(body).encode(), 1, s.id)
        try:
            await self.store.append("events", [record])
        except Exception as exc:  # stored already; the audit event is best effort (logged)
            log.warning("alerting: silence %s %s but its event was not stored: %s", s.id, what, exc)
