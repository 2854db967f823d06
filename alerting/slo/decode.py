"""OTLP metric records -> flat points, and cumulative counters -> deltas per series.

Only metrics the stage evaluates are decoded (the rest of a request costs one name
comparison). A point's attributes are its resource's with its own on top. Counters come
in two temporalities: a delta point is an increment as it is; a cumulative point is turned
into the increment since the previous point of its series, where a drop or a new start
time is a restart of the counter (the new value is then the increment).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.common.v1.common_pb2 import KeyValue as PbKeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

CUMULATIVE = pb.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]  # metric, sorted attributes


@dataclass(slots=True)
class Point:
    """One data point. ``value`` is a gauge's or sum's value, a histogram's count."""

    metric: str
    kind: str  # gauge | sum | histogram
    attributes: dict[str, str]
    time_ns: int
    start_ns: int
    value: float
    cumulative: bool = False
    buckets: tuple[int, ...] = ()  # histogram: per-bucket counts (not cumulative)
    bounds: tuple[float, ...] = ()  # histogram: explicit upper bounds

    def key(self) -> SeriesKey:
        """The series: metric and sorted attributes."""
        return self.metric, tuple(sorted(self.attributes.items()))

    def counts(self) -> tuple[float, ...]:
        """What accumulates: a sum's value; a histogram's count then bucket counts."""
        return (self.value, *self.buckets) if self.kind == "histogram" else (self.value,)


def text(value: AnyValue) -> str:
    """An attribute value as text (booleans lower case, like the OTel SDKs)."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which in ("int_value", "double_value"):
        return str(getattr(value, which))
    return "" if which is None else str(getattr(value, which)).strip()


def _attrs(base: dict[str, str], pairs: Iterable[PbKeyValue]) -> dict[str, str]:
    out = dict(base)
    for kv in pairs:
        out[kv.key] = text(kv.value)
    return out


def decode(
    payload: bytes,
    names: frozenset[str],
    keep: Callable[[str, dict[str, str]], bool] | None = None,
) -> list[Point]:
    """The points of the metrics in ``names`` in one ExportMetricsServiceRequest, of those
    only the metrics ``keep(name, resource attributes)`` accepts when it is given.

    Raises ValueError when the payload is not one."""
    request = ExportMetricsServiceRequest()
    try:
        request.ParseFromString(payload)
    except DecodeError as exc:
        raise ValueError(f"not an OTLP metrics request: {exc}") from exc
    points: list[Point] = []
    for rm in request.resource_metrics:
        resource: dict[str, str] | None = None  # built on the first wanted metric
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name not in names:
                    continue
                if resource is None:
                    resource = _attrs({}, rm.resource.attributes)
                if keep is None or keep(metric.name, resource):
                    points.extend(_points(metric, resource))
    return points


def _points(metric: pb.Metric, resource: dict[str, str]) -> Iterable[Point]:
    which = metric.WhichOneof("data")
    name = metric.name
    if which in ("gauge", "sum"):
        data = metric.gauge if which == "gauge" else metric.sum
        cumulative = which == "sum" and metric.sum.aggregation_temporality == CUMULATIVE
        for dp in data.data_points:
            number = dp.as_double if dp.WhichOneof("value") == "as_double" else dp.as_int
            yield Point(
                name,
                which,
                _attrs(resource, dp.attributes),
                dp.time_unix_nano,
                dp.start_time_unix_nano,
                float(number),
                cumulative,
            )
    elif which == "histogram":
        cumulative = metric.histogram.aggregation_temporality == CUMULATIVE
        for hp in metric.histogram.data_points:
            yield Point(
                name,
                "histogram",
                _attrs(resource, hp.attributes),
                hp.time_unix_nano,
                hp.start_time_unix_nano,
                float(hp.count),
                cumulative,
                tuple(hp.bucket_counts),
                tuple(hp.explicit_bounds),
            )


@dataclass(slots=True)
class Delta:
    """The increment of a counter's ``counts()`` over ``seconds`` (0: unknown)."""

    counts: tuple[float, ...]
    seconds: float


@dataclass(slots=True)
class _Last:
    start_ns: int
    time_ns: int
    counts: tuple[float, ...]


class DeltaTracker:
    """The last value of each cumulative series, to turn the next point into a delta.

    A series seen for the first time counts in full only when it started at most
    ``fresh_s`` before its point (a new series: its calls are recent); an older one is
    only a baseline, since when its calls happened is unknown. At most ``max_series``
    are tracked; points of more are dropped (counted in ``dropped``)."""

    def __init__(self, fresh_s: float, max_series: int) -> None:
        self.fresh_ns = int(fresh_s * 1e9)
        self.max_series = max_series
        self.last: dict[SeriesKey, _Last] = {}
        self.dropped = 0  # points of series beyond the cap
        self.baselines = 0  # first points of old series, not counted
        self.resets = 0

    def update(self, point: Point) -> Delta | None:
        """The increment ``point`` brings; None when it brings none that can be placed."""
        counts = point.counts()
        if not point.cumulative:
            span = (point.time_ns - point.start_ns) / 1e9 if point.start_ns else 0.0
            return Delta(counts, max(0.0, span))
        key = point.key()
        prev = self.last.get(key)
        if prev is None:
            if len(self.last) >= self.max_series:
                self.dropped += 1
                return None
            self.last[key] = _Last(point.start_ns, point.time_ns, counts)
            fresh = point.start_ns and point.time_ns - point.start_ns <= self.fresh_ns
            if not fresh:
                self.baselines += 1
                return None
            return Delta(counts, (point.time_ns - point.start_ns) / 1e9)
        if point.time_ns <= prev.time_ns:  # a duplicate or out of order: nothing new
            return None
        restarted = (point.start_ns and prev.start_ns and point.start_ns != prev.start_ns) or any(
            now < before for now, before in zip(counts, prev.counts, strict=False)
        )
        self.last[key] = _Last(point.start_ns, point.time_ns, counts)
        if restarted or len(counts) != len(prev.counts):
            self.resets += 1
            since = point.start_ns if point.start_ns > prev.time_ns else prev.time_ns
            return Delta(counts, (point.time_ns - since) / 1e9)
        diff = tuple(now - before for now, before in zip(counts, prev.counts, strict=True))
        return Delta(diff, (point.time_ns - prev.time_ns) / 1e9)

    def evict(self, older_ns: int) -> int:
        """Forget series without a point since ``older_ns``; how many."""
        old = [k for k, v in self.last.items() if v.time_ns < older_ns]
        for k in old:
            del self.last[k]
        return len(old)

    def to_json(self) -> list[list[object]]:
        """The tracked series (checkpoints)."""
        return [
            [metric, [list(p) for p in attrs], v.start_ns, v.time_ns, list(v.counts)]
            for (metric, attrs), v in self.last.items()
        ]

    def restore(self, rows: list[list[Any]]) -> None:
        """Load what ``to_json`` wrote."""
        last: dict[SeriesKey, _Last] = {}
        for metric, attrs, start, time_ns, counts in rows:
            key = (str(metric), tuple((str(k), str(v)) for k, v in attrs))
            last[key] = _Last(int(start), int(time_ns), tuple(float(c) for c in counts))
        self.last = last
