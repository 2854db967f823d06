"""Predictive scaling: the forecast peak over the pods' useful future, and replicas for it.

New pods help only once ready and a pod removed now is back only a start-up later, so
what matters at ``now`` is the peak demand over ``[now, now + startup + horizon]``.
``PeakForecaster`` forecasts that peak after every step and keeps the residuals of its
past peak forecasts (actual window maximum minus forecast), so its quantiles are
calibrated for the peak itself. The residuals are kept in two classes (Mondrian conformal
prediction): those of forecasts made right after a surprising rise (a step more than
``surprise_scales`` error scales above its forecast) and the rest. After a surprise the
plan is sized from the errors that followed past surprises, so a series whose bursts build
over a few steps (or come in pairs) gets the pods the next step has needed before, while
the quiet steps, the vast majority, keep the calm class's narrow bound and pay nothing.
The forecaster is robust: a rise is clipped as a spike until it has lasted ``shift_after``
steps, so for a few steps its forecast can sit well below a level the series has already
moved to. The peak forecast therefore takes ``persistence`` (a half by default) of the gap
up to the latest value when that is higher; its errors are calibrated like the rest.
``decide`` sizes replicas for the ``peak_quantile`` of the peak at the predictive
utilisation (hotter than the reactive target: the forecast is ahead of the load) when the
forecast is trustworthy, never below what the current rate needs, and otherwise falls
back to the reactive size and says why.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from analytics.forecast.config import ForecasterConfig, WorkloadScaling
from analytics.forecast.hpa import HpaConfig, ramp_s
from analytics.forecast.intervals import ResidualQuantiles, Ring
from analytics.forecast.model import Forecaster


@dataclass(frozen=True)
class Peak:
    """The forecast peak of a window and its interval (NaN when unknown)."""

    point: float
    lower: float
    upper: float
    sized: float  # the quantile replicas are sized for
    surprised: bool = False  # sized from the errors that followed past surprising rises


class PeakForecaster:
    """A forecaster plus the calibration of its window-peak forecasts."""

    def __init__(self, config: ForecasterConfig, scaling: WorkloadScaling) -> None:
        step = config.step_s
        # the plan covers [now, now + startup + horizon]: a pod removed now is back only
        # a start-up later, so the steps before the start-up count as much as those after
        self.first = 1
        self.last = max(1, math.ceil((scaling.startup_s + scaling.horizon_s) / step))
        self.model = Forecaster(config, self.last)
        self.coverage = config.coverage
        self.recent = Ring(self.last - self.first + 1)  # actual values of the latest window
        self.predicted = np.full(self.last + 1, math.nan)  # peak forecast by the slot it ends on
        # as few as the conformal rank of the sized quantile needs (9 for 0.9): the plan is
        # trusted minutes into a new workload's life, not after an hour
        needed = math.ceil(scaling.peak_quantile / (1.0 - scaling.peak_quantile))
        self.residuals = ResidualQuantiles(config.coverage, scaling.peak_errors, max(5, needed))
        self.after_surprise = ResidualQuantiles(
            config.coverage, scaling.peak_errors, max(5, needed)
        )
        self.surprise_scales = scaling.surprise_scales
        self.made_surprised = np.zeros(self.last + 1, bool)  # by the slot the window ends on
        self.surprised = False  # the latest step rose surprisingly
        self.persistence = scaling.persistence
        self.latest = math.nan  # the latest step's value
        self.learnt = 0

    @property
    def step(self) -> float:
        """Step of the series (s)."""
        return self.model.config.step_s

    def learn(self, time: float, value: float) -> None:
        """Learn one step; score the peak forecast whose window ended with it."""
        if not math.isfinite(value):
            return
        slot = round(time / self.step) % (self.last + 1)
        self.recent.push(value)
        made = self.predicted[slot]  # the peak forecast whose window ends with this step
        self.predicted[slot] = math.nan
        if math.isfinite(made) and self.recent.count == self.recent.size:
            errors = self.after_surprise if self.made_surprised[slot] else self.residuals
            errors.push(float(np.max(self.recent.values())) - made)
        self.surprised = self._rises_surprisingly(time, value)
        self.model.learn(time, value)
        self.latest = value
        self.learnt += 1
        steps = np.arange(self.first, self.last + 1, dtype=np.float64)
        ends = (slot + self.last) % (self.last + 1)
        self.predicted[ends] = self._raw_peak(time + steps * self.step)
        self.made_surprised[ends] = self.surprised

    def _raw_peak(self, times: np.ndarray) -> float:
        """The model's peak over ``times``, moved ``persistence`` of the way up to the latest
        value when that is higher (a rise the robust model still discounts)."""
        raw = float(np.max(self.model.forecast(times)))
        if self.latest > raw:  # False while latest is NaN
            raw += self.persistence * (self.latest - raw)
        return raw

    def _rises_surprisingly(self, time: float, value: float) -> bool:
        # against the forecast made before seeing the value and the model's robust error
        # scale (its clipping scale); not while that scale is still being learnt
        if not self.model.warmed_up:
            return False
        expected = float(self.model.forecast(np.array([time]))[0])
        return bool(value - expected > self.surprise_scales * self.model.scale)

    def peak(self, start: float, end: float, quantile: float) -> Peak:
        """Forecast peak of ``[start, end]``, its interval and its ``quantile``."""
        if self.model.n == 0:
            return Peak(math.nan, math.nan, math.nan, math.nan)
        times = np.arange(start, end + self.step / 2, self.step)
        raw = self._raw_peak(times)
        if not self.residuals.ready:
            return Peak(raw, math.nan, math.nan, raw)
        # the raw maximum of smooth forecasts underestimates a noisy window's maximum: the
        # point is corrected by the median past error, the bounds by its quantiles
        lo, hi = self.residuals.offsets()
        mid = self.residuals.median()
        sized = raw + self.residuals.upper_offset(quantile)
        # after a surprising rise: at least what the steps after past surprises needed
        surprised = self.surprised and self.after_surprise.ready
        if surprised:
            sized = max(sized, raw + self.after_surprise.upper_offset(quantile))
        return Peak(
            max(raw + mid, 0.0),
            max(raw + lo, 0.0),
            max(raw + hi, 0.0),
            max(sized, 0.0),
            surprised,
        )

    def clone(self) -> PeakForecaster:
        """An independent copy: what a provisional ``learn`` may change without harm."""
        twin = copy.copy(self)
        twin.model = self.model.clone()
        twin.recent = self.recent.clone()
        twin.predicted, twin.made_surprised = self.predicted.copy(), self.made_surprised.copy()
        twin.residuals, twin.after_surprise = self.residuals.clone(), self.after_surprise.clone()
        return twin

    def to_state(self) -> dict[str, Any]:
        """JSON-able state."""
        return {
            "model": self.model.to_state(),
            "recent": self.recent.to_state(),
            "predicted": [None if math.isnan(v) else v for v in self.predicted.tolist()],
            "residuals": self.residuals.to_state(),
            "after_surprise": self.after_surprise.to_state(),
            "made_surprised": self.made_surprised.tolist(),
            "surprised": bool(self.surprised),
            "latest": None if math.isnan(self.latest) else self.latest,
            "learnt": self.learnt,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take the state of ``to_state`` (same config)."""
        self.model = Forecaster.from_state(state["model"])
        self.recent = Ring.from_state(state["recent"])
        self.predicted = np.array(
            [math.nan if v is None else v for v in state["predicted"]], np.float64
        )
        self.residuals = ResidualQuantiles.from_state(state["residuals"])
        self.learnt = int(state["learnt"])
        latest = state.get("latest")  # absent from checkpoints of older versions
        self.latest = math.nan if latest is None else float(latest)
        if "after_surprise" in state:  # absent from checkpoints of older versions
            self.after_surprise = ResidualQuantiles.from_state(state["after_surprise"])
            self.made_surprised = np.array(state["made_surprised"], bool)
            self.surprised = bool(state["surprised"])


