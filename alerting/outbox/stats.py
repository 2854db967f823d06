"""Running totals of the outbox, read by its Prometheus collector at scrape time."""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass, field

# Upper bounds (seconds) of the delivery-duration histogram.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass
class Durations:
    """A histogram kept by hand: counts per bucket (non-cumulative), sum and count."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        """Add one delivery attempt's duration."""
        i = next((k for k, b in enumerate(DURATION_BUCKETS) if seconds <= b), -1)
        self.buckets[i] += 1
        self.total += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, cumulative count)`` pairs, ``+Inf`` last (Prometheus' shape)."""
        out, running = [], 0
        for bound, n in zip((*DURATION_BUCKETS, float("inf")), self.buckets, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


@dataclass
class LaneStats:
    """One target's totals and what it holds now."""

    outcomes: Tally[tuple[str, str]] = field(default_factory=Tally)  # (kind, outcome) -> n
    attempts: int = 0
    durations: Durations = field(default_factory=Durations)
    head_created: float = 0.0  # unix time the item in hand was created (0: none)
    fetched_pending: int = 0  # own items fetched and not yet settled
    committed: int = 0  # last offset committed


@dataclass
class OutboxStats:
    """Totals of the whole outbox (per-target ones live in :class:`LaneStats`)."""

    skipped_records: Tally[str] = field(default_factory=Tally)  # by reason
    unknown_targets: Tally[str] = field(default_factory=Tally)  # records per unknown target
    events: int = 0
    events_dropped: int = 0
    dedup_collected: int = 0  # dedup keys deleted by the garbage collector
