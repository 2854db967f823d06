"""Span metrics as one OTLP ExportMetricsServiceRequest (the `metrics` stream's records).

Names follow the OpenTelemetry Collector's spanmetrics connector with the ``traces.span.
metrics`` namespace: ``traces.span.metrics.calls`` (a cumulative monotonic Sum) and
``traces.span.metrics.duration`` (a cumulative explicit-bucket Histogram, unit ``s``),
with point attributes ``span.name``, ``span.kind``, ``status.code`` under a resource per
``service.name``. Every point of one flush has the same time stamp: the newest span end
seen; its start is when the series began (its first span's end), so a restart that
restores the checkpoint continues the same cumulative series.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from analytics.spanmetrics.aggregate import SeriesView

CALLS = "traces.span.metrics.calls"
DURATION = "traces.span.metrics.duration"
SCOPE = "keiko.spanmetrics"
CUMULATIVE = pb.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def encode(
    series: Iterable[SeriesView],
    bounds_s: tuple[float, ...],
    time_ns: int,
    resource: dict[str, str] | None = None,
) -> ExportMetricsServiceRequest:
    """One request holding every series' calls and duration points at ``time_ns``;
    ``resource``: more attributes for every resource (besides ``service.name``)."""
    by_service: dict[str, list[SeriesView]] = {}
    for s in series:
        by_service.setdefault(s.service, []).append(s)
    request = ExportMetricsServiceRequest()
    bounds = list(bounds_s)
    for service, views in sorted(by_service.items()):
        rm = request.resource_metrics.add()
        rm.resource.attributes.append(_kv("service.name", service))
        rm.resource.attributes.extend(_kv(k, v) for k, v in (resource or {}).items())
        sm = rm.scope_metrics.add()
        sm.scope.name = SCOPE
        calls = sm.metrics.add(name=CALLS, unit="{call}", description="Spans ended.")
        calls.sum.aggregation_temporality = CUMULATIVE
        calls.sum.is_monotonic = True
        duration = sm.metrics.add(name=DURATION, unit="s", description="Span durations.")
        duration.histogram.aggregation_temporality = CUMULATIVE
        for v in views:
            attrs = [
                _kv("span.name", v.name),
                _kv("span.kind", v.kind),
                _kv("status.code", v.status),
            ]
            start = min(v.start_ns, time_ns)
            calls.sum.data_points.add(
                attributes=attrs, start_time_unix_nano=start, time_unix_nano=time_ns, as_int=v.calls
            )
            duration.histogram.data_points.add(
                attributes=attrs,
                start_time_unix_nano=start,
                time_unix_nano=time_ns,
                count=v.calls,
                sum=v.sum_s,
                bucket_counts=list(v.buckets),
                explicit_bounds=bounds,
            )
    return request
