"""The audit trail of the outbox: one ``delivery`` event per outcome in the events stream."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from alerting.model import OutboxItem, rfc3339
from alerting.outbox.stats import OutboxStats
from alerting.secrets import redact
from keiko.errors import KeikoError
from keiko.records import Kind, NewRecord, Stream
from keiko.store.base import Store

log = logging.getLogger(__name__)


def delivery_event(
    item: OutboxItem, status: str, attempts: int, error: str = "", now: float | None = None
) -> dict[str, Any]:
    """The event of one outcome; ``error`` is redacted here, whoever built it."""
    return {
        "type": "delivery",
        "id": item.id,
        "kind": item.kind,
        "target": item.target,
        "status": status,  # delivered | retrying | gave_up | failed
        "attempts": attempts,
        "error": redact(error),
        "time": rfc3339(time.time() if now is None else now),
    }


class Audit:
    """Appends delivery events; a store that refuses one costs the event, never the item."""

    def __init__(self, store: Store, stats: OutboxStats) -> None:
        self.store, self.stats = store, stats

    async def write(self, event: dict[str, Any]) -> None:
        """Append ``event`` to the events stream (counted as dropped if refused)."""
        record = NewRecord(Kind.EVENT_JSON, json.dumps(event, separators=(",", ":")).encode())
        try:
            await self.store.append(Stream.EVENTS, [record])
        except KeikoError as exc:
            self.stats.events_dropped += 1
            log.warning("outbox: delivery event not stored: %s", redact(str(exc)))
        else:
            self.stats.events += 1
