"""Silences kept durable: every change is saved to a key-value bucket before the API
answers, and written as a ``silence`` event (who, why, until when) for the audit trail."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from alerting.model import rfc3339
from alerting.silences import Silence, Silences
from keiko.records import Kind, NewRecord
from keiko.store.base import Store

log = logging.getLogger(__name__)
KEY = "silences"


class SilenceKeeper:
    """The silences the engine consults, and their durable copy."""

    def __init__(self, store: Store, bucket: str, lock: threading.Lock) -> None:
        self.store = store
        self.bucket = bucket
        self.lock = lock  # the engine's: silences change between its flushes, not during
        self.silences = Silences()  # replaced whole, so readers go through the keeper

    async def load(self) -> int:
        """Read the saved silences (at start); how many."""
        data = await (await self.store.kv(self.bucket)).get(KEY)
        if data is not None:
            restored = Silences.restore(data)
            with self.lock:
                self.silences = restored
        return len(self.silences)

    async def upsert(self, silence: Silence) -> str:
        """Create or update; the id it is stored under. SilenceError/KeyError as Silences."""
        now = time.time()
        with self.lock:
            before = self.silences.snapshot()
            sid = self.silences.upsert(silence, now)
            after = self.silences.snapshot()
        await self._save(before, after)
        saved = self.silences.get(sid)
        assert saved is not None
        await self._event("created" if sid != silence.id else "updated", saved, now)
        return sid

    async def expire(self, sid: str) -> None:
        """Expire now. KeyError if unknown, SilenceError if already expired."""
        now = time.time()
        with self.lock:
            before = self.silences.snapshot()
            self.silences.expire(sid, now)
            after = self.silences.snapshot()
        await self._save(before, after)
        expired = self.silences.get(sid)
        assert expired is not None
        await self._event("expired", expired, now)

    async def _save(self, before: bytes, after: bytes) -> None:
        try:
            await (await self.store.kv(self.bucket)).put(KEY, after)
        except Exception:
            with self.lock:  # not saved: not done (the caller answers 503)
                self.silences = Silences.restore(before)
            raise

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
        try:
            await self.store.append(
                "events", [NewRecord(Kind.EVENT_JSON, json.dumps(body).encode(), 1, s.id)]
            )
        except Exception as exc:  # saved already; the audit event is best effort, counted in logs
            log.warning("alerting: silence %s %s but its event was not stored: %s", s.id, what, exc)
