"""MetricsDecoder: OTLP ExportMetricsServiceRequest bytes -> a PointBatch of meaningful values.

Per data point type (series names are the metric name plus the suffix shown):
  - Gauge, cumulative non-monotonic Sum -> GAUGE ``<name>`` (an UpDownCounter's level)
  - monotonic Sum (cumulative or delta) -> RATE ``<name>`` per second (rules: cumulative.py)
  - delta non-monotonic Sum             -> RATE ``<name>``: the net change per second (its
    level is unknowable from deltas; SDKs send UpDownCounters cumulative even when
    asked for delta, so this is rare)
  - Histogram, ExponentialHistogram     -> RATE ``<name>:rate`` of the count per second and
    QUANTILE ``<name>:p50`` ... from the interval's bucket deltas (rules: histograms.py);
    no quantile when the interval has no new observations
  - Summary                             -> GAUGE ``<name>:q0.99`` per quantile value
Skipped points are counted in ``skipped`` by reason: ``no_timestamp``, ``non_finite``,
``no_recorded_value`` (the OTLP flag), ``series_cap``, ``first_point``, ``out_of_order``
(also replays after a restore), ``counter_reset_unknown_start``, ``no_interval``,
``bucket_layout_changed`` and ``no_buckets`` (quantiles only), ``unset_metric``,
``future_timestamp``.

Speed: a series id is cached per (resource, metric, point attributes). For number points
the cache key is the point's own serialization minus its leading fixed-width fields
(start, time, value: upb writes fields in number order), which is ~10x cheaper than
reading the attributes; any other layout only costs a cache miss, never a wrong id.
"""

from __future__ import annotations

import math
import operator
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from analytics.series import histograms as hg
from analytics.series.cumulative import HistState, RateState, Step, classify, reset_interval
from analytics.series.keys import labels_of, resource_labels, series_key
from analytics.series.table import SeriesTable
from analytics.series.types import PointBatch, SeriesKind

CUMULATIVE = pb.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
NO_VALUE = pb.DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_START, _TIME, _VALUES = b"\x11", b"\x19", (b"\x21", b"\x31")  # tags of fixed64 fields
_EXEMPLARS = b"\x2a"
Derived = tuple[tuple[str, SeriesKind], ...]
GAUGE: Derived = (("", SeriesKind.GAUGE),)
RATE: Derived = (("", SeriesKind.RATE),)


def _number_attr_key(p: Any) -> bytes:
    """Cache key of a NumberDataPoint: its bytes from the attributes on."""
    s: bytes = p.SerializeToString()
    n = 9 if s.startswith(_START) else 0
    if s.startswith(_TIME, n):
        n += 9
    if s.startswith(_VALUES, n):
        n += 9
    if s.startswith(_EXEMPLARS, n):  # exemplars vary per point: key on the attributes only
        return b"\x00" + b"".join([kv.SerializeToString() for kv in p.attributes])
    return s[n:]


def _attr_key(p: Any) -> bytes:
    return b"".join([kv.SerializeToString() for kv in p.attributes])


class _Batch:
    """Output columns of one decode call, plus ids touched without emitting a point."""

    __slots__ = ("ids", "resolution", "times", "touch_ids", "touch_times", "values")

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.times: list[int] = []  # unix ns
        self.values: list[float] = []
        self.resolution: list[float] = []  # the value's quantum (0: continuous, unknown)
        self.touch_ids: list[int] = []
        self.touch_times: list[int] = []

    def add(self, sid: int, t: int, v: float, resolution: float = 0.0) -> None:
        self.ids.append(sid)
        self.times.append(t)
        self.values.append(v)
        self.resolution.append(resolution)


