"""The guards and the state behind them, in the store's key-value bucket (so a restart
forgets neither a cooldown nor a pending approval).

Keys: ``rate.<action>`` the times the action was admitted (a sliding window),
``cool.<hash of action and group>`` when the group's cooldown ends, ``req.<hash of the
request id>`` one request's record. Hashes keep keys short whatever a group key holds.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from alerting.model import rfc3339
from alerting.remediation.config import Guardrails
from keiko.store.base import KeyValue

# A request's record moves: admitted -> running -> executed | dry_run | failed (retrying
# in between while the outbox retries), or awaiting_approval -> approved -> running -> ...
# | rejected; or skipped.
OPEN = ("admitted", "retrying")  # a redelivery runs these again
PENDING = "awaiting_approval"
RUNNING = "running"  # found after a restart: the outcome is unknown, it is not run again


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


class Guard:
    """Rate limits per action and cooldowns per (action, group)."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def admit(self, action: Guardrails, group_key: str, now: float) -> str | None:
        """Record a run of ``action`` for ``group_key`` and return None, or return why it
        must be skipped (and record nothing). The caller serialises calls."""
        cool_key = f"cool.{_digest(action.name, group_key)}"
        raw = await self.kv.get(cool_key)
        if raw is not None and now < float(raw):
            until = rfc3339(float(raw))
            return f"cooldown: ran for this group within {action.cooldown:g}s (until {until})"
        rate_key = f"rate.{action.name}"
        raw = await self.kv.get(rate_key)
        window = [t for t in json.loads(raw or b"[]") if t > now - action.rate_limit.per]
        if len(window) >= action.rate_limit.max:
            return (
                f"rate limit: {len(window)} runs in the last {action.rate_limit.per:g}s "
                f"(max {action.rate_limit.max})"
            )
        await self.kv.put(rate_key, json.dumps([*window, now]).encode())
        if action.cooldown > 0:
            await self.kv.put(cool_key, str(now + action.cooldown).encode())
        return None

    async def prune(self, now: float) -> int:
        """Delete cooldowns that have ended (they grow with the number of groups)."""
        gone = 0
        for key in await self.kv.keys():
            if key.startswith("cool."):
                raw = await self.kv.get(key)
                if raw is None or float(raw) <= now:
                    await self.kv.delete(key)
                    gone += 1
        return gone


class Book:
    """Request records: in memory for the API, written through to the bucket."""

    def __init__(self, kv: KeyValue, history: int) -> None:
        self.kv = kv
        self.history = history
        self.records: dict[str, dict[str, Any]] = {}

    async def load(self) -> None:
        """Read every stored record (at start)."""
        for key in await self.kv.keys():
            if key.startswith("req."):
                raw = await self.kv.get(key)
                if raw:
                    record = json.loads(raw)
                    self.records[record["request_id"]] = record

    def get(self, request_id: str) -> dict[str, Any] | None:
        """The record of ``request_id``, if there is one."""
        return self.records.get(request_id)

    async def put(self, record: dict[str, Any]) -> None:
        """Store ``record``; then drop the oldest finished records beyond ``history``."""
        self.records[record["request_id"]] = record
        await self.kv.put(f"req.{_digest(record['request_id'])}", json.dumps(record).encode())
        excess = len(self.records) - self.history
        if excess > 0:
            done = [r for r in self.records.values() if finished(r)]
            for old in sorted(done, key=lambda r: r["created"])[:excess]:
                del self.records[old["request_id"]]
                await self.kv.delete(f"req.{_digest(old['request_id'])}")

    def pending(self) -> list[dict[str, Any]]:
        """Records waiting for approval, oldest first."""
        found = [r for r in self.records.values() if r["status"] == PENDING]
        return sorted(found, key=lambda r: r["created"])


def finished(record: dict[str, Any]) -> bool:
    """Nothing more will happen to it (no run, approval or verification owed)."""
    if record["status"] in (*OPEN, PENDING, RUNNING, "approved"):
        return False
    return not (record.get("verify_at") and "resolved" not in record)
