"""Predictive sizing: trust on near-zero series, the predictive utilisation, the window."""

from __future__ import annotations

import math

import numpy as np

from analytics.forecast.config import ForecasterConfig, WorkloadScaling
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
    # ~460 at the 90% quantile: 6 pods at 90% where the 70% target would need 7
    assert decision.replicas == math.ceil(decision.peak.sized / 90.0) == 6
    untrusted = decide(forecaster, now, 7, 100.0, scaling, history_s=0.0)
    assert untrusted.mode == "reactive" and untrusted.replicas == 7


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
    # a burst to 450 the forecast (~100, 2 pods) did not see: 5 pods at 90% would do, but
    # while the forecast is behind, the rate seen gets the reactive 70% target: 7 pods
    decision = decide(forecaster, now, 7, 100.0, scaling, history_s=now, floor=5)
    assert decision.mode == "predictive"
    assert decision.replicas == 7 and "above the forecast" in decision.reason
    # within the forecast, the floor alone (at 90%) applies
    calm = decide(forecaster, now, 2, 100.0, scaling, history_s=now, floor=1)
    assert calm.replicas == 2 and "above the forecast" not in calm.reason
