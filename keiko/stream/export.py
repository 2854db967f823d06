"""Prometheus metrics every stream worker has: records, events, offsets, lag, checkpoints.

A stage's collector yields ``worker_metrics(prefix, ...)`` next to its own metrics, or
registers a :class:`WorkerExport` when it has none, so that every stage's progress and lag
look the same on a dashboard (``keiko_<stage>_lag_records`` ...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from keiko.stream.worker import WorkerStats


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    """A counter with one sample."""
    return CounterMetricFamily(name, doc, value=value)


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    """A gauge with one sample."""
    return GaugeMetricFamily(name, doc, value=value)


def by_reason(name: str, doc: str, counts: Mapping[str, int]) -> CounterMetricFamily:
    """A counter labelled by reason."""
    family = CounterMetricFamily(name, doc, labels=["reason"])
    for reason, n in sorted(dict(counts).items()):  # a copy: the worker thread adds reasons
        family.add_metric([reason], n)
    return family


def worker_metrics(
    prefix: str,
    stream: str,
    stats: WorkerStats,
    stream_end: Callable[[], int | None],
    skipped_doc: str = "",
) -> Iterator[Metric]:
    """``<prefix>_records_total``, ``_events_total``, ``_offset``, ``_lag_records``,
    ``_checkpoint_*`` ... of one stream worker."""
    s = stats
    yield counter(f"{prefix}_records", f"Records of the {stream} stream consumed.", s.records)
    yield counter(f"{prefix}_events", "Events written to the events stream.", s.events)
    yield counter(f"{prefix}_events_dropped", "Events the store refused (lost).", s.events_dropped)
    yield by_reason(
        f"{prefix}_skipped_records",
        skipped_doc
        or "Records not processed: kind (not what the stage reads), undecodable, replayed "
        "(already in the restored state).",
        s.skipped_records,
    )
    yield gauge(f"{prefix}_offset", f"Last {stream} offset processed.", s.offset)
    yield gauge(
        f"{prefix}_checkpoint_offset",
        f"Last {stream} offset the saved checkpoint covers (and the group committed).",
        s.checkpoint_offset,
    )
    end = stream_end()
    if end is not None:
        yield gauge(
            f"{prefix}_lag_records",
            f"Records of the {stream} stream not processed yet (its last offset, as of the "
            "latest store stats, minus the last offset processed; for one partition, the "
            "records JetStream holds pending for the partition's group).",
            max(0, end - s.offset),
        )
    saves = CounterMetricFamily(
        f"{prefix}_checkpoints", "Checkpoint saves by outcome.", labels=["outcome"]
    )
    for outcome, n in sorted(dict(s.checkpoints).items()):
        saves.add_metric([outcome], n)
    yield saves
    yield gauge(
        f"{prefix}_checkpoint_duration_seconds",
        "Time the last checkpoint took (snapshot and write).",
        s.checkpoint_seconds,
    )
    yield gauge(
        f"{prefix}_checkpoint_bytes",
        "Stored (compressed) size of the last checkpoint.",
        s.checkpoint_bytes,
    )
    yield gauge(
        f"{prefix}_checkpoint_timestamp_seconds",
        "When the last checkpoint was saved.",
        s.checkpoint_time,
    )


class WorkerExport(Collector):
    """The worker metrics of one stage, for a stage with no collector of its own."""

    def __init__(
        self, prefix: str, stream: str, stats: WorkerStats, stream_end: Callable[[], int | None]
    ) -> None:
        self.prefix, self.stream, self.stats, self.stream_end = prefix, stream, stats, stream_end

    def collect(self) -> Iterator[Metric]:
        """Read at scrape time."""
        yield from worker_metrics(self.prefix, self.stream, self.stats, self.stream_end)
