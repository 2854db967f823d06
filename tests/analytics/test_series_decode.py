"""MetricsDecoder on hand-built OTLP requests: values, rates, quantiles, resets, the cap,
eviction, snapshot/restore continuity and the series key rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from analytics.series import build
from analytics.series.build import CUMULATIVE, DELTA, SEC
from analytics.series.decode import MetricsDecoder
from analytics.series.table import SeriesTable
from analytics.series.types import PointBatch, SeriesKind

A = {"route": "/a"}


def decoder(max_series: int = 100) -> MetricsDecoder:
    return MetricsDecoder(SeriesTable(max_series))


def by_metric(dec: MetricsDecoder, batch: PointBatch) -> dict[str, list[tuple[float, float]]]:
    """metric name -> [(time, value)] of a batch (one label set per metric in these tests)."""
    out: dict[str, list[tuple[float, float]]] = {}
    for sid, t, v in zip(
        batch.series.tolist(), batch.times.tolist(), batch.values.tolist(), strict=True
    ):
        info = dec.table.info(sid)
        assert info is not None
        out.setdefault(info.metric, []).append((t, v))
    return out


def counter(
    dec: MetricsDecoder,
    points: list[tuple[float, float, float]],
    temporality: int = CUMULATIVE,
    monotonic: bool = True,
) -> list[tuple[float, float]]:
    """Decode one cumulative (default) sum request of (start, time, value); its points out."""
    req, scope = build.request()
    pts = [(A, s, t, v) for s, t, v in points]
    build.monotonic_sum(scope, "reqs", pts, temporality, monotonic)
    return by_metric(dec, dec.decode(req.SerializeToString())).get("reqs", [])


def test_gauge_values_times_and_int_values() -> None:
    dec = decoder()
    req, scope = build.request({"service.name": "api", "k8s.pod.name": "p1"})
    build.gauge(scope, "mem", [(A, 10.0, 1.5), ({"route": "/b"}, 10.0, 2.5), (A, 11.0, 0.0)])
    m = scope.metrics.add(name="threads")
    m.gauge.data_points.add(time_unix_nano=12 * SEC, as_int=7)
    batch = dec.decode(req.SerializeToString())
    assert batch.values.tolist() == [1.5, 2.5, 0.0, 7.0]
    assert batch.times.tolist() == [10.0, 10.0, 11.0, 12.0]
    assert batch.series.tolist() == [0, 1, 0, 2]
    info = dec.table.info(0)
    assert info is not None and info.kind is SeriesKind.GAUGE and info.service == "api"
    assert info.labels == {"service.name": "api", "k8s.pod.name": "p1", "route": "/a"}


def test_series_key_rule() -> None:
    dec = decoder()
    resource = {
        "service.name": "api",
        "service.instance.id": "uuid-changes-every-restart",
        "telemetry.sdk.name": "opentelemetry",
        "host.name": "h1",
        "k8s.namespace.name": "prod",
        "container.id": "c1",
    }
    req, scope = build.request(resource)
    build.gauge(scope, "mem", [({"route": "/a", "host.name": "point-wins"}, 1.0, 1.0)])
    dec.decode(req.SerializeToString())
    info = dec.table.info(0)
    assert info is not None
    assert info.key == (
        'mem{"container.id"="c1","host.name"="point-wins","k8s.namespace.name"="prod",'
        '"route"="/a","service.name"="api"}'
    )


def test_cumulative_sum_rate_first_point_and_resets() -> None:
    dec = decoder()
    assert counter(dec, [(100, 110, 50)]) == []  # first point: unknown span
    assert counter(dec, [(100, 120, 150)]) == [(120.0, 10.0)]
    # restarted at 125 (new start between the points): rate since the new start
    assert counter(dec, [(125, 135, 20)]) == [(135.0, 2.0)]
    # value dropped with the same start: no reset time known, skipped; next point fine
    assert counter(dec, [(125, 145, 5), (125, 155, 25)]) == [(155.0, 2.0)]
    # a start before the previous point is not a restart after it (two writers): skipped
    assert counter(dec, [(120, 165, 1)]) == []
    assert dec.skipped["first_point"] == 1
    assert dec.skipped["counter_reset_unknown_start"] == 2
    info = dec.table.info(0)
    assert info is not None and info.kind is SeriesKind.RATE and info.metric == "reqs"


def test_cumulative_sum_out_of_order_and_duplicates_emit_nothing() -> None:
    dec = decoder()
    counter(dec, [(100, 110, 50), (100, 120, 150)])
    assert counter(dec, [(100, 120, 150), (100, 115, 100)]) == []
    assert dec.skipped["out_of_order"] == 2
    assert counter(dec, [(100, 130, 250)]) == [(130.0, 10.0)]


def test_delta_sum_rate_from_start_or_previous_point() -> None:
    dec = decoder()
    assert counter(dec, [(100, 110, 50)], temporality=DELTA) == [(110.0, 5.0)]
    assert counter(dec, [(0, 120, 7)], temporality=DELTA) == [(120.0, 0.7)]  # previous time
    fresh = decoder()
    assert counter(fresh, [(0, 120, 7)], temporality=DELTA) == []
    assert fresh.skipped["no_interval"] == 1


def test_non_monotonic_sum_is_a_gauge() -> None:
    dec = decoder()
    assert counter(dec, [(100, 110, 50), (100, 120, 10)], monotonic=False) == [
        (110.0, 50.0),
        (120.0, 10.0),
    ]
    info = dec.table.info(0)
    assert info is not None and info.kind is SeriesKind.GAUGE


def hist(
    dec: MetricsDecoder, points: list[tuple[float, float, list[int]]], temporality: int = CUMULATIVE
) -> dict[str, list[tuple[float, float]]]:
    req, scope = build.request()
    build.histogram(scope, "lat", [10, 20, 40], [(A, s, t, c) for s, t, c in points], temporality)
    return by_metric(dec, dec.decode(req.SerializeToString()))


def test_cumulative_histogram_rate_and_quantiles() -> None:
    dec = decoder()
    assert hist(dec, [(0, 10, [0, 5, 5, 0])]) == {}
    out = hist(dec, [(0, 20, [0, 15, 15, 0])])  # deltas [0, 10, 10, 0] over 10 s
    assert out["lat:rate"] == [(20.0, 2.0)]
    assert out["lat:p50"] == [(20.0, 20.0)]  # rank 10 ends bucket (10, 20]
    assert out["lat:p95"][0][1] == pytest.approx(38.0)  # 20 + 20 * 9 / 10
    assert out["lat:p99"][0][1] == pytest.approx(39.6)
    out = hist(dec, [(0, 30, [0, 15, 15, 0])])  # no new observations: rate 0, no quantile
    assert out == {"lat:rate": [(30.0, 0.0)]}
    kinds = {i.metric: i.kind for i in map(dec.table.info, range(4)) if i}
    assert kinds == {
        "lat:rate": SeriesKind.RATE,
        "lat:p50": SeriesKind.QUANTILE,
        "lat:p95": SeriesKind.QUANTILE,
        "lat:p99": SeriesKind.QUANTILE,
    }


def test_histogram_first_and_inf_bucket_rules() -> None:
    dec = decoder()
    out = hist(dec, [(5, 10, [4, 0, 0, 0])], DELTA)  # first bucket: lower edge 0
    assert out["lat:p50"] == [(10.0, 5.0)] and out["lat:rate"] == [(10.0, 0.8)]
    out = hist(dec, [(10, 20, [0, 0, 0, 5])], DELTA)  # +Inf bucket: highest finite bound
    assert out["lat:p50"] == [(20.0, 40.0)] and out["lat:p99"] == [(20.0, 40.0)]


def test_histogram_reset_and_bounds_change() -> None:
    dec = decoder()
    hist(dec, [(0, 10, [0, 5, 5, 0]), (0, 20, [0, 15, 15, 0])])
    out = hist(dec, [(25, 30, [0, 0, 10, 0])])  # restarted at 25: its own buckets over 5 s
    assert out["lat:rate"] == [(30.0, 2.0)] and out["lat:p50"] == [(30.0, 30.0)]
    req, scope = build.request()
    build.histogram(scope, "lat", [1, 2, 3], [(A, 25, 40, [0, 0, 10, 4])])
    out = by_metric(dec, dec.decode(req.SerializeToString()))
    assert out == {"lat:rate": [(40.0, 0.4)]}  # same count series, quantiles not comparable
    assert dec.skipped["bucket_layout_changed"] == 1


def exp_hist(
    scope: pb.ScopeMetrics, t: int, scale: int, offset: int, counts: list[int], temporality: int
) -> None:
    m = scope.metrics.add(name="elat")
    m.exponential_histogram.aggregation_temporality = temporality
    p = m.exponential_histogram.data_points.add(
        start_time_unix_nano=1 * SEC, time_unix_nano=t * SEC, count=sum(counts), scale=scale
    )
    p.positive.offset = offset
    p.positive.bucket_counts.extend(counts)


def test_exponential_histogram_delta_quantiles() -> None:
    dec = decoder()
    req, scope = build.request()
    exp_hist(scope, 9, 0, 0, [0, 4, 4], DELTA)  # base 2: (1,2] 0, (2,4] 4, (4,8] 4 over 8 s
    out = by_metric(dec, dec.decode(req.SerializeToString()))
    assert out["elat:rate"] == [(9.0, 1.0)]
    assert out["elat:p50"] == [(9.0, 4.0)]
    assert out["elat:p95"][0][1] == pytest.approx(7.6)


def test_exponential_histogram_cumulative_across_a_downscale() -> None:
    dec = decoder()
    req, scope = build.request()
    exp_hist(scope, 10, 1, 2, [4], CUMULATIVE)  # scale 1, index 2: (2, 2.83]
    exp_hist(scope, 20, 0, 1, [10], CUMULATIVE)  # scale 0, index 1: (2, 4] holds the 4 too
    out = by_metric(dec, dec.decode(req.SerializeToString()))
    assert out["elat:rate"] == [(20.0, 0.6)]
    assert out["elat:p50"] == [(20.0, 3.0)]  # 6 new values in (2, 4], rank 3


def test_summary_quantiles_are_gauges() -> None:
    dec = decoder()
    req, scope = build.request()
    m = scope.metrics.add(name="rpc")
    p = m.summary.data_points.add(time_unix_nano=5 * SEC, count=10, sum=3.0)
    p.quantile_values.add(quantile=0.5, value=0.2)
    p.quantile_values.add(quantile=0.99, value=0.9)
    out = by_metric(dec, dec.decode(req.SerializeToString()))
    assert out == {"rpc:q0.5": [(5.0, 0.2)], "rpc:q0.99": [(5.0, 0.9)]}


def test_nan_inf_no_timestamp_and_no_recorded_value_are_skipped_and_counted() -> None:
    dec = decoder()
    req, scope = build.request()
    build.gauge(scope, "g", [(A, 1.0, math.nan), (A, 2.0, math.inf), (A, 0.0, 1.0), (A, 3.0, 4.0)])
    scope.metrics[0].gauge.data_points.add(time_unix_nano=4 * SEC, as_double=1.0, flags=1)
    build.monotonic_sum(scope, "c", [(A, 1, 2, 1.0), (A, 1, 3, math.nan), (A, 1, 4, 3.0)])
    out = by_metric(dec, dec.decode(req.SerializeToString()))
    assert out == {"g": [(3.0, 4.0)], "c": [(4.0, 1.0)]}  # NaN skipped, state kept
    assert dec.skipped["non_finite"] == 3
    assert dec.skipped["no_timestamp"] == 1
    assert dec.skipped["no_recorded_value"] == 1


def test_cap_refuses_new_series_and_counts() -> None:
    dec = decoder(max_series=2)
    req, scope = build.request()
    build.gauge(scope, "g", [({"i": str(i)}, 1.0, float(i)) for i in range(3)] * 2)
    batch = dec.decode(req.SerializeToString())
    assert len(batch) == 4 and set(batch.series.tolist()) == {0, 1}
    assert dec.skipped["series_cap"] == 2 and dec.table.refused == 2


def test_evict_clears_counter_state_and_reuses_ids() -> None:
    dec = decoder(max_series=1)
    counter(dec, [(100, 110, 1000), (100, 120, 2000)])
    assert dec.table.evict_idle(older_than=200.0).tolist() == [0]
    assert len(dec.state) == 0
    req, scope = build.request()
    build.monotonic_sum(scope, "other", [(A, 100, 130, 5)])
    assert len(dec.decode(req.SerializeToString())) == 0  # first point of a new series
    info = dec.table.info(0)
    assert info is not None and info.metric == "other"
    assert counter(dec, [(100, 140, 9)]) == []  # refused: the cap is full again
    assert dec.skipped["series_cap"] == 1


def test_snapshot_restore_continues_rates_and_never_replays() -> None:
    dec = decoder()
    counter(dec, [(100, 110, 50), (100, 120, 150)])
    hist(dec, [(0, 10, [0, 5, 5, 0]), (0, 20, [0, 15, 15, 0])])
    table_data, state_data = dec.table.snapshot(), dec.snapshot()

    table = SeriesTable(100)
    table.restore(table_data)
    again = MetricsDecoder(table)
    assert again.restore(state_data) == 0
    # replayed records (already seen before the snapshot) emit nothing
    assert counter(again, [(100, 120, 150)]) == []
    assert hist(again, [(0, 20, [0, 15, 15, 0])]) == {}
    # the next point gives a rate at once: no point lost, no bogus rate
    assert counter(again, [(100, 130, 250)]) == [(130.0, 10.0)]
    assert hist(again, [(0, 30, [0, 25, 25, 0])])["lat:p50"] == [(30.0, 20.0)]
    # a gauge replay is dropped too (time not after the series' last point)
    req, scope = build.request()
    build.gauge(scope, "g", [(A, 5.0, 1.0)])
    assert len(again.decode(req.SerializeToString())) == 1
    assert len(again.decode(req.SerializeToString())) == 0


def test_restore_drops_unknown_keys_and_refuses_garbage() -> None:
    dec = decoder()
    counter(dec, [(100, 110, 50)])
    other = MetricsDecoder(SeriesTable(10))
    assert other.restore(dec.snapshot()) == 1
    with pytest.raises(ValueError, match="not a metrics decoder snapshot"):
        other.restore(b"nope")


def test_batch_is_time_ordered_per_series() -> None:
    dec = decoder()
    req, scope = build.request()
    build.gauge(scope, "g", [(A, 3.0, 3.0), (A, 1.0, 1.0), ({"x": "y"}, 2.0, 2.0)])
    batch = dec.decode(req.SerializeToString())
    assert batch.times.tolist() == [1.0, 2.0, 3.0] and batch.values.tolist() == [1.0, 2.0, 3.0]
    assert batch.series.dtype == np.int64 and batch.times.dtype == np.float64


def test_bad_payload_names_the_input() -> None:
    with pytest.raises(ValueError, match="ExportMetricsServiceRequest"):
        decoder().decode(b"\xff\xff\xff")


def test_ebpf_agent_requests_decode() -> None:
    from ebpf.encode import Series, encode
    from ebpf.points import Log2Histogram, PointKind

    attrs = (("container.id", "c1"), ("k8s.pod.name", "web-1"))
    series = [
        Series("keiko.ebpf.cpu", PointKind.COUNTER, 500.0, attrs, unit="us"),
        Series("keiko.ebpf.rss", PointKind.GAUGE, 4096, attrs, unit="By"),
        Series("keiko.ebpf.runq", PointKind.HISTOGRAM, Log2Histogram((0, 6, 2), "us"), attrs),
    ]
    request = encode(series, {"host.name": "n1", "service.name": "keiko-ebpf"}, 10 * SEC, 15 * SEC)
    dec = decoder()
    out = by_metric(dec, dec.decode(request.SerializeToString()))
    assert out["keiko.ebpf.cpu"] == [(15.0, 100.0)]  # 500 us over 5 s
    assert out["keiko.ebpf.rss"] == [(15.0, 4096.0)]
    assert out["keiko.ebpf.runq:rate"] == [(15.0, 1.6)]
    # bounds [1, 3]: 6 values in (1, 3], rank 4 -> 1 + 2 * 4 / 6
    assert out["keiko.ebpf.runq:p50"][0][1] == pytest.approx(1 + 2 * 4 / 6)
    info = dec.table.info(0)
    assert info is not None and info.labels["k8s.pod.name"] == "web-1"


def test_delta_non_monotonic_sum_is_net_change_per_second() -> None:
    dec = decoder()
    assert counter(dec, [(100, 110, -30)], DELTA, monotonic=False) == [(110.0, -3.0)]
    info = dec.table.info(0)
    assert info is not None and info.kind is SeriesKind.RATE


def test_extra_resource_keys_tell_instances_apart() -> None:
    dec = MetricsDecoder(SeriesTable(10), resource_keys=["service.instance.id"])
    for instance in ("i1", "i2"):
        req, scope = build.request({"service.name": "api", "service.instance.id": instance})
        build.gauge(scope, "g", [(A, 1.0, 1.0)])
        dec.decode(req.SerializeToString())
    assert len(dec.table) == 2


def test_histogram_without_buckets_gives_the_rate_only() -> None:
    dec = decoder()
    out = hist(dec, [(5, 10, [3])], DELTA)  # 1 bucket count for 3 bounds: malformed
    assert out == {"lat:rate": [(10.0, 0.6)]}
    assert dec.skipped["bucket_layout_changed"] == 1
    req, scope = build.request()
    m = scope.metrics.add(name="bare")
    m.histogram.aggregation_temporality = DELTA
    m.histogram.data_points.add(start_time_unix_nano=1 * SEC, time_unix_nano=5 * SEC, count=8)
    out = by_metric(dec, dec.decode(req.SerializeToString()))
    assert out == {"bare:rate": [(5.0, 2.0)]}
    assert dec.skipped["no_buckets"] == 1


def test_future_timestamps_are_skipped_not_poisoning_the_series() -> None:
    dec = decoder()
    req, scope = build.request()
    build.gauge(scope, "g", [(A, 5.0, 1.0)])
    scope.metrics[0].gauge.data_points.add(time_unix_nano=2**64 - 1, as_double=2.0)
    build.monotonic_sum(scope, "c", [(A, 1, 2, 1.0)])
    scope.metrics[1].sum.data_points.add(time_unix_nano=2**63, as_double=5.0)
    out = by_metric(dec, dec.decode(req.SerializeToString()))
    assert out == {"g": [(5.0, 1.0)]}
    assert dec.skipped["future_timestamp"] == 2
    req, scope = build.request()
    build.monotonic_sum(scope, "c", [(A, 1, 4, 3.0)])
    # "c"'s state is still (t=2, 1.0), not the future point (which would skip this one)
    assert by_metric(dec, dec.decode(req.SerializeToString())) == {"c": [(4.0, 1.0)]}
