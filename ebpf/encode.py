"""Attributed series -> one OTLP ExportMetricsServiceRequest per collect.

Layout (chosen so that detectors read eBPF metrics exactly like applications' OTLP
metrics): one ResourceMetrics for the node (``host.name``, ``k8s.node.name``,
``service.name=keiko-ebpf``), one metric per name, and the per-series owner as data point
attributes (``cgroup.path``, ``container.id``, ``k8s.pod.uid``, ``k8s.pod.name``,
``k8s.namespace.name``, ``k8s.container.name``) next to the probe's own labels. One
resource per pod would repeat the metric descriptors once per pod in every record for
no gain: consumers key series by attributes either way.

Counters become delta monotonic Sums, gauges Gauges, log2 histograms delta Histograms
with explicit bounds (the log2 bucket edges, in the histogram's unit).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from ebpf.points import Log2Histogram, PointKind

SCOPE = InstrumentationScope(name="keiko.ebpf", version="1")
DELTA = pb.AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


@dataclass(frozen=True, slots=True)
class Series:
    """One attributed value: a probe's point with its owner's labels resolved."""

    name: str
    kind: PointKind
    value: float | Log2Histogram
    attributes: tuple[tuple[str, str], ...]  # sorted (key, value) pairs
    unit: str = ""
    description: str = ""


def _kv(attributes: Iterable[tuple[str, str]]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in attributes]


def histogram_sum(h: Log2Histogram) -> float:
    """The histogram's total, or an estimate from bucket midpoints when the probe has none."""
    if h.total is not None:
        return h.total
    return sum(c * (1.5 * 2**i if i else 0.5) for i, c in enumerate(h.counts))


def encode(
    series: Iterable[Series], resource: dict[str, str], start_ns: int, end_ns: int
) -> ExportMetricsServiceRequest:
    """One request holding every series of one collect interval [start_ns, end_ns)."""
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.CopyFrom(Resource(attributes=_kv(sorted(resource.items()))))
    sm = rm.scope_metrics.add()
    sm.scope.CopyFrom(SCOPE)
    metrics: dict[str, pb.Metric] = {}
    for s in series:
        metric = metrics.get(s.name)
        if metric is None:
            metric = metrics[s.name] = sm.metrics.add(
                name=s.name, unit=s.unit, description=s.description
            )
        _add_point(metric, s, start_ns, end_ns)
    return request


def _add_point(metric: pb.Metric, s: Series, start_ns: int, end_ns: int) -> None:
    attrs = _kv(s.attributes)
    if s.kind is PointKind.HISTOGRAM:
        assert isinstance(s.value, Log2Histogram)
        h = s.value
        if not metric.HasField("histogram"):
            metric.histogram.aggregation_temporality = DELTA
        metric.histogram.data_points.add(
            attributes=attrs,
            start_time_unix_nano=start_ns,
            time_unix_nano=end_ns,
            count=h.count,
            sum=histogram_sum(h),
            bucket_counts=list(h.counts),
            explicit_bounds=h.upper_bounds(),
        )
        return
    assert isinstance(s.value, int | float)
    if s.kind is PointKind.COUNTER:
        if not metric.HasField("sum"):
            metric.sum.aggregation_temporality = DELTA
            metric.sum.is_monotonic = True
        points = metric.sum.data_points
    else:
        points = metric.gauge.data_points
    value = s.value
    if float(value).is_integer():
        points.add(
            attributes=attrs,
            start_time_unix_nano=start_ns,
            time_unix_nano=end_ns,
            as_int=int(value),
        )
    else:
        points.add(
            attributes=attrs,
            start_time_unix_nano=start_ns,
            time_unix_nano=end_ns,
            as_double=float(value),
        )
