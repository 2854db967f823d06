"""Per-workload request rates, replicas and latency from decoded metric series."""

from __future__ import annotations

import numpy as np

from analytics.series.table import SeriesTable
from analytics.series.types import PointBatch, SeriesKind
from analytics.series.workloads import DEFAULT_LATENCY_METRICS, DEFAULT_RATE_METRICS, WorkloadRates


def _table() -> tuple[SeriesTable, dict[str, int]]:
    table = SeriesTable(100)
    ids = {}
    for pod in ("a", "b"):
        for route in ("/cart", "/pay"):
            labels = {"service.name": "checkout", "k8s.namespace.name": "shop", "k8s.pod.name": pod}
            labels["http.route"] = route
            for metric, kind in (
                ("http.server.request.duration:rate", SeriesKind.RATE),
                ("http.server.request.duration:p99", SeriesKind.QUANTILE),
                ("process.cpu.time", SeriesKind.RATE),  # not a request rate: ignored
            ):
                key = f"{metric}{pod}{route}"
                ids[key] = table.intern(key, metric, "checkout", kind, labels=labels)
    return table, ids


def _batch(points: list[tuple[int, float, float]]) -> PointBatch:
    s, t, v = zip(*points, strict=True)
    return PointBatch(np.array(s), np.array(t), np.array(v))


def _rates() -> WorkloadRates:
    return WorkloadRates(
        DEFAULT_RATE_METRICS, DEFAULT_LATENCY_METRICS, ["k8s.namespace.name", "service.name"], 120
    )


def test_rate_is_summed_over_routes_and_pods_with_replicas_and_latency() -> None:
    table, ids = _table()
    rates = _rates()
    r = "http.server.request.duration:rate"
    p = "http.server.request.duration:p99"
    points = [
        (ids[f"{r}a/cart"], 100.0, 10.0),
        (ids[f"{r}a/pay"], 100.0, 5.0),
        (ids[f"{r}b/cart"], 101.0, 12.0),
        (ids[f"{p}b/cart"], 101.0, 0.25),
        (ids[f"{p}a/cart"], 101.0, 0.1),
        (ids["process.cpu.timea/cart"], 101.0, 999.0),
    ]
    (obs,) = rates.observe(_batch(points), table)
    assert obs.workload == "shop/checkout" and obs.time == 101.0
    assert obs.rate == 27.0 and obs.replicas == 2 and obs.latency == 0.25


def test_errors_count_the_5xx_series() -> None:
    table = SeriesTable(10)
    metric = "http.server.request.duration:rate"
    ok = table.intern("ok", metric, "cart", SeriesKind.RATE, labels={"service.name": "cart"})
    bad = table.intern(
        "bad",
        metric,
        "cart",
        SeriesKind.RATE,
        labels={"service.name": "cart", "http.response.status_code": "503"},
    )
    (obs,) = _rates().observe(_batch([(ok, 10.0, 9.0), (bad, 10.0, 1.0)]), table)
    assert obs.workload == "cart" and obs.rate == 10.0 and obs.errors == 1.0


def test_stale_series_drop_out_and_evicted_ones_are_forgotten() -> None:
    table, ids = _table()
    rates = _rates()
    r = "http.server.request.duration:rate"
    rates.observe(_batch([(ids[f"{r}a/cart"], 100.0, 10.0)]), table)
    (obs,) = rates.observe(_batch([(ids[f"{r}b/cart"], 300.0, 4.0)]), table)
    assert obs.rate == 4.0 and obs.replicas == 1  # pod a's point is 200 s old
    rates.forget(np.array([ids[f"{r}b/cart"]]))
    (obs,) = rates.observe(_batch([(ids[f"{r}a/pay"], 310.0, 1.0)]), table)
    assert obs.rate == 1.0


def test_an_older_point_does_not_replace_a_newer_one() -> None:
    table, ids = _table()
    rates = _rates()
    sid = ids["http.server.request.duration:ratea/cart"]
    rates.observe(_batch([(sid, 100.0, 10.0)]), table)
    assert rates.observe(_batch([(sid, 90.0, 50.0)]), table) == []


def test_span_metrics_count_served_requests_once() -> None:
    """Span metrics count only the spans a workload serves (server, consumer), and only
    where the workload has no request metrics of its own (both would count each request)."""
    table = SeriesTable(100)
    labels = {"service.name": "cart", "k8s.namespace.name": "shop"}
    ids = {
        kind: table.intern(
            f"calls{kind}",
            "traces.span.metrics.calls",
            "cart",
            SeriesKind.RATE,
            labels={**labels, "span.kind": kind},
        )
        for kind in ("SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_INTERNAL")
    }
    rates = _rates()
    (only_spans,) = rates.observe(_batch([(ids[k], 100.0, 10.0) for k in ids]), table)
    assert only_spans.rate == 10.0  # the server spans; not the calls cart makes
    own = table.intern(
        "own", "http.server.request.duration:rate", "cart", SeriesKind.RATE, labels=labels
    )
    (both,) = rates.observe(
        _batch([(own, 101.0, 11.0), (ids["SPAN_KIND_SERVER"], 101.0, 10.0)]), table
    )
    assert both.rate == 11.0  # the service's own metric, not the sum of the two sources
