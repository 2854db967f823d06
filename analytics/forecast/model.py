"""Online forecaster: robust damped-trend exponential smoothing with a daily profile.

Two models learn side by side on a fixed step: a seasonal one (level + damped trend + a
profile of ``season_bins`` bins over the day, interpolated) and a flat one (level + damped
trend). The one with the lower recent error at the configured horizon makes the forecast,
so daily seasonality is used only where the data has it. Residuals beyond ``clip`` scales
are clipped (spikes barely move the state) unless ``shift_after`` of them in a row lie on
the same side, which is taken as a level shift and adopted at once. State: a few dozen
floats plus the profile and the residual rings, a few hundred floats in all. Forecasts
and interval bounds are never below zero (request rates, CPU) unless the series has been
negative: then they may be too (temperatures, deltas).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from analytics.forecast.config import ForecasterConfig
from analytics.forecast.intervals import ResidualQuantiles

_WARMUP = 8  # first residuals: no clipping while the scale is being learnt
_ERROR_MIN_HALF_LIFE = 288  # steps over which the models' h-step errors are compared, at least


def _rate(step: float, half_life: float) -> float:
    return 1.0 - 0.5 ** (step / half_life)


class Holt:
    """Level and damped trend, updated with a (clipped) one-step error."""

    def __init__(self, alpha: float, beta: float, phi: float) -> None:
        self.alpha, self.beta, self.phi = alpha, beta, phi
        self.level = math.nan
        self.trend = 0.0

    def one_step(self) -> float:
        """The level expected at the next step."""
        return self.level + self.phi * self.trend

    def update(self, error: float, seen: int) -> None:
        """Move by ``error`` (the observation minus ``one_step()``); ``seen``: values so far."""
        prev = self.level
        # a running mean until that is slower than alpha: a sound start from the first values
        self.level = self.one_step() + max(self.alpha, 1.0 / (seen + 1)) * error
        self.trend = self.phi * self.trend + self.beta * (self.level - prev - self.phi * self.trend)

    def clone(self) -> Holt:
        """An independent copy."""
        return copy.copy(self)

    def reset(self, level: float) -> None:
        """Start again at ``level`` with no trend (a level shift)."""
        self.level, self.trend = level, 0.0

    def ahead(self, steps: np.ndarray) -> np.ndarray:
        """Level + damped trend ``steps`` ahead (steps >= 1)."""
        phi = self.phi
        damp = steps if phi >= 1.0 else phi * (1.0 - phi**steps) / (1.0 - phi)
        return np.asarray(self.level + self.trend * damp, np.float64)


class Profile:
    """Additive daily profile in bins, linearly interpolated between bin centres."""

    def __init__(self, bins: int, season_s: float, gamma: float) -> None:
        self.bins, self.season_s, self.gamma = bins, season_s, gamma
        self.values = np.zeros(bins)
        self.weight = np.zeros(bins)

    def _where(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.mod(times, self.season_s) / self.season_s) * self.bins - 0.5
        left = np.floor(pos)
        frac = pos - left
        i = left.astype(np.int64) % self.bins
        return i, (i + 1) % self.bins, frac

    def at(self, times: np.ndarray) -> np.ndarray:
        """The profile at these unix times."""
        i, j, frac = self._where(times)
        return np.asarray(self.values[i] * (1.0 - frac) + self.values[j] * frac)

    def update(self, time: float, deviation: float) -> None:
        """Learn that the value at ``time`` lay ``deviation`` above the level."""
        i, j, frac = self._where(np.array([time]))
        for b, w in ((int(i[0]), 1.0 - float(frac[0])), (int(j[0]), float(frac[0]))):
            if w <= 0.0:
                continue
            self.weight[b] += w
            rate = w * max(self.gamma, 1.0 / self.weight[b])  # a running mean at first
            self.values[b] += rate * (deviation - self.values[b])

    def clone(self) -> Profile:
        """An independent copy."""
        twin = copy.copy(self)
        twin.values, twin.weight = self.values.copy(), self.weight.copy()
        return twin

    @property
    def complete(self) -> bool:
        """Whether every bin has been seen at least once."""
        return bool(np.all(self.weight > 0.0))


class Forecaster:
    """Learns one value per step (``learn``) and forecasts any number of steps ahead."""

    def __init__(self, config: ForecasterConfig, horizon: int) -> None:
        if horizon < 1:
            raise ValueError("horizon must be at least one step")
        self.config, self.horizon = config, horizon
        step = config.step_s
        alpha, beta = _rate(step, config.level_half_life_s), _rate(step, config.trend_half_life_s)
        phi = math.exp(-step / config.trend_damping_s)
        self.seasonal, self.flat = Holt(alpha, beta, phi), Holt(alpha, beta, phi)
        per_day = max(1.0, config.season_s / step / config.season_bins)  # visits per bin per day
        gamma = _rate(1.0, config.season_half_life_days * per_day)
        self.profile = Profile(config.season_bins, config.season_s, gamma)
        self.slow_rate = _rate(step, 2.0 * config.season_s)
        self.slow = math.nan
        self.centred = False
        self.scale = 0.0
        self.runs = [0, 0]  # signed counts of consecutive clipped residuals (seasonal, flat)
        self.n = 0
        self.negative = False  # a value below zero seen: forecasts are not floored at zero
        self.last_time = math.nan
        self.err = [0.0, 0.0]  # EWMA |h-step error| of (seasonal, flat)
        # (target time, seasonal, flat, chosen) of the forecasts made h steps before
        self._pending = np.full((horizon + 1, 4), math.nan)
        self.residuals = ResidualQuantiles(config.coverage, config.residual_window)

    def clone(self) -> Forecaster:
        """An independent copy (the config is shared: it is never changed)."""
        twin = copy.copy(self)
        twin.seasonal, twin.flat = self.seasonal.clone(), self.flat.clone()
        twin.profile = self.profile.clone()
        twin.runs, twin.err = list(self.runs), list(self.err)
        twin._pending = self._pending.copy()
        twin.residuals = self.residuals.clone()
        return twin

    # -- learning -------------------------------------------------------------------------
    def learn(self, time: float, value: float) -> None:
        """Learn the value of the step starting at ``time`` (steps may be skipped: gaps)."""
        if not math.isfinite(value):
            return
        self._score_pending(time, value)
        self.negative = self.negative or value < 0.0
        if self.n == 0:
            self.seasonal.reset(value)
            self.flat.reset(value)
        else:
            self._update(time, value)
        self.n += 1
        self.last_time = time
        self._remember_forecast(time + self.horizon * self.config.step_s)

    def _update(self, time: float, value: float) -> None:
        season = float(self.profile.at(np.array([time]))[0])
        e_seas = value - (self.seasonal.one_step() + season)
        e_flat = value - self.flat.one_step()
        limit = self.config.clip * self.scale if self.n > _WARMUP else math.inf
        scale_rate = 1.0 / self.n if self.n <= _WARMUP else self.seasonal.alpha / 2
        self.scale += scale_rate * (min(abs(e_seas), abs(e_flat), limit) - self.scale)
        c_seas = self._robust(0, e_seas, limit, value - season)
        c_flat = self._robust(1, e_flat, limit, value)
        # the observation without its outlying part as the flat model sees it (not the
        # seasonal model's view: its errors would feed back into its own profile)
        robust_value = value if c_flat is None else self.flat.one_step() + c_flat
        if c_seas is not None:
            self.seasonal.update(c_seas, self.n)
        if c_flat is not None:
            self.flat.update(c_flat, self.n)
        if self.centred:
            # deviations from a slow (two-day) level, not the fast one: the fast level would
            # absorb the daily shape and leave the profile almost flat for days
            self.slow += self.slow_rate * (robust_value - self.slow)
            self.profile.update(time, robust_value - self.slow)
            return
        self.profile.update(time, robust_value)  # first season: the mean value per bin
        if self.n * self.config.step_s >= self.config.season_s and self.profile.complete:
            self._centre()

    def _centre(self) -> None:
        # after the first season: the profile becomes deviations from its mean
        mean = float(self.profile.values.mean())
        self.profile.values -= mean
        self.slow = mean
        self.seasonal.level += mean
        self.centred = True

    def _robust(self, k: int, error: float, limit: float, level: float) -> float | None:
        """The error clipped at ``limit``; None after a level shift (model ``k`` reset)."""
        if abs(error) <= limit:
            self.runs[k] = 0
            return error
        sign = 1 if error > 0 else -1
        self.runs[k] = self.runs[k] + sign if self.runs[k] * sign > 0 else sign
        if abs(self.runs[k]) >= self.config.shift_after:
            (self.seasonal, self.flat)[k].reset(level)  # a level shift: adopt it at once
            self.runs[k] = 0
            return None
        return sign * limit

    def _score_pending(self, time: float, value: float) -> None:
        row = self._pending[self._slot(time)]
        if row[0] != time:
            return  # no forecast was made for this step (start or after a gap)
        # over a whole season: flat stretches of the day must not unseat the daily profile
        decay = 1.0 / max(_ERROR_MIN_HALF_LIFE, self.config.season_s / self.config.step_s)
        for k in (0, 1):
            self.err[k] += decay * (abs(value - row[1 + k]) - self.err[k])
        self.residuals.push(value - row[3])

    def _remember_forecast(self, target: float) -> None:
        seas, flat = self._both(np.array([target]))
        chosen = seas if self.uses_season else flat
        self._pending[self._slot(target)] = (target, seas[0], flat[0], chosen[0])

    def _slot(self, time: float) -> int:
        return round(time / self.config.step_s) % (self.horizon + 1)

    @property
    def warmed_up(self) -> bool:
        """Whether the robust error ``scale`` is learnt (outliers are clipped against it)."""
        return self.n > _WARMUP

    # -- forecasting ----------------------------------------------------------------------
    @property
    def uses_season(self) -> bool:
        """Whether the seasonal model is making the forecasts (seen a season and better)."""
        seen = self.n * self.config.step_s >= self.config.season_s and self.profile.complete
        return bool(seen and self.err[0] < self.err[1])

    def _both(self, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        steps = np.maximum(np.round((times - self.last_time) / self.config.step_s), 1.0)
        seas = self.seasonal.ahead(steps) + self.profile.at(times)
        return seas, self.flat.ahead(steps)

    def forecast(self, times: np.ndarray) -> np.ndarray:
        """Point forecasts (medians; below zero only if the series has been) at these future
        unix times."""
        if self.n == 0:
            return np.full(len(times), math.nan)
        seas, flat = self._both(np.asarray(times, np.float64))
        return np.maximum(seas if self.uses_season else flat, self._floor)

    def interval(self, forecast: float) -> tuple[float, float]:
        """The ``coverage`` interval around a forecast ``horizon`` steps ahead (NaN early)."""
        lo, hi = self.residuals.offsets()
        return max(forecast + lo, self._floor), forecast + hi

    @property
    def _floor(self) -> float:
        return -math.inf if self.negative else 0.0

    # -- checkpoints ----------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """JSON-able state (restore with ``from_state``)."""
        return {
            "config": self.config.model_dump(),
            "horizon": self.horizon,
            "seasonal": [self.seasonal.level, self.seasonal.trend],
            "flat": [self.flat.level, self.flat.trend],
            "profile": [self.profile.values.tolist(), self.profile.weight.tolist()],
            "scalars": [self.scale, *self.runs, self.n, self.last_time, self.slow, *self.err],
            "centred": self.centred,
            "negative": self.negative,
            "pending": [[None if math.isnan(v) else v for v in r] for r in self._pending.tolist()],
            "residuals": self.residuals.to_state(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Forecaster:
        """The forecaster of ``to_state``."""
        model = cls(ForecasterConfig(**state["config"]), int(state["horizon"]))
        model.seasonal.level, model.seasonal.trend = state["seasonal"]
        model.flat.level, model.flat.trend = state["flat"]
        model.profile.values = np.array(state["profile"][0], np.float64)
        model.profile.weight = np.array(state["profile"][1], np.float64)
        scale, r0, r1, n, last, slow, e0, e1 = state["scalars"]
        model.scale, model.runs, model.n, model.last_time = scale, [int(r0), int(r1)], int(n), last
        model.slow, model.centred = slow, bool(state["centred"])
        model.negative = bool(state.get("negative", False))  # absent before: rates only
        model.err = [e0, e1]
        model._pending = np.array(
            [[math.nan if v is None else v for v in r] for r in state["pending"]], np.float64
        )
        model.residuals = ResidualQuantiles.from_state(state["residuals"])
        return model
