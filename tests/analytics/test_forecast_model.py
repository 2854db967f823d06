"""The online forecaster: accuracy against seasonal-naive, interval coverage, robustness, state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analytics.csvseries import SeriesCSV
from analytics.forecast.backtest import backtest, seasonal_naive, to_grid
from analytics.forecast.config import ForecasterConfig
from analytics.forecast.model import Forecaster

STEP = 300.0
DAY = int(86400 / STEP)
START = 1_700_006_400.0  # a UTC midnight


def daily_series(days: int = 8, seed: int = 3) -> SeriesCSV:
    """A daily cycle with Poisson-like noise and a few spikes, 5-minute steps."""
    rng = np.random.default_rng(seed)
    k = np.arange(days * DAY)
    mean = 300 + 200 * np.sin(2 * np.pi * k / DAY) + 60 * np.sin(4 * np.pi * k / DAY)
    values = rng.poisson(mean).astype(float)
    values[rng.choice(len(k), 10, replace=False)] *= 4  # spikes
    times = START + k * STEP
    return SeriesCSV([str(int(t)) for t in times], times, values)


@pytest.mark.parametrize(("horizon", "max_mase"), [(1, 0.9), (12, 1.0)])
def test_beats_seasonal_naive_with_calibrated_intervals(horizon: int, max_mase: float) -> None:
    result = backtest(daily_series(), horizon)
    assert result.seasonal, "the daily profile should make the forecasts"
    assert "seasonal-naive" in result.baseline
    assert result.mase < max_mase, result
    assert 0.72 <= result.coverage <= 0.88, result


def test_forecast_uses_only_rows_up_to_t_minus_h() -> None:
    series = daily_series(days=3)
    h = 6
    full = backtest(series, h)
    cut = 500
    changed = SeriesCSV(series.raw_timestamps, series.times, series.values.copy())
    changed.values[cut:] = 0.0  # the future of row `cut` - h must not matter
    partial = backtest(changed, h)
    np.testing.assert_array_equal(full.forecast[: cut + h], partial.forecast[: cut + h])
    assert full.forecast[cut + h + 1] != partial.forecast[cut + h + 1]


def test_a_spike_barely_moves_the_forecast_but_a_level_shift_is_adopted() -> None:
    model = Forecaster(ForecasterConfig(step_s=60.0), horizon=1)
    rng = np.random.default_rng(0)
    t = 0.0
    for _ in range(200):
        model.learn(t, 100 + rng.normal(0, 2))
        t += 60
    model.learn(t, 1000.0)  # one spike
    after_spike = float(model.forecast(np.array([t + 60]))[0])
    assert abs(after_spike - 100) < 10
    for _ in range(8):  # a lasting shift
        t += 60
        model.learn(t, 300 + rng.normal(0, 2))
    assert abs(float(model.forecast(np.array([t + 60]))[0]) - 300) < 15


def test_irregular_input_is_put_on_the_median_step() -> None:
    times = np.array([0.0, 60.0, 125.0, 180.0, 181.0, 300.0])
    grid = to_grid(times, np.array([1.0, 2.0, 3.0, 4.0, 6.0, 7.0]))
    assert grid.step == 60.0
    assert grid.slot_of_row.tolist() == [0, 1, 2, 3, 3, 5]
    np.testing.assert_array_equal(grid.values[:4], [1.0, 2.0, 3.0, 5.0])
    assert np.isnan(grid.values[4])


def test_seasonal_naive_falls_back_to_naive_on_short_series() -> None:
    grid = to_grid(np.arange(10) * 60.0, np.arange(10.0))
    base, name = seasonal_naive(grid, 2)
    assert name.startswith("naive")
    assert base[5] == 3.0


def test_state_round_trips_and_is_bounded() -> None:
    series = daily_series(days=2)
    a = Forecaster(ForecasterConfig(step_s=STEP), horizon=12)
    for t, v in zip(series.times[:400], series.values[:400], strict=True):
        a.learn(float(t), float(v))
    state = json.loads(json.dumps(a.to_state()))
    floats = sum(len(v) if isinstance(v, list) else 1 for v in _leaves(state))
    assert floats < 800  # profile 2 x 144, residual ring 240, pending 13 x 4, scalars
    b = Forecaster.from_state(state)
    for t, v in zip(series.times[400:], series.values[400:], strict=True):
        a.learn(float(t), float(v))
        b.learn(float(t), float(v))
    future = series.times[-1] + STEP * np.arange(1, 13)
    np.testing.assert_array_equal(a.forecast(future), b.forecast(future))
    assert a.interval(100.0) == b.interval(100.0)


def _leaves(node: object) -> list[object]:
    if isinstance(node, dict):
        return [leaf for v in node.values() for leaf in _leaves(v)]
    if isinstance(node, list) and node and isinstance(node[0], list):
        return [leaf for v in node for leaf in _leaves(v)]
    return [node]


def test_forecasts_go_below_zero_only_for_a_series_that_has() -> None:
    # a temperature-like series around -5: floored at zero, every forecast would be wrong
    rng = np.random.default_rng(5)
    times = START + STEP * np.arange(600)
    cold = SeriesCSV([str(int(t)) for t in times], times, -5.0 + rng.normal(0, 0.3, 600))
    result = backtest(cold, 3)
    assert np.nanmax(result.forecast) < -3.0
    assert 0.7 <= result.coverage <= 0.9, result
    assert result.mase < 1.2, result
    # a rate near zero: its interval stops at zero, though its errors reach further down
    model = Forecaster(ForecasterConfig(step_s=STEP), horizon=3)
    for t, v in zip(times, rng.poisson(0.5, 600), strict=True):
        model.learn(float(t), float(v))
    point = float(model.forecast(np.array([times[-1] + STEP]))[0])
    assert point >= 0.0 and model.residuals.offsets()[0] < -point
    assert model.interval(point)[0] == 0.0
    # the flag survives a checkpoint
    warm = Forecaster(ForecasterConfig(step_s=STEP), horizon=3)
    for t, v in zip(times[:50], cold.values[:50], strict=True):
        warm.learn(float(t), float(v))
    restored = Forecaster.from_state(json.loads(json.dumps(warm.to_state())))
    assert restored.negative and restored.forecast(np.array([times[51]]))[0] < 0
