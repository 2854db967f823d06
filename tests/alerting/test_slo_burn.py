"""Burn-rate math against hand-computed cases (the SRE workbook's numbers), insufficient
data, counter deltas and resets, latency from histogram buckets, and the bucket ring
against a brute-force sum."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from alerting.slo.burn import CALLS, DURATION, BurnBook, Ring, burn_rate, good_share, judge
from alerting.slo.config import WORKBOOK_WINDOWS, ObjectiveConfig, SloConfig
from alerting.slo.decode import DeltaTracker, Point, decode

T0 = 1_800_000_000.0  # a whole number of hours (unix seconds)
BUCKET = 30.0
SERVER = {"service.name": "cart", "span.kind": "SPAN_KIND_SERVER", "span.name": "GET /cart"}


def calls(time_s: float, n: float, status: str = "STATUS_CODE_UNSET", **attrs: str) -> Point:
    """A delta calls point of ``n`` calls at ``time_s``."""
    a = {**SERVER, "status.code": status, **attrs}
    return Point(CALLS, "sum", a, int(time_s * 1e9), int((time_s - BUCKET) * 1e9), float(n))


def book(min_events: int = 20, **objective: object) -> BurnBook:
    cfg = ObjectiveConfig.model_validate({"service": "cart", "target": 0.999, **objective})
    return BurnBook.build({"cart": cfg}, dict(WORKBOOK_WINDOWS), min_events, BUCKET, 3600.0)


def feed(b: BurnBook, start_s: float, buckets: int, per_bucket: int, errors: int) -> float:
    """``buckets`` buckets of ``per_bucket`` calls of which ``errors`` failed; the last time."""
    t = start_s
    for i in range(buckets):
        t = start_s + i * BUCKET + BUCKET / 2  # mid-bucket
        b.observe(calls(t, per_bucket - errors), (per_bucket - errors,))
        b.observe(calls(t, errors, "STATUS_CODE_ERROR"), (errors,))
    return t


def test_burn_rate_is_error_ratio_over_budget() -> None:
    assert burn_rate(980, 1000, 0.999) == pytest.approx(20.0)  # 2% errors at 99.9%
    assert burn_rate(990, 1000, 0.999) == pytest.approx(10.0)
    assert burn_rate(0, 0, 0.999) is None


def test_two_percent_errors_page_on_the_one_hour_window() -> None:
    b = book()
    now = feed(b, T0, 120, 1000, 20)  # 1 h of 2% errors: burn 20 >= 14.4 on 1h and 5m
    v = judge(b.objectives["cart"], "page-1h", WORKBOOK_WINDOWS["page-1h"], now, 20)
    assert v.long.burn == pytest.approx(20.0) and v.short.burn == pytest.approx(20.0)
    assert v.long.total == 120_000 and v.short.total == 10_000  # 5m = 10 buckets
    assert v.firing is True
    changes = b.evaluate(now)
    fired = {(c.verdict.window, c.firing) for c in changes}
    assert ("page-1h", True) in fired


def test_one_percent_is_no_page_on_one_hour_but_pages_on_six() -> None:
    b = book()
    now = feed(b, T0, 720, 1000, 10)  # 6 h of 1%: burn 10
    o = b.objectives["cart"]
    fast = judge(o, "page-1h", WORKBOOK_WINDOWS["page-1h"], now, 20)
    slow = judge(o, "page-6h", WORKBOOK_WINDOWS["page-6h"], now, 20)
    assert fast.long.burn == pytest.approx(10.0) and fast.firing is False  # 10 < 14.4
    assert slow.long.burn == pytest.approx(10.0) and slow.short.burn == pytest.approx(10.0)
    assert slow.long.total == 720_000 and slow.short.total == 60_000
    assert slow.firing is True  # 10 >= 6 on 6h and 30m


def test_a_recent_spike_pages_fast_but_not_on_the_six_hour_window() -> None:
    b = book()
    feed(b, T0, 600, 1000, 1)  # 5 h at 0.1%: burn 1
    now = feed(b, T0 + 600 * BUCKET, 120, 1000, 20)  # then 1 h at 2%
    o = b.objectives["cart"]
    slow = judge(o, "page-6h", WORKBOOK_WINDOWS["page-6h"], now, 20)
    # (600 * 1 + 120 * 20) / 720 000 = 0.41667% -> burn 4.1667 < 6
    assert slow.long.burn == pytest.approx(3000 / 720_000 / 0.001)
    assert slow.short.burn == pytest.approx(20.0) and slow.firing is False
    assert judge(o, "page-1h", WORKBOOK_WINDOWS["page-1h"], now, 20).firing is True


def test_alert_resolves_once_the_short_window_is_clean() -> None:
    b = book()
    now = feed(b, T0, 120, 1000, 20)
    assert ("cart", "page-1h") in {(c.verdict.objective, c.verdict.window) for c in b.evaluate(now)}
    now = feed(b, now + BUCKET / 2, 5, 1000, 0)  # the next 2.5 min are clean
    # 1h: 2200 / 120 000 -> burn 18.3 still; 5m: 5 bad buckets and 5 clean, 100 / 10 000
    # -> burn 10 < 14.4: the short window resets the alert
    changes = b.evaluate(now)
    resolved = [c for c in changes if c.verdict.window == "page-1h"]
    assert resolved and resolved[0].firing is False
    assert resolved[0].verdict.short.burn == pytest.approx(10.0)
    assert ("cart", "page-1h") not in b.firing


def test_too_few_calls_give_no_verdict_and_never_fire() -> None:
    b = book(min_events=20)
    now = feed(b, T0, 3, 5, 5)  # 15 calls, all failed: burn 1000, but under min_events
    assert b.evaluate(now) == [] and not b.firing
    v = judge(b.objectives["cart"], "page-1h", WORKBOOK_WINDOWS["page-1h"], now, 20)
    assert v.long.burn == pytest.approx(1000.0) and v.firing is False


def test_an_alert_resolves_when_its_short_window_thins_out() -> None:
    b = book(min_events=20)
    now = feed(b, T0, 120, 100, 10)  # 10%: every window fires
    b.evaluate(now)
    assert ("cart", "page-1h") in b.firing
    # Traffic nearly stops: the 5m window holds 10 calls, all failed: no verdict.
    now = feed(b, now + BUCKET / 2, 10, 1, 1)
    verdict = judge(b.objectives["cart"], "page-1h", WORKBOOK_WINDOWS["page-1h"], now, 20)
    assert verdict.short.total == 10 and verdict.short.burn == pytest.approx(1000)
    assert verdict.insufficient and verdict.firing is False
    changes = {c.verdict.window: c for c in b.evaluate(now)}
    assert changes["page-1h"].firing is False and changes["page-1h"].verdict.insufficient
    # The 6h pair's 30m window still has enough calls (50 buckets of 100 and 10 thin).
    assert ("cart", "page-6h") in b.firing and "page-6h" not in changes


def test_points_count_in_the_bucket_of_their_own_time() -> None:
    b = book()
    feed(b, T0, 120, 1000, 20)
    now = T0 + 2 * 3600  # data time one hour after the last bad bucket
    v = judge(b.objectives["cart"], "page-1h", WORKBOOK_WINDOWS["page-1h"], now, 20)
    assert v.long.total == 0 and v.firing is False


def test_points_older_than_the_longest_window_are_counted_as_late() -> None:
    b = book()
    o = b.objectives["cart"]
    b.observe(calls(T0 + 4 * 86400, 10), (10,))
    b.observe(calls(T0, 10), (10,))  # 4 days before: beyond 3d
    assert o.late == 1
    assert o.fine.window(3 * 86400, T0 + 4 * 86400) == (10.0, 10.0)


def test_error_budget_remaining_is_not_clamped_below_zero() -> None:
    b = book()
    assert b.objectives["cart"].budget_remaining(T0) == 1.0  # nothing spent
    now = feed(b, T0, 120, 1000, 2)  # 0.2% over the period at 99.9%: twice the budget
    assert b.objectives["cart"].budget_remaining(now) == pytest.approx(-1.0)
    b2 = book()
    now = feed(b2, T0, 120, 1000, 0)
    b2.observe(calls(now, 60, "STATUS_CODE_ERROR"), (60,))  # 60 / 120 060 -> half the budget
    assert b2.objectives["cart"].budget_remaining(now) == pytest.approx(1 - 60 / 120_060 / 0.001)


def test_objective_filters_service_kind_and_name() -> None:
    b = book(span_name="GET /cart")
    b.observe(calls(T0, 10, **{"service.name": "other"}), (10,))
    b.observe(calls(T0, 10, **{"span.kind": "SPAN_KIND_CLIENT"}), (10,))
    b.observe(calls(T0, 10, **{"span.name": "POST /pay"}), (10,))
    b.observe(calls(T0, 7), (7,))
    assert b.objectives["cart"].fine.window(3600, T0) == (7.0, 7.0)
    any_kind = book(span_kind="")
    any_kind.observe(calls(T0, 10, **{"span.kind": "SPAN_KIND_CLIENT"}), (10,))
    assert any_kind.objectives["cart"].fine.window(3600, T0)[1] == 10.0


# -- latency from histogram buckets -------------------------------------------------------


BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def test_good_share_is_exact_at_a_bound_and_linear_inside_a_bucket() -> None:
    buckets = (10, 20, 30, 40, 50, 60, 70, 80, 90)  # 9 buckets: the last is (1s, +inf)
    assert good_share(BOUNDS, buckets, 0.1) == 10 + 20 + 30 + 40 + 50  # exact
    assert good_share(BOUNDS, buckets, 0.005) == 10
    # 0.175 s is halfway through (0.1, 0.25]: half of its 60 calls
    assert good_share(BOUNDS, buckets, 0.175) == pytest.approx(150 + 30)
    # below the first bound: a share of (0, 0.005]
    assert good_share(BOUNDS, buckets, 0.0025) == pytest.approx(5)
    # above the last bound: the overflow bucket is never good
    assert good_share(BOUNDS, buckets, 5.0) == sum(buckets[:-1])


def test_latency_objective_counts_calls_within_the_threshold() -> None:
    b = book(kind="latency", threshold="250ms")
    buckets = (0, 0, 100, 300, 400, 100, 60, 30, 10)  # 1000 calls, 900 within 0.25 s
    attrs = {**SERVER, "status.code": "STATUS_CODE_ERROR"}  # any status counts
    t = T0
    for i in range(120):
        t = T0 + i * BUCKET + 1
        start = int((t - BUCKET) * 1e9)
        point = Point(
            DURATION, "histogram", attrs, int(t * 1e9), start, 1000.0, False, buckets, BOUNDS
        )
        b.observe(point, point.counts())
    b.observe(calls(t, 1000), (1000,))  # the calls counter is not what latency reads
    o = b.objectives["cart"]
    good, total = o.fine.window(3600, t)
    assert (good, total) == (108_000, 120_000)
    # 10% slow at 99.9%: burn 100
    assert judge(o, "page-1h", WORKBOOK_WINDOWS["page-1h"], t, 20).long.burn == pytest.approx(100)


def test_latency_objective_needs_a_threshold() -> None:
    with pytest.raises(ValueError, match="threshold"):
        ObjectiveConfig.model_validate({"service": "cart", "kind": "latency"})


def test_windows_must_be_at_least_a_bucket() -> None:
    with pytest.raises(ValueError, match="bucket_seconds"):
        SloConfig.model_validate({"bucket_seconds": 600})  # the workbook's 5m window
    assert SloConfig.model_validate({"bucket_seconds": 60}).burn_windows() == WORKBOOK_WINDOWS


# -- cumulative counters -> deltas ---------------------------------------------------------


def cumulative(time_s: float, value: float, start_s: float) -> Point:
    return Point(CALLS, "sum", dict(SERVER), int(time_s * 1e9), int(start_s * 1e9), value, True)


def test_cumulative_counters_become_deltas_with_resets() -> None:
    t = DeltaTracker(fresh_s=300, max_series=10)
    d = t.update(cumulative(T0 + 10, 40, T0))  # a fresh series: its calls are recent
    assert d is not None and d.counts == (40,) and d.seconds == 10
    d = t.update(cumulative(T0 + 40, 100, T0))
    assert d is not None and d.counts == (60,) and d.seconds == 30
    assert t.update(cumulative(T0 + 40, 100, T0)) is None  # the same point again
    d = t.update(cumulative(T0 + 70, 25, T0))  # a drop: the counter restarted
    assert d is not None and d.counts == (25,) and t.resets == 1
    d = t.update(cumulative(T0 + 100, 5, T0 + 80))  # a new start time: restarted again
    assert d is not None and d.counts == (5,) and d.seconds == 20 and t.resets == 2


def test_an_old_series_seen_first_is_only_a_baseline() -> None:
    t = DeltaTracker(fresh_s=300, max_series=10)
    assert t.update(cumulative(T0 + 86400, 1e6, T0)) is None  # a day of unknown calls
    assert t.baselines == 1
    d = t.update(cumulative(T0 + 86430, 1e6 + 7, T0))
    assert d is not None and d.counts == (7,)


def test_delta_points_are_taken_as_they_are_and_the_series_cap_counts() -> None:
    t = DeltaTracker(fresh_s=300, max_series=1)
    d = t.update(calls(T0, 12))
    assert d is not None and d.counts == (12,)
    t.update(cumulative(T0, 1, T0 - 1))
    other = cumulative(T0, 1, T0 - 1)
    other.attributes["span.name"] = "other"
    assert t.update(other) is None and t.dropped == 1


def test_histogram_deltas_per_bucket() -> None:
    t = DeltaTracker(fresh_s=300, max_series=10)
    a = Point(
        DURATION,
        "histogram",
        dict(SERVER),
        int(T0 * 1e9),
        int((T0 - 5) * 1e9),
        3,
        True,
        (1, 2),
        (0.1,),
    )
    b = Point(
        DURATION,
        "histogram",
        dict(SERVER),
        int((T0 + 30) * 1e9),
        int((T0 - 5) * 1e9),
        7,
        True,
        (2, 5),
        (0.1,),
    )
    t.update(a)
    d = t.update(b)
    assert d is not None and d.counts == (4, 1, 3)


# -- the ring ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 400), st.integers(1, 5)), min_size=1, max_size=80),
    st.integers(1, 40),
)
def test_ring_windows_match_a_brute_force_sum(adds: list[tuple[int, int]], width: int) -> None:
    ring = Ring(10.0, 16)
    kept: list[tuple[int, int]] = []  # (bucket, n) the ring accepted
    for second, n in sorted(adds, key=lambda a: random.Random(a[0]).random()):
        if ring.add(second * 1.0, n, n):
            kept.append((second // 10, n))
    now = ring.head
    good, total = ring.window(width * 10.0, now * 10.0)
    span = min(width, 16)
    expected = sum(n for bucket, n in kept if now - span < bucket <= now)
    assert total == expected == good


# -- decoding OTLP ------------------------------------------------------------------------


def test_decode_merges_resource_attributes_and_reads_each_kind() -> None:
    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(
        [
            KeyValue(key="service.name", value=AnyValue(string_value="cart")),
            KeyValue(key="replica", value=AnyValue(int_value=3)),
        ]
    )
    sm = rm.scope_metrics.add()
    h = sm.metrics.add(name=DURATION)
    h.histogram.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_DELTA
    h.histogram.data_points.add(
        attributes=[KeyValue(key="replica", value=AnyValue(string_value="own"))],
        start_time_unix_nano=1,
        time_unix_nano=2,
        count=3,
        bucket_counts=[1, 2, 0],
        explicit_bounds=[0.1, 0.5],
    )
    g = sm.metrics.add(name="queue.depth")
    g.gauge.data_points.add(
        attributes=[KeyValue(key="up", value=AnyValue(bool_value=True))],
        time_unix_nano=5,
        as_double=2.5,
    )
    sm.metrics.add(name="ignored").gauge.data_points.add(time_unix_nano=5, as_int=1)
    payload = request.SerializeToString()
    hist, gauge = decode(payload, frozenset({DURATION, "queue.depth"}))
    assert hist.kind == "histogram" and not hist.cumulative
    assert hist.attributes == {"service.name": "cart", "replica": "own"}  # the point's wins
    assert (hist.value, hist.buckets, hist.bounds) == (3.0, (1, 2, 0), (0.1, 0.5))
    assert gauge.kind == "gauge" and gauge.value == 2.5
    assert gauge.attributes == {"service.name": "cart", "replica": "3", "up": "true"}
    kept = decode(payload, frozenset({DURATION, "queue.depth"}), lambda m, r: m == DURATION)
    assert [p.metric for p in kept] == [DURATION]
    with pytest.raises(ValueError, match="not an OTLP metrics request"):
        decode(b"\xff\xff\xff", frozenset({DURATION}))


def test_checkpoint_keeps_counts_only_of_unchanged_objectives() -> None:
    b = book()
    now = feed(b, T0, 120, 1000, 20)
    b.evaluate(now)
    saved = b.to_json()
    same = book()
    assert same.restore(saved) == 1
    assert same.objectives["cart"].fine.window(3600, now) == (117_600.0, 120_000.0)
    assert ("cart", "page-1h") in same.firing
    changed = book(target=0.99)  # the target is not part of the counts: kept
    assert changed.restore(saved) == 1
    other = book(span_name="GET /other")  # different calls: start empty, alert resolves
    assert other.restore(saved) == 0 and ("cart", "page-1h") in other.firing
    assert ("page-1h", False) in {(c.verdict.window, c.firing) for c in other.evaluate(now)}
