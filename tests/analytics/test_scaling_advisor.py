"""ScalingAdvisor: reactive fallback, predictive advice, scale-in window, checkpoints, export."""

from __future__ import annotations

import math

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from analytics.forecast.advisor import Advice, AdvisorCollector, ScalingAdvisor
from analytics.forecast.capacity import CapacityLearner
from analytics.forecast.config import AdvisorConfig, WorkloadScaling

STEP = 60.0


def advisor(**scaling: float) -> ScalingAdvisor:
    defaults = {"capacity_per_replica": 10.0, "min_history_s": 1800.0, **scaling}
    return ScalingAdvisor(
        AdvisorConfig(step_s=STEP, defaults=WorkloadScaling.model_validate(defaults))
    )


def feed(
    adv: ScalingAdvisor, rates: np.ndarray, start: float = 0.0, name: str = "api"
) -> list[Advice]:
    """Two observations per step (at +0 s and +30 s); the advice of every one."""
    out = []
    for i, rate in enumerate(rates):
        for offset in (0.0, 30.0):
            advice = adv.observe(name, start + i * STEP + offset, float(rate))
            if advice is not None:
                out.append(advice)
    return out


def test_too_little_history_falls_back_to_reactive_and_says_so() -> None:
    advices = feed(advisor(), np.full(10, 35.0))
    assert len(advices) == 20  # every observation is advised on
    first = advices[0]
    assert first.mode == "reactive"
    assert "history" in first.reason and "reactive" in first.reason
    assert first.replicas == math.ceil(35.0 / (10.0 * 0.7))  # 5: the rate at 70%


def test_reactive_advice_keeps_the_hpas_scale_in_window() -> None:
    # the HPA carrying the advice out is told to use no window: keiko keeps its 300 s
    adv = advisor()
    feed(adv, np.full(3, 70.0))
    low = feed(adv, np.full(10, 7.0), start=3 * STEP)
    assert low[0].replicas == 10 and "held at 10 by the 300 s" in low[0].reason
    assert low[-1].replicas == 1  # 300 s after the last high advice


def test_trusted_forecast_gives_predictive_advice_for_the_peak() -> None:
    rng = np.random.default_rng(0)
    rates = 40 + rng.normal(0, 1, 120)
    last = feed(advisor(), rates)[-1]
    assert last.mode == "predictive", last.reason
    assert "forecast peak" in last.reason
    assert last.lower <= last.forecast_peak <= last.upper
    assert abs(last.forecast_peak - 40) < 3
    # sized for the 90% quantile of the peak at the predictive utilisation, never below
    # the rate seen at the floor utilisation (10 per replica)
    s = WorkloadScaling()
    sized = float(last.reason.split("sized for ")[1].split()[0])
    plan = math.ceil(sized / (10.0 * s.predictive_utilisation) - 1e-9)
    floor = math.ceil(last.current_rate / (10.0 * s.floor_utilisation) - 1e-9)
    assert last.replicas == max(plan, floor)
    assert last.horizon_s == 60.0


def test_scale_in_waits_for_the_stabilisation_window() -> None:
    adv = advisor(min_history_s=0.0, scale_in_stabilisation_s=300.0)
    high = feed(adv, np.full(5, 70.0))
    assert high[-1].replicas == 10
    low = feed(adv, np.full(10, 7.0), start=5 * STEP)
    assert low[0].current_rate == 7.0  # the rate just seen
    assert low[2].replicas == 10 and "held" in low[2].reason
    assert low[-1].replicas < 10  # after 300 s the lower advice wins


def test_a_burst_is_met_at_the_observation_that_sees_it_not_at_the_steps_close() -> None:
    rng = np.random.default_rng(2)
    adv = advisor()
    calm = feed(adv, 40 + rng.normal(0, 1, 60))
    assert calm[-1].mode == "predictive" and calm[-1].replicas == 5
    burst = adv.observe("api", 60 * STEP, 140.0)
    assert burst is not None and burst.mode == "predictive"
    assert burst.replicas == math.ceil(140.0 / 7.0)  # at the reactive target, at once
    assert "above the forecast" in burst.reason


