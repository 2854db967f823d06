"""Offline backtest of the forecaster on a ``timestamp,value`` series (``keiko forecast``).

Irregular input is put on a fixed grid (the median spacing of the timestamps, rows in the
same step averaged). The forecast for a row's step is the one the forecaster made right
after learning the step H before it, so it uses only data up to t - H. MASE here is the
forecast's mean absolute error divided by the seasonal-naive forecast's on the same rows:
the value one day earlier (the smallest whole number of days at least H steps back) when
the series spans at least two days plus H, else the last value H steps back (naive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analytics.csvseries import SeriesCSV
from analytics.forecast.config import ForecasterConfig
from analytics.forecast.model import Forecaster


@dataclass(frozen=True)
class Grid:
    """A series on a fixed step: start time, step, the slot of every input row, slot means."""

    start: float
    step: float
    slot_of_row: np.ndarray
    values: np.ndarray  # NaN where no row fell in the step


def to_grid(times: np.ndarray, values: np.ndarray, step: float | None = None) -> Grid:
    """Put rows on a grid of ``step`` seconds (default: the median spacing)."""
    order = np.argsort(times, kind="stable")
    if step is None:
        gaps = np.diff(times[order])
        gaps = gaps[gaps > 0]
        step = float(np.median(gaps)) if len(gaps) else 1.0
    start = float(times[order[0]])
    slots = np.round((times - start) / step).astype(np.int64)
    size = int(slots.max()) + 1
    finite = np.isfinite(values)
    sums = np.bincount(slots[finite], weights=values[finite], minlength=size)
    counts = np.bincount(slots[finite], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), math.nan)
    return Grid(start, step, slots, means)


@dataclass(frozen=True)
class Backtest:
    """Per-row forecasts and intervals, and the summary scores."""

    forecast: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    mase: float
    mae: float
    baseline_mae: float
    baseline: str
    coverage: float
    rows_scored: int
    step: float
    seasonal: bool  # whether the daily profile made the final forecasts


def forecast_grid(
    grid: Grid, horizon: int, config: ForecasterConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Forecast, lower, upper per slot (each made ``horizon`` slots before it); season used."""
    size = len(grid.values)
    out = np.full((3, size + horizon), math.nan)
    model = Forecaster(config.model_copy(update={"step_s": grid.step}), horizon)
    for slot in range(size):
        time = grid.start + slot * grid.step
        model.learn(time, float(grid.values[slot]))
        if model.n == 0:
            continue
        point = float(model.forecast(np.array([time + horizon * grid.step]))[0])
        lo, hi = model.interval(point)
        out[:, slot + horizon] = (point, lo, hi)
    return out[0, :size], out[1, :size], out[2, :size], model.uses_season


def seasonal_naive(grid: Grid, horizon: int) -> tuple[np.ndarray, str]:
    """The seasonal-naive (or naive) forecast per slot and its description."""
    season = round(86400.0 / grid.step)
    size = len(grid.values)
    if season >= 2 and size >= 2 * season + horizon:
        lag, name = (
            season * math.ceil(horizon / season),
            f"seasonal-naive (lag {season} steps: 1 day)",
        )
    else:
        lag, name = horizon, f"naive (lag {horizon} steps; under 2 days of data)"
    filled = _carry_forward(grid.values)
    base = np.full(size, math.nan)
    base[lag:] = filled[:-lag] if lag < size else []
    return base, name


def _carry_forward(values: np.ndarray) -> np.ndarray:
    idx = np.where(np.isfinite(values), np.arange(len(values)), 0)
    np.maximum.accumulate(idx, out=idx)
    return np.asarray(values[idx])


def backtest(series: SeriesCSV, horizon: int, config: ForecasterConfig | None = None) -> Backtest:
    """Forecast every row from the rows up to H steps before it; score against the baseline."""
    config = config or ForecasterConfig()
    grid = to_grid(series.times, series.values)
    fc, lo, hi, seasonal = forecast_grid(grid, horizon, config)
    base, base_name = seasonal_naive(grid, horizon)
    rows = grid.slot_of_row
    f, b, y = fc[rows], base[rows], series.values
    ok = np.isfinite(f) & np.isfinite(b) & np.isfinite(y)
    mae = float(np.mean(np.abs(y[ok] - f[ok]))) if ok.any() else math.nan
    bmae = float(np.mean(np.abs(y[ok] - b[ok]))) if ok.any() else math.nan
    has = np.isfinite(lo[rows]) & np.isfinite(y)
    inside = (lo[rows][has] <= y[has]) & (y[has] <= hi[rows][has])
    return Backtest(
        forecast=f,
        lower=lo[rows],
        upper=hi[rows],
        mase=mae / bmae if bmae > 0 else math.nan,
        mae=mae,
        baseline_mae=bmae,
        baseline=base_name,
        coverage=float(inside.mean()) if has.any() else math.nan,
        rows_scored=int(ok.sum()),
        step=grid.step,
        seasonal=seasonal,
    )