@dataclass(frozen=True)
class Decision:
    """Replicas wanted before stabilisation, and why."""

    replicas: int
    mode: str  # "predictive" or "reactive"
    reason: str
    peak: Peak


def replicas_for(
    rate: float, capacity: float, scaling: WorkloadScaling, utilisation: float | None = None
) -> int:
    """Replicas that serve ``rate`` at ``utilisation`` (default: the target) with headroom."""
    if not math.isfinite(rate) or rate <= 0:
        return scaling.min_replicas
    util = scaling.target_utilisation if utilisation is None else utilisation
    need = rate * (1.0 + scaling.headroom) / (capacity * util)
    return math.ceil(need - 1e-9)


def decide(
    forecaster: PeakForecaster,
    now: float,
    reactive: int,
    capacity: float,
    scaling: WorkloadScaling,
    history_s: float,
    window: tuple[float, float] | None = None,
    floor: int | None = None,
) -> Decision:
    """Predictive replicas when the forecast is trusted, else ``reactive`` (and why).

    ``reactive`` is what the reactive signal asks for now (e.g. ``replicas_for`` the current
    rate, or the HPA's own recommendation). ``floor`` (default ``reactive``) is what the
    rate seen now needs at the floor utilisation; when it exceeds the forecast's size
    the forecast is behind the load and the advice is ``max(floor, reactive)``, so a
    missed burst is met at once and as amply as the reactive policy meets it.
    ``window``: the start times of the first and last steps to plan for (default
    ``[now, now + startup + horizon]``).
    """
    floor = reactive if floor is None else floor
    start, end = window or (now, now + scaling.startup_s + scaling.horizon_s)
    peak = forecaster.peak(start, end, scaling.peak_quantile)
    why_not = _distrust(forecaster, peak, scaling, history_s, capacity)
    if why_not:
        return Decision(reactive, "reactive", why_not, peak)
    predictive = replicas_for(peak.sized, capacity, scaling, scaling.predictive_utilisation)
    reason = (
        f"forecast peak {peak.point:.4g} (interval {peak.lower:.4g}..{peak.upper:.4g}, "
        f"sized for {peak.sized:.4g} at {100 * scaling.predictive_utilisation:.0f}% "
        f"utilisation) until {scaling.startup_s:.0f} s start-up + "
        f"{scaling.horizon_s:.0f} s from now"
    )
    if peak.surprised:
        reason += "; after a surprising rise, sized from the peaks that followed past ones"
    if floor > predictive:
        # the forecast is behind the load (a burst it missed): size the rate seen as the
        # reactive policy would, so a miss is met at least as amply as the HPA meets it
        wanted = max(floor, reactive)
        reason += f"; the rate seen is above the forecast and asks for more ({wanted})"
        return Decision(wanted, "predictive", reason, peak)
    return Decision(predictive, "predictive", reason, peak)


