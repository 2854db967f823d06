"""Config of the outbox (retries, breaker, deduplication)."""

from __future__ import annotations

from pydantic import Field

from keiko.store.config import Strict
from keiko.units import Duration


class OutboxConfig(Strict):
    """How the outbox retries, trips its breakers and remembers what it delivered."""

    bucket: str = Field(
        default="outbox",
        description="Key-value bucket holding the dedup keys (<target>.<item id>) of "
        "delivered items, so a replay after a crash does not deliver twice.",
    )
    retry_base: Duration = Field(
        default=1.0, description="First retry delay; doubles each attempt (full jitter)."
    )
    retry_max: Duration = Field(
        default=300.0, description="Longest retry delay (a peer's Retry-After may ask more)."
    )
    max_age: Duration = Field(
        default=86400.0,
        description="Keep retrying an item until it is this old, then give it up (counted "
        "and an event): a receiver down for an hour gets everything once it is back.",
    )
    breaker_failures: int = Field(
        default=5,
        ge=1,
        description="Consecutive failures of a target that open its circuit breaker.",
    )
    breaker_cooldown: Duration = Field(
        default=30.0,
        description="How long an open breaker waits before one probe delivery (half-open).",
    )
    dedup_ttl: Duration = Field(
        default=7 * 86400.0,
        description="How long dedup keys of delivered items are kept before they are "
        "garbage-collected.",
    )
    fetch_batch: int = Field(
        default=100, ge=1, le=10_000, description="Records read from the stream per fetch."
    )
    timeout: Duration = Field(
        default=10.0, description="Longest one delivery may take; longer counts as retryable."
    )
