"""ScalingAdvisor: per-workload predictive scaling advice from a stream of request rates.

Feed it every observation of a workload's request rate (optionally with its current replicas
and latency, from which capacity is learnt when not configured). Rates are averaged over
fixed steps, which the forecaster learns as they close; every observation gets an ``Advice``
from the same :class:`~analytics.forecast.policy.Planner` that ``keiko scale-sim`` replays.
It asks for the ``peak_quantile`` of the forecast peak of the steps still to come within
start-up + horizon of the observation (a pod removed now is back only a start-up later; a
rise beyond the HPA's scale-up limits is started early), at the predictive utilisation plus
headroom, never below what the rate just seen needs at the floor utilisation (at the
reactive target when the forecast is behind it), scaled in only to the highest advice of the
stabilisation window (none by default). The forecast is a nowcast: made by a copy of the
forecaster that has also learnt the step being filled so far. While the forecast is not
trusted (too little history, too few scored forecasts, an interval wider than
``max_relative_width`` x the peak) the advice is the reactive size for the rate seen at the
target utilisation, held through the HPA's own 300-s scale-in window, with
``mode="reactive"`` and the reason.

Export: ``AdvisorCollector`` serves ``keiko_scaling_desired_replicas{workload,mode}``. A KEDA
``prometheus`` trigger with
``query: max(keiko_scaling_desired_replicas{workload="shop/checkout"})``, ``threshold: "1"``
(metricType AverageValue, ``ignoreNullValues: "false"``) makes the HPA run exactly that many
replicas (deploy/kubernetes/examples/keda-scaledobject.yaml);
an HPA ``External`` metric through prometheus-adapter with ``target.averageValue: 1`` does
the same. That HPA keeps its default 300 s scale-down stabilisation unless told otherwise;
the advice already covers the start-up a removed pod would need, so set
``behavior.scaleDown.stabilizationWindowSeconds: 0`` (KEDA:
``advanced.horizontalPodAutoscalerConfig.behavior``) or the replica-hours saved by
scaling in promptly are lost. Where the cluster allows it (the ``HPAConfigurableTolerance``
feature gate), also set ``behavior.scaleUp.tolerance`` and ``scaleDown.tolerance`` to 0: at
its default 0.1 the HPA ignores advice within 10% of the current replicas. Each
``Advice.as_event()`` is the event to write to the store.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from analytics.forecast.capacity import CapacityLearner
from analytics.forecast.config import AdvisorConfig, WorkloadScaling
from analytics.forecast.hpa import Stabiliser
from analytics.forecast.policy import Decision, Peak, PeakForecaster, Planner

_SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class Advice:
    """What a workload should run now, and why."""

    workload: str
    time: float
    replicas: int
    current_rate: float
    forecast_peak: float
    lower: float
    upper: float
    horizon_s: float
    mode: str  # "predictive" or "reactive"
    reason: str

    def as_event(self) -> dict[str, Any]:
        """The advice as a JSON-able event body (NaN as null)."""
        body = asdict(self)
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in body.items()}


class _Workload:
    """Bounded state of one workload: the step being filled, forecaster, capacity, window."""

    def __init__(self, config: AdvisorConfig, scaling: WorkloadScaling) -> None:
        self.scaling = scaling
        fc = config.forecaster.model_copy(update={"step_s": config.step_s})
        self.forecaster = PeakForecaster(fc, scaling)
        self.planner = Planner(self.forecaster, scaling)
        self.capacity = CapacityLearner(scaling.latency_objective_s)
        # keeps the longer of the two windows; each advice applies its mode's
        self.stabiliser = Stabiliser(
            max(scaling.scale_in_stabilisation_s, scaling.reactive_scale_in_s)
        )
        self.slot = -1  # the step being filled
        self.total, self.count = 0.0, 0
        self.first_time = math.nan
        self.replicas = 0  # the last advice
        self.observed_replicas = math.nan  # instances seen reporting (not checkpointed)
        self.last: Advice | None = None


class ScalingAdvisor:
    """Per-workload advice from ``observe``; checkpoint with ``snapshot``/``restore``."""

    def __init__(self, config: AdvisorConfig | None = None) -> None:
        self.config = config or AdvisorConfig()
        self._workloads: OrderedDict[str, _Workload] = OrderedDict()
        self.evicted = 0
        self.out_of_order = 0

    def observe(
        self,
        workload: str,
        time: float,
        rate: float,
        replicas: float | None = None,
        latency: float | None = None,
    ) -> Advice | None:
        """Take one observation; the advice it leads to (None when out of order or NaN)."""
        w = self._get(workload)
        if replicas is not None:
            w.observed_replicas = replicas
        if replicas is not None and latency is not None:
            w.capacity.observe(rate, replicas, latency)
        slot = math.floor(time / self.config.step_s)
        if math.isnan(w.first_time):
            w.first_time = time
        if slot < w.slot:
            self.out_of_order += 1
            return None
        if slot > w.slot and w.count:
            w.forecaster.learn(w.slot * self.config.step_s, w.total / w.count)
        if slot > w.slot:
            w.slot, w.total, w.count = slot, 0.0, 0
        if not math.isfinite(rate):
            return None
        w.total += rate
        w.count += 1
        return self._advise(workload, w, time, rate, replicas)

    def latest(self, workload: str) -> Advice | None:
        """The last advice for ``workload``."""
        w = self._workloads.get(workload)
        return w.last if w else None

    def observed_replicas(self, workload: str) -> float:
        """Replicas last seen reporting for ``workload`` (NaN before any)."""
        w = self._workloads.get(workload)
        return w.observed_replicas if w else math.nan

    def workloads(self) -> list[str]:
        """Workloads tracked now."""
        return list(self._workloads)

    def _get(self, name: str) -> _Workload:
        w = self._workloads.get(name)
        if w is None:
            w = _Workload(self.config, self.config.for_workload(name))
            self._workloads[name] = w
            if len(self._workloads) > self.config.max_workloads:
                self._workloads.popitem(last=False)
                self.evicted += 1
        self._workloads.move_to_end(name)
        return w

    def _advise(
        self, name: str, w: _Workload, now: float, rate: float, replicas: float | None
    ) -> Advice:
        s = w.scaling
        capacity, cap_note = self._capacity(w)
        if capacity is None:
            held = int(replicas) if replicas is not None else max(w.replicas, s.min_replicas)
            decision = Decision(held, "reactive", cap_note, Peak(*(math.nan,) * 4))
        else:
            # the pods there now (as reported, else as advised) bound how fast a rise ramps
            current = int(replicas) if replicas is not None and replicas >= 0 else w.replicas
            # the step being filled is served by the pods there now (sized for the rate
            # seen); the plan is for the steps after it, made from a nowcast that has
            # learnt the step being filled as far as seen
            step = self.config.step_s
            history = max(0.0, w.slot * step - w.first_time)
            partial = (w.slot * step, w.total / w.count)
            unseen = (w.slot + 1) * step
            decision = w.planner.advise(now, rate, current, capacity, unseen, history, partial)
        down_s = (
            s.scale_in_stabilisation_s if decision.mode == "predictive" else s.reactive_scale_in_s
        )
        stable = w.stabiliser.apply(now, w.replicas, decision.replicas, down_s)
        w.replicas = max(s.min_replicas, min(s.max_replicas, stable))
        reason = decision.reason + (f"; {cap_note}" if cap_note and capacity else "")
        if w.replicas > decision.replicas:
            reason += f"; held at {w.replicas} by the {down_s:.0f} s scale-in window"
        p = decision.peak
        w.last = Advice(
            name,
            now,
            w.replicas,
            rate,
            p.point,
            p.lower,
            p.upper,
            s.horizon_s,
            decision.mode,
            reason,
        )
        return w.last

    def _capacity(self, w: _Workload) -> tuple[float | None, str]:
        if w.scaling.capacity_per_replica is not None:
            return w.scaling.capacity_per_replica, ""
        est = w.capacity.estimate()
        if est is None:
            return None, (
                "reactive: capacity unknown (set capacity_per_replica, or send replicas and "
                "latency with the rate so it can be learnt); replicas held"
            )
        if est.saturated:
            return est.value, f"capacity {est.value:.4g}/replica learnt at the latency knee"
        return est.value, f"capacity {est.value:.4g}/replica: highest seen, saturation not yet seen"

    # -- checkpoints ----------------------------------------------------------------------
    def snapshot(self) -> bytes:
        """Every workload's state as bytes (JSON), to checkpoint in the store."""
        body = {
            "version": _SNAPSHOT_VERSION,
            "workloads": {name: _dump(w) for name, w in self._workloads.items()},
        }
        return json.dumps(body, separators=(",", ":")).encode()

    def restore(self, data: bytes) -> None:
        """Replace the state with that of ``snapshot()`` (settings come from this config)."""
        body = json.loads(data)
        if body.get("version") != _SNAPSHOT_VERSION:
            raise ValueError(
                f"advisor snapshot version {body.get('version')!r} is not {_SNAPSHOT_VERSION}"
            )
        self._workloads.clear()
        for name, state in body["workloads"].items():
            w = _Workload(self.config, self.config.for_workload(name))
            _load(w, state)
            self._workloads[name] = w


