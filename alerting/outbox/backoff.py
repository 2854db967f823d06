"""Retry delays: exponential backoff with full jitter (the AWS architecture blog's "full
jitter": uniform in [0, min(max, base * 2**attempt)]), so that many items retried after one
outage do not hit the receiver in lockstep."""

from __future__ import annotations

import random

RETRY_AFTER_CAP = 3600.0  # a peer asking for more than an hour is taken as an hour


def retry_delay(
    attempt: int,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = the first retry).

    A peer's Retry-After is honoured as a lower bound (capped at an hour)."""
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, 62))
    delay = (rng or random).uniform(0.0, ceiling)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
    return delay
