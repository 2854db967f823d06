"""A lease in a key-value bucket: leader election between replicas on one store.

Two or more replicas (e.g. ``keiko alert`` processes on one NATS JetStream store) each
hold a ``Lease`` on the same bucket and name with a distinct ``holder``. The active one
calls ``renew()`` every ttl/3 or so; standbys call ``acquire()`` on the same period and
take over once the active one stops renewing and its lease expires.

The record is JSON ``{"holder": str, "expires": unix seconds, "info": dict | null}``.
Every change goes through ``KeyValue.swap`` with the exact bytes just read, so of two
contenders that read the same record only one can win.

Clock assumption: ``expires`` is wall-clock time written by the holder and compared by
the others against their own wall clocks, so those clocks must agree to within a few
seconds (NTP). A skew of s seconds lets a standby take over up to s seconds early, so
use ``ttl`` >= 10 s and renew well inside it. The holder's own ``held`` is measured on
its monotonic clock from *before* each write, so it errs towards "not held".

Holders must be unique per process (e.g. ``f"{hostname}:{pid}:{uuid4()}"``): two
processes with the same holder would both believe they hold the lease. With the
embedded backend only the process that owns the data directory can write, so a lease
there elects among tasks of one process, not between processes.
"""

from __future__ import annotations

import json
import time
from typing import Any

from keiko.store.base import KeyValue


class Lease:
    """A named, expiring lease held by one ``holder`` at a time."""

    def __init__(
        self, kv: KeyValue, name: str, holder: str, ttl: float, info: dict[str, Any] | None = None
    ) -> None:
        if not holder:
            raise ValueError("a lease holder must be a non-empty string")
        if not ttl > 0:
            raise ValueError(f"lease ttl must be > 0 seconds, got {ttl!r}")
        self.kv, self.name, self.holder, self.ttl = kv, name, holder, float(ttl)
        self.info = info
        self._held_until: float | None = None  # monotonic; None when not held

    @property
    def held(self) -> bool:
        """True while ours and not past our own (conservative) view of expiry."""
        return self._held_until is not None and time.monotonic() < self._held_until

    async def acquire(self) -> bool:
        """Take the lease if it is absent, expired or already ours; True if we hold it now."""
        raw, record = await self._read()
        live = record is not None and record["expires"] > time.time()
        if live and record is not None and record["holder"] != self.holder:  # someone else's
            self._held_until = None
            return False
        return await self._write(raw, self._record(time.time() + self.ttl))

    async def renew(self) -> bool:
        """Extend the lease if it is still ours; False (and no longer held) otherwise."""
        raw, record = await self._read()
        if record is None or record["holder"] != self.holder:
            # Even an expired record of ours is safe to extend: nobody took it over.
            self._held_until = None
            return False
        return await self._write(raw, self._record(time.time() + self.ttl))

    async def release(self) -> None:
        """Give the lease up now (if ours) so a standby need not wait for expiry."""
        self._held_until = None
        raw, record = await self._read()
        if record is not None and record["holder"] == self.holder:
            # No holder (holders are non-empty), so a late renew() cannot resurrect it.
            freed = {"holder": "", "expires": 0.0, "info": None}
            await self.kv.swap(self.name, raw, json.dumps(freed, sort_keys=True).encode())

    async def current(self) -> dict[str, Any] | None:
        """The holder record ``{"holder", "expires", "info"}``; None if none or expired."""
        _, record = await self._read()
        if record is None or record["expires"] <= time.time():
            return None
        return record

    async def _write(self, raw: bytes | None, value: bytes) -> bool:
        started = time.monotonic()
        won = await self.kv.swap(self.name, raw, value)
        self._held_until = started + self.ttl if won else None
        return won

    def _record(self, expires: float) -> bytes:
        record = {"holder": self.holder, "expires": expires, "info": self.info}
        return json.dumps(record, sort_keys=True).encode()

    async def _read(self) -> tuple[bytes | None, dict[str, Any] | None]:
        raw = await self.kv.get(self.name)
        return raw, None if raw is None else _parse(raw)


def _parse(raw: bytes) -> dict[str, Any] | None:
    """The record, or None for a value that is not one: a garbled lease counts as free
    (taken over via swap on its exact bytes) rather than blocking election forever."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict):
        return None
    holder, expires = record.get("holder"), record.get("expires")
    if not isinstance(holder, str) or isinstance(expires, bool):
        return None
    if not isinstance(expires, int | float):
        return None
    info = record.get("info")
    return {
        "holder": holder,
        "expires": float(expires),
        "info": info if isinstance(info, dict) else None,
    }