def _dump(w: _Workload) -> dict[str, Any]:
    return {
        "forecaster": w.forecaster.to_state(),
        "capacity": w.capacity.to_state(),
        "window": list(w.stabiliser.history),
        "step": [w.slot, w.total, w.count, None if math.isnan(w.first_time) else w.first_time],
        "replicas": w.replicas,
        "last": w.last.as_event() if w.last else None,
    }


def _load(w: _Workload, state: dict[str, Any]) -> None:
    w.forecaster.restore(state["forecaster"])
    w.capacity = CapacityLearner.from_state(state["capacity"])
    w.stabiliser.history.extend((float(t), int(r)) for t, r in state["window"])
    slot, total, count, first = state["step"]
    w.slot, w.total, w.count = int(slot), float(total), int(count)
    w.first_time = math.nan if first is None else float(first)
    w.replicas = int(state["replicas"])
    last = state["last"]
    if last is not None:
        w.last = _advice(last)


def _advice(body: dict[str, Any]) -> Advice:
    def num(key: str) -> float:
        return math.nan if body[key] is None else float(body[key])

    return Advice(
        workload=str(body["workload"]),
        time=float(body["time"]),
        replicas=int(body["replicas"]),
        current_rate=num("current_rate"),
        forecast_peak=num("forecast_peak"),
        lower=num("lower"),
        upper=num("upper"),
        horizon_s=float(body["horizon_s"]),
        mode=str(body["mode"]),
        reason=str(body["reason"]),
    )