class MetricsDecoder:
    """Decodes OTLP metrics requests into numbered series; state is bounded by the table.

    ``quantiles`` are the histogram quantiles to estimate (``:p50`` ...), ``max_cache``
    bounds the id cache (entries; default 4 x the table's cap), ``resource_keys`` adds
    resource attributes to the identifying set of keys.py (e.g. ``service.instance.id``
    when several processes of one service share a host and are not told apart otherwise).
    Points more than ``max_future_s`` after the wall clock are skipped (``future_timestamp``):
    one would make every later point of its series look out of order.
    Not thread-safe: one decoder per consumer.
    """

    def __init__(
        self,
        table: SeriesTable,
        quantiles: Sequence[float] = (0.5, 0.95, 0.99),
        max_cache: int | None = None,
        resource_keys: Iterable[str] = (),
        max_future_s: float = 3600.0,
    ) -> None:
        if not quantiles or not all(0 < q < 1 for q in quantiles):
            raise ValueError(f"quantiles must be in (0, 1), got {list(quantiles)}")
        self.table = table
        self.resource_keys = frozenset(resource_keys)
        self.max_future_ns = int(max_future_s * 1e9)
        self._future_ns = 0  # points after this (set per request) are skipped
        self.quantiles = tuple(quantiles)
        self.skipped: Counter[str] = Counter()
        self.state = RateState()
        quantile_series = [(f":p{round(q * 100, 3):g}", SeriesKind.QUANTILE) for q in quantiles]
        self._hist_derived: Derived = ((":rate", SeriesKind.RATE), *quantile_series)
        self._max_cache = max_cache or 4 * table.max_series + 1024
        self._cache: dict[tuple[bytes, str, int], dict[bytes, Any]] = {}
        self._cached = 0
        self._resources: dict[bytes, tuple[str, dict[str, str]]] = {}
        self._bounds: dict[tuple[float, ...], tuple[float, ...]] = {}  # shared bucket layouts
        table.on_evict(self._forget)

    # ----- public API -------------------------------------------------------------------

    def decode(self, payload: bytes) -> PointBatch:
        """Points of one serialized ExportMetricsServiceRequest (ValueError if malformed)."""
        try:
            request = ExportMetricsServiceRequest.FromString(payload)
        except Exception as e:  # upb raises DecodeError, a plain Exception subclass
            raise ValueError(f"not an OTLP ExportMetricsServiceRequest: {e}") from e
        return self.decode_request(request)

    def decode_request(self, request: ExportMetricsServiceRequest) -> PointBatch:
        """Points of one parsed request."""
        out = _Batch()
        self._future_ns = time.time_ns() + self.max_future_ns
        for rm in request.resource_metrics:
            rtoken = rm.resource.SerializeToString()
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    self._metric(out, rtoken, rm.resource, m)
        return self._finish(out)

    def snapshot(self) -> bytes:
        """Counter/histogram state keyed by series key (restore after the table's restore)."""
        return self.state.snapshot(lambda sid: i.key if (i := self.table.info(sid)) else None)

    def restore(self, data: bytes) -> int:
        """Load ``snapshot()`` state; returns how many series were dropped (unknown keys)."""
        self._clear_cache()
        return self.state.restore(data, self.table.lookup)

    # ----- per metric type --------------------------------------------------------------

    def _metric(self, out: _Batch, rtoken: bytes, resource: Any, m: Any) -> None:
        which = m.WhichOneof("data")
        if which == "gauge":
            self._gauge(out, self._ids(rtoken, m.name, 0), rtoken, resource, m, m.gauge)
        elif which == "sum":
            s = m.sum
            cumulative = s.aggregation_temporality == CUMULATIVE
            if not s.is_monotonic and cumulative:
                self._gauge(out, self._ids(rtoken, m.name, 0), rtoken, resource, m, s)
            elif cumulative:
                self._cumulative_sum(out, rtoken, resource, m)
            else:
                self._delta_sum(out, rtoken, resource, m)
        elif which == "histogram":
            self._histogram(out, rtoken, resource, m, m.histogram, exponential=False)
        elif which == "exponential_histogram":
            self._histogram(out, rtoken, resource, m, m.exponential_histogram, exponential=True)
        elif which == "summary":
            self._summary(out, rtoken, resource, m)
        else:
            self.skipped["unset_metric"] += 1

    def _gauge(
        self, out: _Batch, cache: dict[bytes, Any], rtoken: bytes, resource: Any, m: Any, d: Any
    ) -> None:
        ids, times, values, resolution = out.ids, out.times, out.values, out.resolution
        refused = 0
        for p in d.data_points:
            key = _number_attr_key(p)
            sid = cache.get(key)
            if sid is None:
                sid = cache[key] = self._resolve(resource, rtoken, m, GAUGE, p)[0]
            if sid < 0:
                refused += 1
            elif p.flags & NO_VALUE:
                self.skipped["no_recorded_value"] += 1
            else:
                ids.append(sid)
                times.append(p.time_unix_nano)
                if v := p.as_double:
                    values.append(v)
                    resolution.append(0.0)
                else:  # an integer gauge (in flight, queue length) moves by whole units
                    values.append(p.as_int)
                    resolution.append(1.0 if p.HasField("as_int") else 0.0)
        self._refused(refused)

    def _number_points(
        self, rtoken: bytes, resource: Any, m: Any, tag: int
    ) -> Iterable[tuple[int, int, int, float]]:
        """(id, start, time, value) of a Sum's usable points; skips counted."""
        cache = self._ids(rtoken, m.name, tag)
        for p in m.sum.data_points:
            key = _number_attr_key(p)
            sid = cache.get(key)
            if sid is None:
                sid = cache[key] = self._resolve(resource, rtoken, m, RATE, p)[0]
            v = p.as_double or p.as_int
            t = p.time_unix_nano
            if self._unusable(sid < 0, p.flags, t):
                continue
            if not math.isfinite(v):
                self.skipped["non_finite"] += 1
            else:
                yield sid, p.start_time_unix_nano, t, v

    def _cumulative_sum(self, out: _Batch, rtoken: bytes, resource: Any, m: Any) -> None:
        counters = self.state.counters
        for sid, start, t, v in self._number_points(rtoken, resource, m, 1):
            last = counters.get(sid)
            if last is None:
                counters[sid] = [start, v, t]
                self._touch_only(out, sid, t, "first_point")
                continue
            step = classify(int(last[0]), last[1], int(last[2]), start, t, v)
            if step is Step.STALE:
                self.skipped["out_of_order"] += 1
                continue
            if step is Step.NEXT:
                dt = t - int(last[2])
                out.add(sid, t, (v - last[1]) * 1e9 / dt, _count_quantum(v, dt))
            elif interval := reset_interval(int(last[0]), int(last[2]), start, t):
                out.add(sid, t, v * 1e9 / interval, _count_quantum(v, interval))
            else:
                self._touch_only(out, sid, t, "counter_reset_unknown_start")
            last[0], last[1], last[2] = start, v, t

    def _delta_sum(self, out: _Batch, rtoken: bytes, resource: Any, m: Any) -> None:
        for sid, start, t, v in self._number_points(rtoken, resource, m, 2):
            interval = self._delta_interval(sid, start, t)
            if interval:
                out.add(sid, t, v * 1e9 / interval, _count_quantum(v, interval))
            elif interval is not None:
                self._touch_only(out, sid, t, "no_interval")

    def _delta_interval(self, sid: int, start: int, t: int) -> int | None:
        """Interval of a delta point (ns); 0 when unknown; None when out of order (counted)."""
        prev = self.state.delta_times.get(sid)
        if prev is not None and t <= prev:
            self.skipped["out_of_order"] += 1
            return None
        self.state.delta_times[sid] = t
        if 0 < start < t:
            return t - start
        return t - prev if prev is not None else 0

    def _histogram(
        self, out: _Batch, rtoken: bytes, resource: Any, m: Any, d: Any, exponential: bool
    ) -> None:
        cache = self._ids(rtoken, m.name, 4 if exponential else 3)
        cumulative = d.aggregation_temporality == CUMULATIVE
        for p in d.data_points:
            key = _attr_key(p)
            ids = cache.get(key)
            if ids is None:
                ids = cache[key] = self._resolve(resource, rtoken, m, self._hist_derived, p)
            t = p.time_unix_nano
            if not self._unusable(ids[0] < 0, p.flags, t):
                new = _hist_state(p, exponential)
                new.bounds = self._bounds.setdefault(new.bounds, new.bounds)  # one copy
                if cumulative:
                    self._cumulative_hist(out, ids, new)
                else:
                    self._delta_hist(out, ids, new)

    def _cumulative_hist(self, out: _Batch, ids: tuple[int, ...], new: HistState) -> None:
        sid, t = ids[0], new.time
        last = self.state.hists.get(sid)
        self.state.hists[sid] = new
        if last is None:
            self._touch_only(out, sid, t, "first_point")
            return
        step = classify(last.start, last.count, last.time, new.start, t, new.count)
        if step is Step.STALE:
            self.state.hists[sid] = last
            self.skipped["out_of_order"] += 1
        elif step is Step.NEXT:
            buckets = _delta(new, last)
            self._emit_hist(out, ids, t, t - last.time, new.count - last.count, buckets, _bare(new))
        elif interval := reset_interval(last.start, last.time, new.start, t):
            self._emit_hist(out, ids, t, interval, new.count, _buckets(new), _bare(new))
        else:
            self._touch_only(out, sid, t, "counter_reset_unknown_start")

    def _delta_hist(self, out: _Batch, ids: tuple[int, ...], new: HistState) -> None:
        interval = self._delta_interval(ids[0], new.start, new.time)
        if interval:
            self._emit_hist(out, ids, new.time, interval, new.count, _buckets(new), _bare(new))
        elif interval is not None:
            self._touch_only(out, ids[0], new.time, "no_interval")

    def _emit_hist(
        self,
        out: _Batch,
        ids: tuple[int, ...],
        t: int,
        interval: int,
        count: int,
        buckets: tuple[Sequence[float], Sequence[float], Sequence[int]] | None,
        no_buckets: bool = False,
    ) -> None:
        out.add(ids[0], t, count * 1e9 / interval, 1e9 / interval)
        if count <= 0:
            return
        if buckets is None:
            self.skipped["no_buckets" if no_buckets else "bucket_layout_changed"] += 1
            return
        qs = hg.quantiles(*buckets, self.quantiles)
        if qs is not None:
            # No quantum: where a quantile sits in its bucket is interpolated, and a bucket's
            # width says nothing of how far the next quantile may move (a latency fault
            # jumps into the wide buckets).
            for sid, q in zip(ids[1:], qs, strict=True):
                if sid >= 0:
                    out.add(sid, t, q)

    def _unusable(self, refused: bool, flags: int, t: int) -> bool:
        """Count and say whether a sum or histogram point cannot be used: its series was
        refused (the cap), it carries no value, or its time is missing or in the future."""
        if refused:
            self._refused(1)
        elif flags & NO_VALUE:
            self.skipped["no_recorded_value"] += 1
        elif not t:
            self.skipped["no_timestamp"] += 1
        elif t > self._future_ns:
            self.skipped["future_timestamp"] += 1
        else:
            return False
        return True

    def _summary(self, out: _Batch, rtoken: bytes, resource: Any, m: Any) -> None:
        cache = self._ids(rtoken, m.name, 5)
        for p in m.summary.data_points:
            qs = tuple(qv.quantile for qv in p.quantile_values)
            key = _attr_key(p) + repr(qs).encode()
            ids = cache.get(key)
            if ids is None:
                derived = tuple((f":q{q:g}", SeriesKind.GAUGE) for q in qs)
                ids = cache[key] = self._resolve(resource, rtoken, m, derived, p)
            t = p.time_unix_nano
            if p.flags & NO_VALUE:
                self.skipped["no_recorded_value"] += 1
                continue
            for sid, qv in zip(ids, p.quantile_values, strict=True):
                if sid < 0:
                    self._refused(1)
                else:
                    out.add(sid, t, qv.value)

    # ----- ids, caches, output ----------------------------------------------------------

    def _ids(self, rtoken: bytes, name: str, tag: int) -> dict[bytes, Any]:
        """The attribute-key -> id(s) cache of one (resource, metric, type)."""
        if self._cached > self._max_cache:
            self._clear_cache()
        key = (rtoken, name, tag)
        cache = self._cache.get(key)
        if cache is None:
            cache = self._cache[key] = {}
        return cache

    def _resolve(
        self, resource: Any, rtoken: bytes, m: Any, derived: Derived, p: Any
    ) -> tuple[int, ...]:
        """Intern the derived series of one point (the slow path: builds the keys)."""
        self._cached += 1
        res = self._resources.get(rtoken)
        if res is None:
            rl = resource_labels(resource.attributes, self.resource_keys)
            res = self._resources[rtoken] = (rl.get("service.name", ""), rl)
        service, labels = res[0], {**res[1], **labels_of(p.attributes)}
        ids: list[int] = []
        for suffix, kind in derived:
            name = m.name + suffix
            unit = m.unit + "/s" if kind is SeriesKind.RATE and not suffix else m.unit
            unit = "1/s" if suffix == ":rate" else unit
            key = series_key(name, labels)
            # the first series' refusals are counted per point by _refused(); later ones
            # (a histogram's quantiles when its rate fitted) once here
            sid = self.table.intern(key, name, service, kind, unit, labels, count_refused=bool(ids))
            if sid < 0 and not ids:
                return (-1,) * len(derived)
            ids.append(sid)
        return tuple(ids)

    def _refused(self, n: int) -> None:
        if n:
            self.skipped["series_cap"] += n
            self.table.refuse(n)

    def _touch_only(self, out: _Batch, sid: int, t: int, reason: str) -> None:
        self.skipped[reason] += 1
        out.touch_ids.append(sid)
        out.touch_times.append(t)

    def _forget(self, freed: np.ndarray) -> None:
        self._clear_cache()
        self.state.forget(freed.tolist())

    def _clear_cache(self) -> None:
        self._cache.clear()
        self._resources.clear()
        if len(self._bounds) > 1024:  # layouts are few; bound them against odd senders
            self._bounds.clear()
        self._cached = 0

    def _finish(self, out: _Batch) -> PointBatch:
        ids = np.array(out.ids, dtype=np.int64)
        ns = np.array(out.times, dtype=np.uint64)  # fixed64: may not fit int64
        values = np.array(out.values, dtype=np.float64)
        resolution = np.array(out.resolution, dtype=np.float64)
        ok = ns > 0
        if not ok.all():
            self.skipped["no_timestamp"] += int(len(ok) - ok.sum())
        future = ns > self._future_ns
        if future.any():
            self.skipped["future_timestamp"] += int(future.sum())
            ok &= ~future
        finite = np.isfinite(values)
        if not finite.all():
            self.skipped["non_finite"] += int((ok & ~finite).sum())
            ok &= finite
        times = ns / 1e9  # division, not * 1e-9: whole seconds stay exact
        fresh = times > self.table.last_seen[ids]  # replayed or duplicate points
        if not fresh.all():
            self.skipped["out_of_order"] += int((ok & ~fresh).sum())
            ok &= fresh
        if not ok.all():
            ids, times, values, resolution = ids[ok], times[ok], values[ok], resolution[ok]
        if len(times) > 1 and (np.diff(times) < 0).any():
            order = np.argsort(times, kind="stable")  # keeps each series in time order
            ids, times, values = ids[order], times[order], values[order]
            resolution = resolution[order]
        self.table.touch(ids, times)
        if out.touch_ids:
            self.table.touch(np.array(out.touch_ids), np.array(out.touch_times) / 1e9)
        return PointBatch(ids, times, values, resolution)


