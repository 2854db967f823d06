"""Per-service detection inside the anomaly component: a service whose errors and latency
rise together while its traffic holds gets an event of its multivariate series, and one
whose requests start failing gets an event of its error ratio."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from analytics.anomaly.component import AnomalyDetector
from analytics.anomaly.config import AnomalyConfig
from analytics.anomaly.services import ERRORS_METRIC, METRIC
from analytics.series import build
from keiko.components import Context
from keiko.config import KeikoConfig
from keiko.records import Kind, Record
from keiko.telemetry import Telemetry

BOUNDS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
STEP = 15.0


def _request(t: float, start: float, totals: dict[str, np.ndarray]) -> bytes:
    """checkout's cumulative request-duration histograms, one per status code."""
    req, scope = build.request({"service.name": "checkout"})
    points = [
        ({"http.response.status_code": status}, start, t, [int(c) for c in counts])
        for status, counts in totals.items()
    ]
    build.histogram(scope, "http.server.request.duration", BOUNDS, points)
    return req.SerializeToString()


def _records(
    n: int,
    broken_from: int,
    errors: tuple[float, float] = (0.01, 0.2),
    buckets: tuple[int, int] = (2, 4),
) -> list[Record]:
    """n requests every STEP s: ~100 req/s, 1% errors, latency ~40 ms; from ``broken_from``
    on, 20% errors and latency ~200 ms at the same traffic (by default)."""
    rng = np.random.default_rng(3)
    start = 1_700_000_000.0
    totals = {"200": np.zeros(len(BOUNDS) + 1), "500": np.zeros(len(BOUNDS) + 1)}
    records = []
    for i in range(n):
        requests = rng.poisson(100 * STEP)
        broken = i >= broken_from
        failed = rng.binomial(requests, errors[broken])
        bucket = buckets[broken]  # by default 100-250 ms vs 25-50 ms
        totals["200"][bucket] += requests - failed
        totals["500"][bucket] += failed
        payload = _request(start + (i + 1) * STEP, start, totals)
        records.append(Record(i + 1, 0, Kind.OTLP_METRICS, payload, 1))
    return records


def _detector() -> AnomalyDetector:
    ctx = Context(store=None, telemetry=Telemetry(), config=KeikoConfig())  # type: ignore[arg-type]
    return AnomalyDetector(AnomalyConfig(), ctx)


def test_a_service_degrading_on_two_signals_gets_one_event_of_its_vector() -> None:
    detector = _detector()
    events: list[dict[str, Any]] = []
    for record in _records(700, broken_from=650):
        events += [json.loads(e.payload) for e in detector.process([record])]
    service = [e for e in events if e["metric"] == METRIC]
    assert len(service) == 1, service  # one excursion, one event (then the cooldown)
    event = service[0]
    assert event["service"] == "checkout" and event["labels"] == {"service.name": "checkout"}
    broke_at = 1_700_000_000.0 + 651 * STEP
    assert broke_at <= event["time_unix_nano"] / 1e9 <= broke_at + 3 * STEP
    # The per-series detectors see the change too (latency quantiles, the 5xx rate).
    assert any(e["metric"].startswith("http.server.request.duration:p") for e in events)


def test_requests_starting_to_fail_raise_an_event_of_the_error_ratio() -> None:
    # Before the break no request fails (the 5xx series reads 0); after it, 30% fail at
    # the same traffic and latency. Of the per-series detectors only the synthetic error
    # ratio sees that as one move: the 200s fall by less than a third.
    detector = _detector()
    events: list[dict[str, Any]] = []
    for record in _records(200, broken_from=120, errors=(0.0, 0.3), buckets=(2, 2)):
        events += [json.loads(e.payload) for e in detector.process([record])]
    ratio = [e for e in events if e["metric"] == ERRORS_METRIC]
    assert len(ratio) == 1, ratio
    event = ratio[0]
    assert event["service"] == "checkout" and event["labels"] == {"service.name": "checkout"}
    assert event["time_unix_nano"] / 1e9 == 1_700_000_000.0 + 121 * STEP  # its first point
    assert 0.25 < event["value"] < 0.35
    assert event["expected_range"][1] < 0.01
