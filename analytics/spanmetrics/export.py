"""Prometheus metrics of span metrics and the service graph, read at scrape time.

Span metrics: ``traces_span_metrics_calls_total{service,span_name,span_kind,status_code}``
and the histogram ``traces_span_metrics_duration_seconds``. The service graph, in the
names Tempo's metrics-generator uses (what Grafana's service graph and node graph read):
``traces_service_graph_request_total{client,server,connection_type}``,
``traces_service_graph_request_failed_total``, the histograms
``traces_service_graph_request_server_seconds`` and ``..._client_seconds``,
``traces_service_graph_unpaired_spans_total{client|server}`` and
``traces_service_graph_dropped_spans_total``. Plus the stage's own ``keiko_spanmetrics_*``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from keiko.stream.export import counter, gauge, worker_metrics
from keiko.stream.worker import WorkerStats

if TYPE_CHECKING:
    from analytics.spanmetrics.stage import SpanStage


@dataclass
class Stats(WorkerStats):
    """The stream worker's totals plus the stage's."""

    spans: int = 0
    flushes: int = 0
    evicted_series: int = 0
    evicted_edges: int = 0
    edges_records: int = 0  # eBPF edge records read
    edges_offset: int = 0  # last offset of the edges stream read


def cumulative(counts: Sequence[int], bounds: Sequence[float]) -> list[tuple[str, float]]:
    """Prometheus ``le`` buckets from per-bucket counts (the last one is +Inf)."""
    out, total = [], 0
    for bound, n in zip([*bounds, float("inf")], counts, strict=True):
        total += n
        out.append((floatToGoString(bound), float(total)))
    return out


class SpanMetricsExport(Collector):
    """Everything the stage exports, from its current state."""

    def __init__(
        self, stats: Stats, stage: Callable[[], SpanStage], stream_end: Callable[[], int | None]
    ) -> None:
        self.stats = stats
        self.stage = stage  # the current state (a restore replaces it)
        self.stream_end = stream_end

    def collect(self) -> Iterator[Metric]:
        """Read at scrape time."""
        stage = self.stage()
        yield from self._span_metrics(stage)
        yield from self._graph(stage)
        yield from self._own(stage)

    def _span_metrics(self, stage: SpanStage) -> Iterator[Metric]:
        labels = ["service", "span_name", "span_kind", "status_code"]
        calls = CounterMetricFamily(
            "traces_span_metrics_calls", "Spans ended, per service and operation.", labels=labels
        )
        duration = HistogramMetricFamily(
            "traces_span_metrics_duration_seconds",
            "Span durations, per service and operation.",
            labels=labels,
        )
        m = stage.metrics
        with m.lock:
            views = list(m.series())
        for v in views:
            values = [v.service, v.name, v.kind, v.status]
            calls.add_metric(values, v.calls)
            duration.add_metric(values, cumulative(v.buckets, m.bounds_s), v.sum_s)
        yield calls
        yield duration

    def _graph(self, stage: SpanStage) -> Iterator[Metric]:
        labels = ["client", "server", "connection_type"]
        total = CounterMetricFamily(
            "traces_service_graph_request",
            "Requests between two nodes of the service graph.",
            labels=labels,
        )
        failed = CounterMetricFamily(
            "traces_service_graph_request_failed",
            "Failed requests (either side errored) between two nodes.",
            labels=labels,
        )
        server = HistogramMetricFamily(
            "traces_service_graph_request_server_seconds",
            "Request time as seen by the server (its span's duration).",
            labels=labels,
        )
        client = HistogramMetricFamily(
            "traces_service_graph_request_client_seconds",
            "Request time as seen by the client (its span's duration).",
            labels=labels,
        )
        bounds = stage.edges.bounds_s
        for e in stage.edges.views():
            values = [e.client, e.server, e.connection_type]
            total.add_metric(values, e.requests)
            failed.add_metric(values, e.failed)
            server.add_metric(values, cumulative(e.server_buckets, bounds), e.server_sum)
            client.add_metric(values, cumulative(e.client_buckets, bounds), e.client_sum)
        yield from (total, failed, server, client)
        unpaired = CounterMetricFamily(
            "traces_service_graph_unpaired_spans",
            "Client or server spans whose pair never came within the wait.",
            labels=["client", "server"],
        )
        for (side, service), n in sorted(stage.graph.stats.unpaired.copy().items()):
            unpaired.add_metric([service, ""] if side == "client" else ["", service], n)
        yield unpaired
        yield counter(
            "traces_service_graph_dropped_spans",
            "Spans not kept waiting for their pair: analytics.spanmetrics.graph.max_pending "
            "were waiting.",
            stage.graph.stats.dropped,
        )

    def _own(self, stage: SpanStage) -> Iterator[Metric]:
        s, g = self.stats, stage.graph
        yield from worker_metrics(
            "keiko_spanmetrics",
            "traces",
            s,
            self.stream_end,
            "Records not used: kind (not OTLP traces), undecodable, replayed (already in "
            "the restored state).",
        )
        yield counter("keiko_spanmetrics_spans", "Spans folded into span metrics.", s.spans)
        yield gauge("keiko_spanmetrics_series", "Span metric series held.", len(stage.metrics))
        yield counter(
            "keiko_spanmetrics_series_refused_spans",
            "Spans of series beyond analytics.spanmetrics.max_series (not counted).",
            stage.metrics.refused,
        )
        yield counter(
            "keiko_spanmetrics_series_evicted",
            "Series dropped after idle_expiry.",
            s.evicted_series,
        )
        yield counter("keiko_spanmetrics_flushes", "Span metric requests written.", s.flushes)
        yield gauge("keiko_spanmetrics_graph_edges", "Service graph edges held.", len(stage.edges))
        yield counter(
            "keiko_spanmetrics_graph_edges_evicted",
            "Edges removed after edge_ttl.",
            s.evicted_edges,
        )
        yield counter(
            "keiko_spanmetrics_graph_edges_refused_requests",
            "Requests of edges beyond analytics.spanmetrics.graph.max_edges (not counted).",
            stage.edges.refused,
        )
        yield gauge(
            "keiko_spanmetrics_graph_pending_spans", "Spans waiting for their pair.", g.pending
        )
        yield counter("keiko_spanmetrics_graph_pairs", "Edges found (requests).", g.stats.pairs)
        yield counter(
            "keiko_spanmetrics_graph_virtual_requests",
            "Expired client spans counted as requests to a virtual node named by their peer.",
            g.stats.virtual,
        )
        ebpf = GaugeMetricFamily(
            "keiko_spanmetrics_ebpf_edges_offset", "Last offset of the edges stream read."
        )
        ebpf.add_metric([], s.edges_offset)
        yield ebpf
        yield counter(
            "keiko_spanmetrics_ebpf_edges",
            "eBPF TCP edges merged into the service graph.",
            g.stats.ebpf_edges,
        )
        yield counter(
            "keiko_spanmetrics_ebpf_edges_unattributed",
            "eBPF TCP edges skipped: their client names no service, or the server is folded.",
            g.stats.ebpf_unattributed,
        )