def _count_quantum(count: float, interval_ns: int) -> float:
    """The rate one more count in the interval makes, for a counter of whole counts (its
    rate moves in these steps, whatever the traffic); 0 for a counter of fractions."""
    whole = isinstance(count, int) or count.is_integer()
    return 1e9 / interval_ns if whole else 0.0


def _hist_state(p: Any, exponential: bool) -> HistState:
    """A histogram point's buckets as state (explicit or exponential)."""
    if not exponential:
        return HistState(
            p.start_time_unix_nano, p.time_unix_nano, p.count,
            tuple(p.explicit_bounds), tuple(p.bucket_counts),
        )  # fmt: skip
    return HistState(
        p.start_time_unix_nano, p.time_unix_nano, p.count, scale=p.scale, zero=p.zero_count,
        pos=hg.to_dict(p.positive.offset, p.positive.bucket_counts),
        neg=hg.to_dict(p.negative.offset, p.negative.bucket_counts),
    )  # fmt: skip


def _bare(h: HistState) -> bool:
    """True for a histogram point without buckets (count and sum only)."""
    return h.scale is None and not h.bounds


def _buckets(h: HistState) -> tuple[Sequence[float], Sequence[float], Sequence[int]] | None:
    """(lowers, uppers, counts) of a point's own buckets; None when there are no bounds."""
    if h.scale is None:
        if not h.bounds or len(h.counts) != len(h.bounds) + 1:
            return None
        lowers, uppers = hg.explicit_layout(h.bounds)
        return lowers, uppers, h.counts
    return hg.exponential_buckets(h.scale, h.zero, h.pos, h.neg)


def _delta(
    new: HistState, last: HistState
) -> tuple[Sequence[float], Sequence[float], Sequence[int]] | None:
    """Buckets of new - last (same series, no reset); None when the layouts cannot be aligned."""
    if new.scale is None:
        if new.bounds != last.bounds or len(new.counts) != len(last.counts):
            return None
        diff = list(map(operator.sub, new.counts, last.counts))
        if not new.bounds or min(diff) < 0:
            return None
        lowers, uppers = hg.explicit_layout(new.bounds)
        return lowers, uppers, diff
    if last.scale is None or new.scale > last.scale:
        return None
    shift = last.scale - new.scale
    pos = hg.subtract(new.pos, hg.downscale(last.pos, shift))
    neg = hg.subtract(new.neg, hg.downscale(last.neg, shift))
    zero = new.zero - last.zero
    if pos is None or neg is None or zero < 0:
        return None
    return hg.exponential_buckets(new.scale, zero, pos, neg)
