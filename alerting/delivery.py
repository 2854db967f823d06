"""The plug-in point of the outbox: a target that one owed delivery is handed to.

Receivers (notification channels) and remediation actions are targets. The outbox calls
:meth:`Target.deliver` for each of a target's items in order; a :class:`Retryable` error
is retried with backoff (the circuit breaker counts it), a :class:`Permanent` one is
recorded and the item dropped; returning means done.
"""

from __future__ import annotations

from typing import Protocol

from alerting.model import OutboxItem


class DeliveryError(Exception):
    """Base of delivery failures; the message is logged (secrets redacted)."""


class Retryable(DeliveryError):
    """The target may take it later (connection refused, 5xx, 429, timeout)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after  # the peer's Retry-After, when it sent one


class Permanent(DeliveryError):
    """The target will never take it (4xx other than 429, a bad URL, refused by policy)."""


class Target(Protocol):
    """One receiver or one remediation action."""

    name: str

    async def deliver(self, item: OutboxItem) -> None:
        """Deliver ``item`` once; raise Retryable or Permanent on failure."""
        ...