class AdvisorCollector(Collector):
    """Prometheus collector reading the advisor's latest advice at scrape time."""

    def __init__(self, advisor: ScalingAdvisor) -> None:
        self.advisor = advisor

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """``keiko_scaling_desired_replicas`` and the forecast peak with its bounds."""
        desired = GaugeMetricFamily(
            "keiko_scaling_desired_replicas",
            "Replicas the scaling advisor recommends now (for KEDA / an HPA external metric).",
            labels=["workload", "mode"],
        )
        observed = GaugeMetricFamily(
            "keiko_scaling_observed_replicas",
            "Replicas of the workload keiko sees reporting now (its instances' metrics), to "
            "compare with the advice.",
            labels=["workload"],
        )
        peak = GaugeMetricFamily(
            "keiko_forecast_peak_rate",
            "Forecast peak request rate over the advisor's horizon, with its interval.",
            labels=["workload", "bound"],
        )
        for name in self.advisor.workloads():
            seen = self.advisor.observed_replicas(name)
            if math.isfinite(seen):
                observed.add_metric([name], seen)
            advice = self.advisor.latest(name)
            if advice is None:
                continue
            desired.add_metric([name, advice.mode], advice.replicas)
            for bound, value in (
                ("point", advice.forecast_peak),
                ("lower", advice.lower),
                ("upper", advice.upper),
            ):
                if math.isfinite(value):
                    peak.add_metric([name, bound], value)
        yield desired
        yield observed
        yield peak
