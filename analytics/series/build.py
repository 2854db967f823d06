"""Small builders of OTLP metric requests, for tests, benchmarks and demos."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

CUMULATIVE = pb.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = pb.AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
SEC = 1_000_000_000


def kvs(labels: dict[str, str]) -> list[KeyValue]:
    """String attributes as KeyValues, in the dict's order."""
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in labels.items()]


def request(
    resource: dict[str, str] | None = None,
) -> tuple[ExportMetricsServiceRequest, pb.ScopeMetrics]:
    """An empty request with one resource and one scope; add metrics to the returned scope."""
    req = ExportMetricsServiceRequest()
    rm = req.resource_metrics.add()
    rm.resource.attributes.extend(kvs(resource or {"service.name": "svc"}))
    return req, rm.scope_metrics.add()


def gauge(
    scope: pb.ScopeMetrics, name: str, points: Sequence[tuple[dict[str, str], float, float]]
) -> None:
    """A Gauge of (attributes, unix seconds, value) points."""
    m = scope.metrics.add(name=name)
    for attrs, t, v in points:
        m.gauge.data_points.add(attributes=kvs(attrs), time_unix_nano=int(t * SEC), as_double=v)


def monotonic_sum(
    scope: pb.ScopeMetrics,
    name: str,
    points: Sequence[tuple[dict[str, str], float, float, float]],
    temporality: int = CUMULATIVE,
    monotonic: bool = True,
) -> None:
    """A Sum of (attributes, start s, time s, value) points (start 0: unknown)."""
    m = scope.metrics.add(name=name)
    m.sum.aggregation_temporality = temporality
    m.sum.is_monotonic = monotonic
    for attrs, start, t, v in points:
        m.sum.data_points.add(
            attributes=kvs(attrs),
            start_time_unix_nano=int(start * SEC),
            time_unix_nano=int(t * SEC),
            as_double=v,
        )


def histogram(
    scope: pb.ScopeMetrics,
    name: str,
    bounds: Sequence[float],
    points: Sequence[tuple[dict[str, str], float, float, Sequence[int]]],
    temporality: int = CUMULATIVE,
) -> None:
    """An explicit-bucket Histogram of (attributes, start s, time s, bucket counts) points."""
    m = scope.metrics.add(name=name)
    m.histogram.aggregation_temporality = temporality
    for attrs, start, t, counts in points:
        m.histogram.data_points.add(
            attributes=kvs(attrs),
            start_time_unix_nano=int(start * SEC),
            time_unix_nano=int(t * SEC),
            count=sum(counts),
            bucket_counts=list(counts),
            explicit_bounds=list(bounds),
        )
