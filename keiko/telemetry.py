"""Self-telemetry by a fixed spec: every component counts the same things the same way.

Metric names (all with ``component`` and ``signal`` labels; ``transport`` where it applies):

- ``keiko_received_items_total``  items that arrived (spans, points, log records, events)
- ``keiko_accepted_items_total``  items durably stored
- ``keiko_refused_items_total{reason}``  items answered with an error (the client keeps them)
- ``keiko_dropped_items_total{reason}``  items lost after acceptance (should stay 0)
- ``keiko_requests_total{outcome}``  requests by outcome (ok, or the error reason)
- ``keiko_request_bytes_total``  request bytes as received (compressed size)
- ``keiko_request_duration_seconds``  time to answer a request

Store size and consumer lag are read at scrape time from a snapshot that the process
refreshes (a client_python Collector), never updated per record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from keiko.store.base import StoreStats

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class Outcome:
    """What one request came to, for :meth:`Telemetry.request`."""

    items: int
    accepted: int
    reason: str = "ok"  # "ok" or the refusal reason (an error class's ``reason``)
    nbytes: int = 0


class Telemetry:
    """The process's Prometheus registry and the counters every component shares."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # process_resident_memory_bytes, process_cpu_seconds_total, open fds (from /proc).
        ProcessCollector(registry=self.registry)
        labels = ["component", "signal", "transport"]
        r = self.registry
        self.received = Counter("keiko_received_items", "Items that arrived.", labels, registry=r)
        self.accepted = Counter("keiko_accepted_items", "Items durably stored.", labels, registry=r)
        self.refused = Counter(
            "keiko_refused_items", "Items answered with an error.", [*labels, "reason"], registry=r
        )
        self.dropped = Counter(
            "keiko_dropped_items", "Items lost after acceptance.", [*labels, "reason"], registry=r
        )
        self.requests = Counter(
            "keiko_requests", "Requests by outcome.", [*labels, "outcome"], registry=r
        )
        self.request_bytes = Counter(
            "keiko_request_bytes", "Request bytes as received.", labels, registry=r
        )
        self.duration = Histogram(
            "keiko_request_duration_seconds",
            "Time to answer a request.",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.store_snapshot = StoreSnapshot()
        r.register(self.store_snapshot)

    def request(
        self, component: str, signal: str, transport: str, outcome: Outcome, started: float
    ) -> None:
        """Count one request (``started`` from time.perf_counter())."""
        labels = (component, signal, transport)
        self.requests.labels(*labels, outcome.reason).inc()
        self.duration.labels(*labels).observe(time.perf_counter() - started)
        if outcome.nbytes:
            self.request_bytes.labels(*labels).inc(outcome.nbytes)
        if outcome.items:
            self.received.labels(*labels).inc(outcome.items)
        if outcome.accepted:
            self.accepted.labels(*labels).inc(outcome.accepted)
        refused = outcome.items - outcome.accepted
        if refused > 0:
            self.refused.labels(*labels, outcome.reason).inc(refused)


class StoreSnapshot(Collector):
    """Store size, records and consumer lag, from the latest stats the process fetched."""

    def __init__(self) -> None:
        self.stats: StoreStats | None = None
        self.taken_at = 0.0

    def update(self, stats: StoreStats) -> None:
        """Replace the snapshot (called by a periodic task)."""
        self.stats, self.taken_at = stats, time.time()

    def collect(self) -> Iterator[Metric]:
        stats = self.stats
        if stats is None:
            return
        size = GaugeMetricFamily("keiko_store_bytes", "Bytes held per stream.", labels=["stream"])
        records = GaugeMetricFamily(
            "keiko_store_records", "Records held per stream.", labels=["stream"]
        )
        last = GaugeMetricFamily(
            "keiko_store_last_offset", "Last offset per stream.", labels=["stream"]
        )
        lag = GaugeMetricFamily(
            "keiko_store_consumer_lag_records",
            "Records a consumer group has not committed yet.",
            labels=["stream", "group"],
        )
        expired = GaugeMetricFamily(
            "keiko_store_expired_unconsumed_records",
            "Records retention removed before a group read them.",
            labels=["stream"],
        )
        for s in stats.streams:
            size.add_metric([s.name], s.bytes)
            records.add_metric([s.name], s.records)
            last.add_metric([s.name], s.last_offset)
            expired.add_metric([s.name], s.expired_unconsumed)
            for g in s.groups:
                lag.add_metric([s.name, g.group], g.lag_records)
        yield from (size, records, last, lag, expired)
        if stats.disk_bytes is not None:
            yield GaugeMetricFamily(
                "keiko_store_disk_bytes", "Bytes the store uses on disk.", value=stats.disk_bytes
            )
        yield GaugeMetricFamily(
            "keiko_store_stats_timestamp_seconds",
            "When these store figures were taken.",
            value=self.taken_at,
        )
