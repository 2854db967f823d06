"""Per-workload forecasts of rate and CPU at 5, 15 and 60 minutes."""

from __future__ import annotations

import math

import numpy as np

from analytics.forecast.config import ForecasterConfig
from analytics.scaling.forecasts import ForecastCollector, WorkloadForecasts

DAY = 86400.0


def _rate(t: float) -> float:
    return 100 + 60 * math.sin(2 * math.pi * (t % DAY) / DAY)


def test_a_daily_pattern_is_forecast_an_hour_ahead_within_its_interval() -> None:
    forecasts = WorkloadForecasts(ForecasterConfig(step_s=60.0))
    rng = np.random.default_rng(2)
    start = 1_700_006_400.0  # midnight UTC
    inside, total = 0, 0
    for i in range(4 * 1440):  # four days at one observation per minute
        t = start + 60.0 * i
        value = _rate(t) + rng.normal(0, 3)
        forecasts.observe("shop/checkout", "rate", t, value)
        latest = forecasts.signals[("shop/checkout", "rate")].latest.get("1h")
        if i >= 3 * 1440 and latest is not None:
            total += 1
            truth = _rate(t + 3600.0)
            inside += latest[1] <= truth <= latest[2]
            assert abs(latest[0] - truth) < 15  # the daily shape, an hour ahead
    assert 0.7 <= inside / total <= 1.0  # the 80% interval holds (the noise is small)


def test_snapshot_restore_and_the_gauge() -> None:
    a = WorkloadForecasts(ForecasterConfig(step_s=60.0))
    for i in range(300):
        a.observe("w", "rate", 1_700_000_000 + 30.0 * i, 10.0 + i % 7)
        a.observe("w", "cpu", 1_700_000_000 + 30.0 * i, 2.0)
    a.observe("w", "cpu", 1_700_000_000 + 9000.0, None)  # unknown CPU: ignored
    b = WorkloadForecasts(ForecasterConfig(step_s=60.0))
    b.restore(a.snapshot())
    for i in range(300, 400):
        for f in (a, b):
            f.observe("w", "rate", 1_700_000_000 + 30.0 * i, 10.0 + i % 7)
    assert a.signals[("w", "rate")].latest == b.signals[("w", "rate")].latest
    (family,) = ForecastCollector(b).collect()
    labels = {tuple(s.labels[k] for k in ("signal", "horizon", "bound")) for s in family.samples}
    assert ("cpu", "5m", "point") in labels and ("rate", "1h", "point") in labels
