"""ScalingAdvisor: per-workload predictive scaling advice from a stream of request rates.

Feed it every observation of a workload's request rate (optionally with its current
replicas and latency, from which capacity is learnt when not configured). Rates are
averaged over fixed steps; when a step closes the forecaster learns it and an ``Advice``
comes back: replicas for the ``peak_quantile`` of the forecast peak over [now, now +
start-up + horizon] (a pod removed now is back only a start-up later) at the predictive
utilisation plus headroom, never below what the current rate needs at that utilisation,
scaled in only to the highest advice of the stabilisation window (none by default). While
the forecast is not trusted (too little history, too few scored forecasts, an interval
wider than ``max_relative_width`` x the peak) the advice is the reactive size for the
current rate at the target utilisation, with ``mode="reactive"`` and the reason.

Export: ``AdvisorCollector`` serves ``keiko_scaling_desired_replicas{workload}``. A KEDA
``prometheus`` trigger with ``query: keiko_scaling_desired_replicas{workload="checkout"}``,
``threshold: "1"`` (metricType AverageValue) makes the HPA run exactly that many replicas;
an HPA ``External`` metric through prometheus-adapter with ``target.averageValue: 1`` does
the same. That HPA keeps its default 300 s scale-down stabilisation unless told otherwise;
the advice already covers the start-up a removed pod would need, so set
``behavior.scaleDown.stabilizationWindowSeconds: 0`` (KEDA:
``advanced.horizontalPodAutoscalerConfig.behavior``) or the replica-hours saved by
scaling in promptly are lost. Each ``Advice.as_event()`` is the event to write to the store.
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
from analytics.forecast.policy import Decision, Peak, PeakForecaster, decide, replicas_for

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
        self.capacity = CapacityLearner(scaling.latency_objective_s)
        self.stabiliser = Stabiliser(scaling.scale_in_stabilisation_s)
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
        """Take one observation; returns advice when it closes a step, else None."""
        w = self._get(workload)
        if replicas is not None:
            w.observed_replicas = replicas
        if replicas is not None and latency is not None:
            w.capacity.observe(rate, replicas, latency)
        slot = math.floor(time / self.config.step_s)
        if math.isnan(w.first_time):
            w.first_time = time
        advice = None
        if slot < w.slot:
            self.out_of_order += 1
            return None
        if slot > w.slot and w.count:
            advice = self._close_step(workload, w, replicas)
        if slot > w.slot:
            w.slot, w.total, w.count = slot, 0.0, 0
        if math.isfinite(rate):
            w.total += rate
            w.count += 1
        return advice

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

    def _close_step(self, name: str, w: _Workload, replicas: float | None) -> Advice:
        step = self.config.step_s
        rate = w.total / w.count
        w.forecaster.learn(w.slot * step, rate)
        now = (w.slot + 1) * step
        s = w.scaling
        capacity, cap_note = self._capacity(w)
        if capacity is None:
            held = int(replicas) if replicas is not None else max(w.replicas, s.min_replicas)
            decision = Decision(held, "reactive", cap_note, Peak(*(math.nan,) * 4))
        else:
            reactive = replicas_for(rate, capacity, s)
            floor = replicas_for(rate, capacity, s, s.predictive_utilisation)
            history = now - w.first_time
            decision = decide(w.forecaster, now, reactive, capacity, s, history, floor=floor)
        stable = w.stabiliser.apply(now, w.replicas, decision.replicas)
        w.replicas = max(s.min_replicas, min(s.max_replicas, stable))
        reason = decision.reason + (f"; {cap_note}" if cap_note and capacity else "")
        if w.replicas > decision.replicas:
            reason += (
                f"; held at {w.replicas} by the {s.scale_in_stabilisation_s:.0f} s scale-in window"
            )
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