def _distrust(
    forecaster: PeakForecaster,
    peak: Peak,
    scaling: WorkloadScaling,
    history_s: float,
    capacity: float,
) -> str:
    if history_s < scaling.min_history_s:
        return (
            f"reactive: only {history_s:.0f} s of history, the forecast is trusted after "
            f"{scaling.min_history_s:.0f} s"
        )
    if not forecaster.residuals.ready:
        return "reactive: too few scored peak forecasts yet to size an interval"
    # relative to one replica's share at least: near-zero peaks make any width look huge
    width = (peak.upper - peak.lower) / max(peak.point, capacity * scaling.target_utilisation)
    if not math.isfinite(width) or width > scaling.max_relative_width:
        return (
            f"reactive: the forecast is uncertain (interval {peak.lower:.4g}..{peak.upper:.4g} "
            f"is {width:.2f} x the peak, more than {scaling.max_relative_width:g})"
        )
    return ""


class Planner:
    """The advice at any instant, made again at every sync or observation.

    Between two learnt steps the forecast does not change, but the instant does: the plan
    covers the steps after the one being seen (served by the pods there now, sized for the
    rate seen) that a pod created now (or not removed now) must serve, up to now + start-up
    + horizon, so pods for a step are ordered a start-up before it and released once it is
    seen. The step being filled is not learnt until it closes, but what has been seen of it
    is news the plan should not wait for: its mean so far (``partial``) is learnt by a
    provisional copy of the forecaster that the plan is made from (a nowcast), dropped once
    the step closes and the forecaster learns the whole step. The HPA that carries the
    advice out adds at most max(100%, 4 pods) per 15 s (``scale_up``, Kubernetes' default
    policies), so a large rise must be started earlier than one start-up ahead: a later step
    whose need takes longer to ramp up to than its distance beyond the look-ahead is planned
    for now. Never below what the rate seen needs at the floor utilisation; when that
    is more than the plan, the forecast is behind (a burst it missed) and the rate seen is
    sized at the reactive target, so a miss is met as fast and as amply as the HPA meets it.
    Decisions are cached per look-ahead until a step is learnt or the nowcast changes.
    """

    def __init__(
        self,
        forecaster: PeakForecaster,
        scaling: WorkloadScaling,
        scale_up: HpaConfig | None = None,
    ) -> None:
        self.forecaster, self.scaling = forecaster, scaling
        self.scale_up = scale_up or HpaConfig()
        self._key: tuple[float, ...] = ()
        self._cache: dict[int, Decision] = {}
        self._nowcast: tuple[tuple[float, ...], PeakForecaster] | None = None

    @property
    def step(self) -> float:
        """Step of the forecast series (s)."""
        return self.forecaster.step

    def advise(
        self,
        now: float,
        rate: float,
        current: int,
        capacity: float,
        unseen: float,
        history_s: float,
        partial: tuple[float, float] | None = None,
    ) -> Decision:
        """Replicas wanted at ``now`` (before stabilisation), and why.

        ``rate``: the rate seen now; ``current``: replicas provisioned now; ``unseen``: the
        start of the first step after the one being seen; ``history_s``: the time the
        forecaster's learnt steps cover; ``partial``: the start of the step being filled and
        its mean so far, to nowcast from. Reactive (``rate`` at the target) while untrusted.
        """
        s = self.scaling
        source = self._source(partial)
        if source is not self.forecaster:
            history_s += self.step  # the provisional step counts as seen
        decision, ahead = self._plan(now, current, capacity, unseen, history_s, source)
        if decision.mode != "predictive":
            return Decision(
                replicas_for(rate, capacity, s), "reactive", decision.reason, decision.peak
            )
        planned = decision.replicas if ahead else 0
        floor = replicas_for(rate, capacity, s, s.floor_utilisation)
        if not ahead:
            reason = (
                f"the rate seen {rate:.4g} at {100 * s.floor_utilisation:.0f}% utilisation: "
                "no step still to come starts within the start-up and horizon"
            )
            return Decision(floor, "predictive", reason, decision.peak)
        if floor > planned:
            wanted = replicas_for(rate, capacity, s)
            reason = (
                f"{decision.reason}; the rate seen {rate:.4g} is above the forecast and asks "
                f"for {wanted} at the {100 * s.target_utilisation:.0f}% target"
            )
            return Decision(wanted, "predictive", reason, decision.peak)
        return decision

    def _source(self, partial: tuple[float, float] | None) -> PeakForecaster:
        """The forecaster to plan from: a copy that has learnt ``partial`` (if any)."""
        if partial is None or not math.isfinite(partial[1]):
            return self.forecaster
        key = (float(self.forecaster.learnt), *partial)
        if self._nowcast is None or self._nowcast[0] != key:
            provisional = self.forecaster.clone()
            provisional.learn(*partial)
            self._nowcast = (key, provisional)
        return self._nowcast[1]

    def _plan(
        self,
        now: float,
        current: int,
        capacity: float,
        unseen: float,
        history_s: float,
        source: PeakForecaster,
    ) -> tuple[Decision, int]:
        """The decision for the unseen steps within reach of ``now``, and how many."""
        nowcast = self._nowcast[0] if self._nowcast and source is not self.forecaster else ()
        key = (unseen, capacity, history_s, float(self.forecaster.learnt), *nowcast)
        if key != self._key:
            self._key, self._cache = key, {}
        end = now + self.scaling.startup_s + self.scaling.horizon_s
        ahead = self._ahead(unseen, end)
        decision = self._decide(now, unseen, ahead, capacity, history_s, source)
        longest = ramp_s(current, self.scaling.max_replicas, self.scale_up)
        if decision.mode != "predictive" or not math.isfinite(longest):
            return decision, ahead  # nothing to start early
        planned = decision.replicas if ahead else 0
        period = self.scale_up.scale_up_period_s
        extra = period
        while extra <= longest:
            later_ahead = self._ahead(unseen, end + extra)
            later = self._decide(now, unseen, later_ahead, capacity, history_s, source)
            if (
                later_ahead > ahead
                and later.replicas > planned
                and ramp_s(current, later.replicas, self.scale_up) >= extra
            ):
                decision, ahead, planned = later, later_ahead, later.replicas
            extra += period
        return decision, ahead

    def _ahead(self, unseen: float, end: float) -> int:
        return max(0, math.ceil((end - unseen) / self.step))

    def _decide(
        self,
        now: float,
        unseen: float,
        ahead: int,
        capacity: float,
        history_s: float,
        source: PeakForecaster,
    ) -> Decision:
        if ahead not in self._cache:
            window = (unseen, unseen + (max(ahead, 1) - 1) * self.step)
            self._cache[ahead] = decide(source, now, 0, capacity, self.scaling, history_s, window)
        return self._cache[ahead]
