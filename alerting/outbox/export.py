"""``keiko_outbox_*``: deliveries by outcome, backlog, breaker states, delivery times; read
from the outbox's state at scrape time."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from alerting.model import OUTBOX_STREAM

if TYPE_CHECKING:
    from alerting.outbox.lane import Lane
    from alerting.outbox.worker import Outbox

PREFIX = "keiko_outbox"


class OutboxExport(Collector):
    """The outbox's metrics (per target where it matters)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    def collect(self) -> Iterator[Metric]:
        """Read at scrape time."""
        lanes = list(self.outbox.lanes.values())
        deliveries = CounterMetricFamily(
            f"{PREFIX}_deliveries",
            "Outbox items by outcome: delivered, failed (permanent error), gave_up (max_age "
            "passed), deduplicated (delivered before a restart), retried (failed at first).",
            labels=["target", "kind", "outcome"],
        )
        pending = GaugeMetricFamily(
            f"{PREFIX}_pending",
            "Records of the outbox stream the target's group has not committed (approximate: "
            "includes other targets' records).",
            labels=["target"],
        )
        circuit = GaugeMetricFamily(
            f"{PREFIX}_circuit_state",
            "Circuit breaker per target: 0 closed, 1 half-open, 2 open.",
            labels=["target"],
        )
        oldest = GaugeMetricFamily(
            f"{PREFIX}_oldest_pending_age_seconds",
            "Age of the item the target is working on (0 when idle).",
            labels=["target"],
        )
        now, lags = time.time(), self._lags()
        for lane in lanes:
            for (kind, outcome), n in sorted(dict(lane.stats.outcomes).items()):
                deliveries.add_metric([lane.name, kind, outcome], n)
            pending.add_metric([lane.name], lags.get(lane.group, lane.stats.fetched_pending))
            circuit.add_metric([lane.name], int(lane.circuit))
            head = lane.stats.head_created
            oldest.add_metric([lane.name], max(0.0, now - head) if head else 0.0)
        yield from (deliveries, pending, circuit, oldest)
        yield self._durations(lanes)
        yield from self._totals()

    def _lags(self) -> dict[str, int]:
        """Uncommitted records per group, from the store stats keiko refreshes."""
        stats = self.outbox.ctx.telemetry.store_snapshot.stats
        if stats is None:
            return {}
        stream = next((s for s in stats.streams if s.name == OUTBOX_STREAM), None)
        return {g.group: g.lag_records for g in stream.groups} if stream else {}

    def _durations(self, lanes: list[Lane]) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            f"{PREFIX}_delivery_duration_seconds",
            "Time one delivery attempt took (failed attempts included).",
            labels=["target"],
        )
        for lane in lanes:
            d = lane.stats.durations
            family.add_metric([lane.name], d.cumulative(), d.total)
        return family

    def _totals(self) -> Iterator[Metric]:
        s = self.outbox.stats
        skipped = CounterMetricFamily(
            f"{PREFIX}_skipped_records",
            "Outbox records no target delivers: unknown_target (not configured), "
            "undecodable, kind (not an outbox item).",
            labels=["reason"],
        )
        for reason, n in sorted(dict(s.skipped_records).items()):
            skipped.add_metric([reason], n)
        yield skipped
        yield CounterMetricFamily(f"{PREFIX}_events", "Delivery events written.", value=s.events)
        yield CounterMetricFamily(
            f"{PREFIX}_events_dropped",
            "Delivery events the store refused (lost).",
            value=s.events_dropped,
        )
        yield CounterMetricFamily(
            f"{PREFIX}_dedup_keys_collected",
            "Dedup keys deleted after dedup_ttl.",
            value=s.dedup_collected,
        )
