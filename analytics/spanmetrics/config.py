"""Config of span metrics and the service graph (the `analytics.spanmetrics` section)."""

from __future__ import annotations

from itertools import pairwise

from pydantic import Field, field_validator

from keiko.store.config import Strict
from keiko.stream.config import BUCKET_DESCRIPTION, CheckpointConfig, StreamStageConfig
from keiko.units import Duration

# The OpenTelemetry Collector spanmetrics connector's default buckets, in seconds.
DEFAULT_BUCKETS = [
    0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8,
    1.0, 1.4, 2.0, 5.0, 10.0, 15.0,
]  # fmt: skip


def _increasing(bounds: list[float]) -> list[float]:
    if not bounds:
        raise ValueError("give at least one bucket bound (seconds)")
    if bounds[0] <= 0 or any(b <= a for a, b in pairwise(bounds)):
        raise ValueError(f"bucket bounds must be positive and strictly increasing: {bounds}")
    return bounds


class SpanMetricsCheckpointConfig(CheckpointConfig):
    """Where and how often the aggregates and the graph are saved (restored at start)."""

    bucket: str = Field(default="spanmetrics", description=BUCKET_DESCRIPTION)
    interval: Duration = Field(
        default=20.0,
        gt=0,
        description="Save the state this often; the consumer offset is committed with it, "
        "so a crash replays at most this much.",
    )


class ServiceGraphConfig(Strict):
    """Client -> server edges from spans (and from eBPF TCP connections)."""

    enabled: bool = Field(default=True, description="Build the service graph.")
    wait: Duration = Field(
        default=10.0,
        gt=0,
        description="How long (by span time) a client span waits for its server child, or "
        "a server span for its parent, before it counts as unpaired (a client span with a "
        "peer attribute then becomes an edge to a virtual node named by the peer).",
    )
    max_pending: int = Field(
        default=100_000,
        gt=0,
        description="Spans waiting for their pair at most; further ones are dropped and "
        "counted (traces_service_graph_dropped_spans_total).",
    )
    edge_ttl: Duration = Field(
        default=900.0, gt=0, description="An edge not seen for this long (span time) is removed."
    )
    max_edges: int = Field(
        default=10_000,
        gt=0,
        description="Edges held at most; spans of further edges are dropped and counted.",
    )
    buckets: list[float] = Field(
        default_factory=lambda: [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8],
        description="Latency histogram bounds of the edges, in seconds (Tempo's default).",
    )
    root_client: str = Field(
        default="user",
        description="Client node of a server span without a parent (a request from "
        "outside); empty: no such edges.",
    )
    ebpf_edges: bool = Field(
        default=True,
        description="Merge the eBPF agent's TCP edges (the `edges` stream): an edge whose "
        "server no span reaches becomes a 'tcp' edge; span edges it confirms are marked.",
    )
    rate_window: Duration = Field(
        default=60.0,
        gt=0,
        description="Window (span time) of the request and error rates the HTTP API shows.",
    )

    @field_validator("buckets")
    @classmethod
    def _buckets(cls, bounds: list[float]) -> list[float]:
        return _increasing(bounds)


class SpanMetricsConfig(StreamStageConfig):
    """Span metrics (calls, duration histograms) per service and operation, and the
    service graph, from the `traces` stream."""

    enabled: bool = Field(default=True, description="Run span metrics and the service graph.")
    fetch_batch: int = Field(
        default=100,
        gt=0,
        le=10_000,
        description="Records (trace requests of up to a few hundred spans each) fetched at once.",
    )
    buckets: list[float] = Field(
        default_factory=lambda: list(DEFAULT_BUCKETS),
        description="Duration histogram bounds in seconds (the OpenTelemetry Collector "
        "spanmetrics connector's defaults).",
    )
    max_series: int = Field(
        default=10_000,
        gt=0,
        description="(service, span name, kind, status) series held at most; spans of "
        "further series are refused and counted (span names can be high-cardinality).",
    )
    idle_expiry: Duration = Field(
        default=3600.0,
        gt=0,
        description="A series without spans for this long (span time) is dropped and its "
        "slot reused.",
    )
    flush_interval: Duration = Field(
        default=15.0,
        gt=0,
        description="Write the cumulative span metrics to the `metrics` stream this often.",
    )
    checkpoint: SpanMetricsCheckpointConfig = Field(default_factory=SpanMetricsCheckpointConfig)
    graph: ServiceGraphConfig = Field(default_factory=ServiceGraphConfig)

    @field_validator("buckets")
    @classmethod
    def _buckets(cls, bounds: list[float]) -> list[float]:
        return _increasing(bounds)