def test_pods_for_the_next_step_are_ordered_a_start_up_before_it() -> None:
    # 5-minute steps on a rising trend: the step being filled is served by the pods there,
    # sized for the rate seen, until the next, higher step starts within start-up + horizon
    # (60 s + 60 s) of the observation; from then on the advice is for its forecast peak
    step = 300.0
    scaling = WorkloadScaling(capacity_per_replica=1.0, min_history_s=0.0, max_replicas=1000)
    adv = ScalingAdvisor(AdvisorConfig(step_s=step, defaults=scaling))
    rates = 100 + 5.0 * np.arange(80)
    for i, rate in enumerate(rates[:78]):
        for k in range(20):
            adv.observe("w", i * step + 15.0 * k, float(rate))
    during = [adv.observe("w", 78 * step + 15.0 * k, float(rates[78])) for k in range(20)]
    assert all(a is not None and a.mode == "predictive" for a in during)
    replicas = [a.replicas for a in during if a is not None]
    reasons = [a.reason for a in during if a is not None]
    # the next step is in reach from 195 s on (195 + 120 > 300): its pods are ready by 255 s
    assert set(replicas[:13]) == {math.ceil(rates[78] / scaling.floor_utilisation)}
    assert all("no step still to come" in r for r in reasons[:13])
    assert min(replicas[13:]) > replicas[12] and "forecast peak" in reasons[13]


def test_snapshot_restore_round_trips() -> None:
    rng = np.random.default_rng(1)
    rates = 40 + rng.normal(0, 2, 150)
    a = advisor()
    feed(a, rates[:100])
    b = advisor()
    b.restore(a.snapshot())
    assert b.latest("api") == a.latest("api")
    rest_a = feed(a, rates[100:], start=100 * STEP)
    rest_b = feed(b, rates[100:], start=100 * STEP)
    assert rest_a == rest_b and rest_a[-1].mode == "predictive"
    assert len(a.snapshot()) < 60_000  # bounded per workload


def test_unknown_capacity_is_learnt_from_latency() -> None:
    adv = ScalingAdvisor(AdvisorConfig(step_s=STEP))
    advice = None
    for i in range(40):
        advice = adv.observe("w", i * STEP, 20.0, replicas=4, latency=0.1) or advice
    assert advice is not None and "capacity" in advice.reason
    learner = CapacityLearner()
    for per_replica in np.linspace(1, 20, 400):
        latency = 0.05 if per_replica < 12 else 0.05 * (per_replica - 10)
        learner.observe(per_replica * 3, 3, latency)
    estimate = learner.estimate()
    assert estimate is not None and estimate.saturated
    assert 10 <= estimate.value <= 14


def test_no_capacity_at_all_holds_replicas_and_says_how_to_fix() -> None:
    adv = ScalingAdvisor(AdvisorConfig(step_s=STEP))
    advice = None
    for i in range(3):
        advice = adv.observe("w", i * STEP, 20.0, replicas=3) or advice
    assert advice is not None and advice.replicas == 3 and advice.mode == "reactive"
    assert "capacity_per_replica" in advice.reason


def test_workloads_are_bounded_and_exported() -> None:
    adv = ScalingAdvisor(
        AdvisorConfig(
            step_s=STEP, max_workloads=2, defaults=WorkloadScaling(capacity_per_replica=5)
        )
    )
    for name in ("a", "b", "c"):
        adv.observe(name, 0.0, 10.0)
        adv.observe(name, STEP, 10.0)
    assert adv.workloads() == ["b", "c"] and adv.evicted == 1
    registry = CollectorRegistry()
    registry.register(AdvisorCollector(adv))
    text = generate_latest(registry).decode()
    assert 'keiko_scaling_desired_replicas{mode="reactive",workload="c"} 3.0' in text
