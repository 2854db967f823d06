"""Predictive sizing: trust on near-zero series, the predictive utilisation, the window."""

from __future__ import annotations

import json
import math

import numpy as np

from analytics.forecast.config import ForecasterConfig, WorkloadScaling
from analytics.forecast.intervals import ResidualQuantiles
from analytics.forecast.policy import PeakForecaster, decide

STEP = 60.0


def learnt(values: np.ndarray, scaling: WorkloadScaling) -> PeakForecaster:
    forecaster = PeakForecaster(ForecasterConfig(step_s=STEP), scaling)
    for i, value in enumerate(values):
        forecaster.learn(i * STEP, float(value))
    return forecaster


def test_a_mostly_idle_series_is_trusted_relative_to_one_replica() -> None:
    # zero most of the time, small blips: relative to its ~0 peak any interval is "wide",
    # but in replicas it is narrow, so the forecast is trusted and asks for one replica
    rng = np.random.default_rng(3)
    values = np.where(rng.random(300) < 0.1, 2.0, 0.0)
    scaling = WorkloadScaling(capacity_per_replica=100.0)
    forecaster = learnt(values, scaling)
    now = 300 * STEP
    decision = decide(forecaster, now, 1, 100.0, scaling, history_s=now)
    assert decision.mode == "predictive", decision.reason
    assert decision.replicas == 1


def test_trusted_forecast_is_sized_at_the_predictive_utilisation() -> None:
    rng = np.random.default_rng(4)
    values = 450 + 5 * rng.standard_normal(300)
    scaling = WorkloadScaling(capacity_per_replica=100.0)
    forecaster = learnt(values, scaling)
    now = 300 * STEP
    decision = decide(forecaster, now, 7, 100.0, scaling, history_s=now, floor=0)
    assert decision.mode == "predictive", decision.reason
    # ~460 at the 90% quantile: 6 pods at 87.5% where the 70% target would need 7
    util = 100.0 * scaling.predictive_utilisation
    assert decision.replicas == math.ceil(decision.peak.sized / util) == 6
    untrusted = decide(forecaster, now, 7, 100.0, scaling, history_s=0.0)
    assert untrusted.mode == "reactive" and untrusted.replicas == 7


def test_the_peak_takes_part_of_a_rise_the_robust_model_still_discounts() -> None:
    rng = np.random.default_rng(6)
    calm = 100 + 2 * rng.standard_normal(300)
    rise = np.r_[calm, 200.0, 210.0, 205.0]  # fewer steps than the model's shift_after
    now = len(rise) * STEP
    peaks = {}
    for share in (0.0, 0.5, 1.0):
        forecaster = learnt(rise, WorkloadScaling(capacity_per_replica=100.0, persistence=share))
        peaks[share] = forecaster.peak(now, now + STEP, 0.9)
    model = peaks[0.0].point - forecaster.residuals.median()  # the raw model peak
    assert model < 150  # the robust model still clips the rise as a spike
    assert peaks[0.5].sized > peaks[0.0].sized
    assert peaks[1.0].sized >= 205.0 > peaks[0.5].sized
    # on a calm series the latest value is within the forecast's reach: it changes little
    flat = [
        learnt(calm, WorkloadScaling(capacity_per_replica=100.0, persistence=share))
        for share in (0.0, 0.5)
    ]
    at = len(calm) * STEP
    sized = [f.peak(at, at + STEP, 0.9).sized for f in flat]
    assert abs(sized[1] - sized[0]) < 5.0


def test_the_plan_covers_the_start_up_from_now() -> None:
    scaling = WorkloadScaling(capacity_per_replica=100.0, startup_s=120.0, horizon_s=60.0)
    forecaster = PeakForecaster(ForecasterConfig(step_s=STEP), scaling)
    # peaks of steps 1..3 ahead: a pod removed now is back only after the 120 s start-up
    assert (forecaster.first, forecaster.last) == (1, 3)


def test_a_rate_above_the_forecast_is_sized_at_the_reactive_target() -> None:
    rng = np.random.default_rng(5)
    scaling = WorkloadScaling(capacity_per_replica=100.0)
    forecaster = learnt(100 + 2 * rng.standard_normal(300), scaling)
    now = 300 * STEP
    # a burst to 450 the forecast (~100, 2 pods) did not see: 5 pods at 95% would do, but
    # while the forecast is behind, the rate seen gets the reactive 70% target: 7 pods
    decision = decide(forecaster, now, 7, 100.0, scaling, history_s=now, floor=5)
    assert decision.mode == "predictive"
    assert decision.replicas == 7 and "above the forecast" in decision.reason
    # within the forecast, the floor alone applies
    calm = decide(forecaster, now, 2, 100.0, scaling, history_s=now, floor=1)
    assert calm.replicas == 2 and "above the forecast" not in calm.reason


def test_the_peak_bound_is_the_conformal_rank_of_the_errors() -> None:
    # with n errors the 0.9 bound is the ceil(0.9 (n + 1))-th smallest: the largest of 9,
    # the 19th of 20 (the interpolated sample quantile, 18.1, would fall short)
    few = ResidualQuantiles(0.8, 64, min_residuals=9)
    for r in range(1, 10):
        few.push(float(r))
    assert few.ready and few.upper_offset(0.9) == 9.0
    many = ResidualQuantiles(0.8, 64, min_residuals=9)
    for r in range(1, 21):
        many.push(float(r))
    assert many.upper_offset(0.9) == 19.0 and many.median() == 10.5
    restored = ResidualQuantiles.from_state(many.to_state())
    assert restored.min_residuals == 9 and restored.upper_offset(0.9) == 19.0


