"""Replay a request-rate series through the Kubernetes HPA and through predictive scaling.

Time advances in HPA sync periods (15 s). The demand during a step of the series is that
step's value. At every sync each controller may scale, then the instant is scored:
under-provisioned when the demand exceeds ready pods x capacity per pod. Under-provisioned
minutes = (under-provisioned instants) x 15 s / 60. Replica-hours = provisioned pods
(starting or ready) x 15 s / 3600, summed. Both controllers see the demand as it was
``metrics_lag_s`` earlier; as the demand is constant within a step, the rate seen is that
step's rate. The forecaster learns a step once it has ended, and the plan is made from a
copy that has also learnt the step being seen as far as seen (the online advisor's nowcast;
here, the demand being constant within a step, its whole rate). Both share the start-up
delay and the HPA's scale-up rate limits. The predictive controller is the online advisor's
:class:`~analytics.forecast.policy.Planner`: it plans, every sync, for the steps after the
one being seen up to now + start-up + horizon (the pods it keeps or creates now must cover
them, as a pod removed now is back only a start-up later): the ``peak_quantile`` of their
forecast peak at ``utilisation`` (the peak takes ``persistence`` of the gap up to the latest
rate when that is higher), never below what the rate seen needs at ``floor_utilisation``, or
at the HPA's target when the rate seen needs more than the forecast (a burst the forecast
missed is met as fast and as amply as the HPA meets it); it scales in after its own window
(none by default). A later step whose pods the HPA's scale-up limit (max(100%, 4 pods) per
15 s) needs longer to reach than that step is beyond the look-ahead is planned for at once,
so a rise the forecast sees coming is ready in time. While the forecast is untrusted it is
the HPA itself.

Some instants are beyond any causal controller sized for at most the largest demand seen
so far: those whose demand exceeds what the largest demand seen by the time their pods had
to be ordered (a start-up earlier, seen a metrics lag late) needs at the HPA's target, e.g.
the opening ramp of a short trace. Even a controller that never scales in from that
largest demand misses them, so the HPA's under-provisioned instants among them bound the
ratio such a controller can reach. Churn is counted too: replica changes per hour, and
scale-ins reversed (pods wanted back) within 5 minutes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from pydantic import Field

from analytics.forecast.backtest import to_grid
from analytics.forecast.config import ForecasterConfig, WorkloadScaling
from analytics.forecast.hpa import Hpa, HpaConfig, Pods
from analytics.forecast.policy import PeakForecaster, Planner, replicas_for
from keiko.store.config import Strict


class SimConfig(Strict):
    """A replay: capacity, the HPA's settings and the predictive policy's."""

    capacity: float = Field(gt=0, description="Rate one ready pod serves (units of the series).")
    horizon_s: float = Field(
        default=15.0,
        gt=0,
        description="Predictive look-ahead after start-up (s); one sync is enough, as the plan "
        "is made again every sync.",
    )
    hpa: HpaConfig = Field(default_factory=HpaConfig, description="The HPA (and pod start-up).")
    scale_in_stabilisation_s: float = Field(
        default=0.0, ge=0, description="Predictive policy's scale-in window (s)."
    )
    headroom: float = Field(default=0.0, ge=0, description="Predictive policy's extra fraction.")
    utilisation: float = Field(
        default=WorkloadScaling.model_fields["predictive_utilisation"].default,
        gt=0,
        le=1,
        description="Predictive policy's planned utilisation of the forecast peak while the "
        "forecast is trusted.",
    )
    floor_utilisation: float = Field(
        default=WorkloadScaling.model_fields["floor_utilisation"].default,
        gt=0,
        le=1,
        description="Utilisation of the rate seen now that the predictive policy never goes "
        "below while trusted (above it, the forecast is behind the load).",
    )
    persistence: float = Field(
        default=WorkloadScaling.model_fields["persistence"].default,
        ge=0,
        le=1,
        description="Share of the gap up to the latest rate that the forecast peak takes when "
        "that rate is above it.",
    )
    min_history_s: float = Field(
        default=WorkloadScaling.model_fields["min_history_s"].default,
        ge=0,
        description="History before trusting forecasts (s); by default the online advisor's, "
        "so the replay is of keiko's own policy.",
    )
    max_relative_width: float = Field(
        default=5.0, gt=0, description="Widest trusted interval / max(peak, one pod's share)."
    )
    peak_quantile: float = Field(
        default=0.9, gt=0, lt=1, description="Quantile of the forecast peak sized for."
    )
    peak_errors: int = Field(
        default=120, ge=20, le=1024, description="Recent peak errors the quantile is taken over."
    )
    forecaster: ForecasterConfig = Field(
        default_factory=ForecasterConfig, description="Forecaster."
    )
    advice_tolerance: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Tolerance of the HPA carrying the predictive advice out (KEDA or an "
        "External metric): advice within this fraction of the current replicas is ignored. "
        "0 where behavior.scaleUp/scaleDown.tolerance can be set to 0 (Kubernetes 1.33+ "
        "with HPAConfigurableTolerance); 0.1, the HPA's default, elsewhere.",
    )
    nowcast: bool = Field(
        default=True,
        description="Plan from the step being seen too, as the online advisor does (its mean "
        "so far learnt provisionally); False: from the steps that have ended only.",
    )

    def scaling(self) -> WorkloadScaling:
        """The predictive policy's settings, sharing the HPA's target and start-up."""
        return WorkloadScaling(
            capacity_per_replica=self.capacity,
            target_utilisation=self.hpa.target_utilisation,
            predictive_utilisation=self.utilisation,
            floor_utilisation=self.floor_utilisation,
            persistence=self.persistence,
            headroom=self.headroom,
            horizon_s=self.horizon_s,
            startup_s=self.hpa.startup_s,
            scale_in_stabilisation_s=self.scale_in_stabilisation_s,
            min_replicas=self.hpa.min_replicas,
            max_replicas=self.hpa.max_replicas,
            max_relative_width=self.max_relative_width,
            min_history_s=self.min_history_s,
            peak_quantile=self.peak_quantile,
            peak_errors=self.peak_errors,
        )


@dataclass(frozen=True)
class SimResult:
    """The two controllers' scores."""

    step_s: float
    duration_h: float
    capacity: float
    peak_replicas_needed: int
    hpa_under_min: float
    pred_under_min: float
    hpa_replica_h: float
    pred_replica_h: float
    fallback_share: float  # of syncs where the predictive policy used the reactive size
    # of hpa_under_min / pred_under_min: instants beyond a controller sized for at most the
    # largest demand seen so far (the module's docstring)
    hpa_unreachable_min: float = 0.0
    pred_unreachable_min: float = 0.0
    # replica changes per hour, and scale-ins reversed within REVERSAL_S per hour (churn)
    hpa_changes_per_h: float = 0.0
    pred_changes_per_h: float = 0.0
    hpa_reversals_per_h: float = 0.0
    pred_reversals_per_h: float = 0.0

    @property
    def under_ratio(self) -> float:
        """Predictive / HPA under-provisioned minutes (0 if both are 0)."""
        if self.hpa_under_min == 0:
            return 0.0 if self.pred_under_min == 0 else math.inf
        return self.pred_under_min / self.hpa_under_min

    @property
    def best_possible_ratio(self) -> float:
        """The HPA's unreachable share: the lowest ratio a controller sized for at most the
        largest demand seen so far can reach."""
        if self.hpa_under_min == 0:
            return 0.0
        return self.hpa_unreachable_min / self.hpa_under_min

    @property
    def target_met(self) -> bool:
        """At most half the HPA's under-provisioned minutes at no more replica-hours."""
        return self.under_ratio <= 0.5 and self.pred_replica_h <= self.hpa_replica_h

    def summary(self) -> dict[str, float | int | bool]:
        """Every field plus the ratio and whether the target is met."""
        return {
            **asdict(self),
            "under_ratio": self.under_ratio,
            "best_possible_ratio": self.best_possible_ratio,
            "target_met": self.target_met,
        }


