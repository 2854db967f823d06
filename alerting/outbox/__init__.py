"""The persistent outbox: owed deliveries (notifications, remediation actions) read from the
``outbox`` stream, one consumer group per target, retried with backoff behind a circuit
breaker, deduplicated across restarts, each outcome an audit event."""

from alerting.outbox.config import OutboxConfig
from alerting.outbox.dedup import Ledger
from alerting.outbox.worker import Outbox

__all__ = ["Ledger", "Outbox", "OutboxConfig"]