def test_trusted_after_a_few_minutes_without_a_daily_profile() -> None:
    # 10-s steps: 9 scored peak errors (the conformal rank of the 0.9 quantile) and the
    # 5-min history are enough; no daily profile is needed for the plan
    rng = np.random.default_rng(6)
    step = 10.0
    scaling = WorkloadScaling(capacity_per_replica=100.0, min_history_s=300.0)
    forecaster = PeakForecaster(ForecasterConfig(step_s=step), scaling)
    n = 36  # six minutes
    for i in range(n):
        forecaster.learn(i * step, float(200 + 10 * rng.standard_normal()))
    decision = decide(forecaster, n * step, 4, 100.0, scaling, history_s=n * step)
    assert decision.mode == "predictive", decision.reason
    early = PeakForecaster(ForecasterConfig(step_s=step), scaling)
    for i in range(12):  # two minutes: too few scored peaks yet
        early.learn(i * step, 200.0)
    held = decide(early, 120.0, 4, 100.0, scaling, history_s=300.0)
    assert held.mode == "reactive" and "too few" in held.reason


def _bursts(build: bool) -> PeakForecaster:
    # calm ~10 with every 40th step a rise to 40: followed by 120 when bursts build over
    # two steps, back to 10 when they do not; learnt up to (and including) a rise
    rng = np.random.default_rng(7)
    values = 10 + rng.standard_normal(600)
    values[100::40] = 40.0
    if build:
        values[101::40] = 120.0
    return learnt(values[:581], WorkloadScaling(capacity_per_replica=10.0))


def test_after_a_surprising_rise_the_plan_sizes_for_what_followed_past_ones() -> None:
    scaling = WorkloadScaling(capacity_per_replica=10.0)
    now = 581 * STEP
    building = decide(_bursts(True), now, 1, 10.0, scaling, history_s=now, floor=0)
    assert building.peak.surprised and "surprising rise" in building.reason
    assert building.replicas >= math.ceil(120 / 9.0)  # the 120 that followed every rise
    # rises that die out at once leave the plan near the calm size (2 pods), plus what
    # persistence takes of the latest rise (half of 40 - 10) for the step after it
    fading = decide(_bursts(False), now, 1, 10.0, scaling, history_s=now, floor=0)
    assert fading.peak.surprised and fading.replicas <= 4
    # and a calm step of the building series keeps the calm class's narrow bound
    calm = learnt((10 + np.random.default_rng(7).standard_normal(600))[:579], scaling)
    steady = decide(calm, 579 * STEP, 1, 10.0, scaling, history_s=579 * STEP, floor=0)
    assert not steady.peak.surprised and steady.replicas <= 2


def test_the_surprise_classes_survive_a_checkpoint() -> None:
    forecaster = _bursts(True)
    scaling = WorkloadScaling(capacity_per_replica=10.0)
    twin = PeakForecaster(ForecasterConfig(step_s=STEP), scaling)
    twin.restore(json.loads(json.dumps(forecaster.to_state())))
    now = 581 * STEP
    a = forecaster.peak(now, now + 2 * STEP, 0.9)
    b = twin.peak(now, now + 2 * STEP, 0.9)
    assert a == b and a.surprised


def test_a_checkpoint_from_before_the_surprise_classes_restores() -> None:
    forecaster = _bursts(True)
    state = forecaster.to_state()
    for key in ("after_surprise", "made_surprised", "surprised", "latest"):
        del state[key]
    twin = PeakForecaster(ForecasterConfig(step_s=STEP), WorkloadScaling(capacity_per_replica=10.0))
    twin.restore(state)
    now = 581 * STEP
    # the calm class and the model come back; the surprise class starts empty, and the
    # latest value is unknown until the next step (the model's peak alone, never higher)
    peak = twin.peak(now, now + 2 * STEP, 0.9)
    assert not peak.surprised and peak.point <= forecaster.peak(now, now + 2 * STEP, 0.9).point
    assert math.isnan(twin.latest)


def test_a_clone_learns_without_touching_the_original() -> None:
    # the advisor's nowcast learns the step being filled on a clone: the forecaster itself
    # must come out unchanged, and the clone must learn as the original would
    rng = np.random.default_rng(9)
    values = 100 + 10 * np.sin(np.arange(2000) / 50) + rng.normal(0, 3, 2000)
    values[::97] += 80  # surprising rises, so both residual classes fill
    forecaster = learnt(values, WorkloadScaling(capacity_per_replica=10.0))
    before = json.dumps(forecaster.to_state())
    twin, reference = forecaster.clone(), learnt(values, WorkloadScaling(capacity_per_replica=10.0))
    for i in range(2000, 2200):
        value = float(100 + rng.normal(0, 3) + (200 if i % 50 == 0 else 0))
        twin.learn(i * STEP, value)
        reference.learn(i * STEP, value)
    assert json.dumps(forecaster.to_state()) == before  # JSON-able too
    assert json.dumps(twin.to_state()) == json.dumps(reference.to_state())