REVERSAL_S = 300.0  # a scale-out this soon after a scale-in reverses it (the HPA's window)


class _Controller:
    """Pods plus the scores of one controller."""

    def __init__(self, replicas: int, start: float) -> None:
        self.pods = Pods([start] * replicas)
        self.missed: list[bool] = []  # per sync: under-provisioned
        self.pod_syncs = 0
        self.changes = self.reversals = 0
        self.last_total, self.last_in = replicas, -math.inf

    def score(self, now: float, demand: float, capacity: float) -> None:
        self.missed.append(demand > self.pods.ready(now) * capacity)
        total = self.pods.total()
        self.pod_syncs += total
        if total != self.last_total:
            self.changes += 1
            if total < self.last_total:
                self.last_in = now
            elif now - self.last_in <= REVERSAL_S:
                self.reversals += 1  # pods removed and wanted back within the window
                self.last_in = -math.inf
            self.last_total = total

    def under(self, among: np.ndarray | None = None) -> int:
        """Under-provisioned syncs (only those flagged in ``among``)."""
        missed = np.array(self.missed, bool)
        return int(np.count_nonzero(missed if among is None else missed & among))


def simulate(times: np.ndarray, values: np.ndarray, config: SimConfig) -> SimResult:
    """Replay the series (any spacing; put on the median step) through both controllers."""
    grid = to_grid(times, values)
    demand = _carry_forward(grid.values)
    step, start, cap, hpa_c = grid.step, grid.start, config.capacity, config.hpa
    scaling = config.scaling()
    first = min(
        max(replicas_for(float(demand[0]), cap, scaling), hpa_c.min_replicas), hpa_c.max_replicas
    )
    hpa, pred = _Controller(first, start), _Controller(first, start)
    hpa_ctl, pred_ctl = Hpa(hpa_c), Hpa(hpa_c)
    forecaster = PeakForecaster(config.forecaster.model_copy(update={"step_s": step}), scaling)
    planner = Planner(forecaster, scaling, hpa_c)
    learnt, fallback = 0, 0
    ticks = np.arange(start, start + len(demand) * step, hpa_c.sync_s)
    for now in ticks:
        seen = now - hpa_c.metrics_lag_s
        observed = float(demand[_index(seen, start, step, len(demand))])
        # a step is learnt once it has ended; the demand is constant within a step, so the
        # mean so far of the one being seen (the advisor's nowcast) is the rate seen
        while learnt < len(demand) and start + (learnt + 1) * step <= seen:
            forecaster.learn(start + learnt * step, float(grid.values[learnt]))
            learnt += 1
        at = _index(seen, start, step, len(demand))
        hpa_ctl.sync(now, hpa.pods, observed, cap)
        current = pred.pods.total()
        # the step being seen is served by the pods there now (sized for the rate seen):
        # the plan is for the steps after it
        partial = (start + at * step, float(grid.values[at])) if config.nowcast else None
        unseen = start + (at + 1) * step
        decision = planner.advise(now, observed, current, cap, unseen, learnt * step, partial)
        fallback += decision.mode == "reactive"
        # in fallback it is the HPA itself: its recommendation and its scale-down window
        if decision.mode == "reactive":
            want, down_s = pred_ctl.desired(now, pred.pods, observed, cap), None
        else:
            want, down_s = decision.replicas, scaling.scale_in_stabilisation_s
            if current and abs(want / current - 1.0) <= config.advice_tolerance:
                want = current  # the HPA carrying the advice out leaves it alone
        new = pred_ctl.normalise(now, current, want, down_s)
        pred_ctl.record(now, current, new)
        pred.pods.scale_to(new, now, hpa_c.startup_s)
        d = float(demand[_index(now, start, step, len(demand))])
        hpa.score(now, d, cap)
        pred.score(now, d, cap)
    sync_min, sync_h = hpa_c.sync_s / 60.0, hpa_c.sync_s / 3600.0
    beyond = _unreachable(demand, ticks, (start, step), first, config)
    hours = max(len(ticks) * sync_h, sync_h)
    return SimResult(
        step_s=step,
        duration_h=len(ticks) * sync_h,
        capacity=cap,
        peak_replicas_needed=math.ceil(float(np.nanmax(demand)) / cap),
        hpa_under_min=hpa.under() * sync_min,
        pred_under_min=pred.under() * sync_min,
        hpa_replica_h=hpa.pod_syncs * sync_h,
        pred_replica_h=pred.pod_syncs * sync_h,
        fallback_share=fallback / max(1, len(ticks)),
        hpa_unreachable_min=hpa.under(beyond) * sync_min,
        pred_unreachable_min=pred.under(beyond) * sync_min,
        hpa_changes_per_h=hpa.changes / hours,
        pred_changes_per_h=pred.changes / hours,
        hpa_reversals_per_h=hpa.reversals / hours,
        pred_reversals_per_h=pred.reversals / hours,
    )


def _unreachable(
    demand: np.ndarray,
    ticks: np.ndarray,
    grid: tuple[float, float],
    first: int,
    config: SimConfig,
) -> np.ndarray:
    """Per sync: whether its demand is beyond the bound of the module's docstring.

    The bound holds the pods for the largest demand seen at the last sync a start-up
    earlier (at least the starting pods) at the HPA's target, and never scales in.
    """
    start, step = grid
    hpa, cap = config.hpa, config.capacity
    n = len(demand)
    seen = np.clip(((ticks - hpa.metrics_lag_s - start) // step).astype(np.int64), 0, n - 1)
    largest = np.maximum.accumulate(demand)[seen]  # largest demand seen at each sync
    ordered = np.searchsorted(ticks, ticks - hpa.startup_s, side="right") - 1
    need = np.ceil(largest / (cap * hpa.target_utilisation) - 1e-9)
    held = np.where(ordered >= 0, np.maximum(need[np.maximum(ordered, 0)], first), first)
    now = np.clip(((ticks - start) // step).astype(np.int64), 0, n - 1)
    return np.asarray(demand[now] > held * cap)


def _index(time: float, start: float, step: float, size: int) -> int:
    return min(max(int((time - start) // step), 0), size - 1)


def _carry_forward(values: np.ndarray) -> np.ndarray:
    idx = np.where(np.isfinite(values), np.arange(len(values)), 0)
    np.maximum.accumulate(idx, out=idx)
    out = values[idx]
    return np.where(np.isfinite(out), out, 0.0)
