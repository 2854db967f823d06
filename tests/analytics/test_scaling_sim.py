"""Predictive scaling against the HPA on a synthetic daily ramp; the replay's accounting."""

from __future__ import annotations

import numpy as np

from analytics.forecast.hpa import HpaConfig, ramp_s
from analytics.forecast.sim import SimConfig, simulate


def daily_ramps(days: int, step: float) -> tuple[np.ndarray, np.ndarray]:
    """A steep daily rise from 50 to 1000 (and fall), 3% noise."""
    k = np.arange(int(days * 86400 / step))
    mean = 50 + 950 * ((1 + np.sin(2 * np.pi * k * step / 86400)) / 2) ** 4
    noise = 1 + 0.03 * np.random.default_rng(1).standard_normal(len(k))
    return 1_700_006_400 + k * step, mean * noise


def test_predictive_halves_under_provisioning_on_daily_ramps() -> None:
    times, values = daily_ramps(days=5, step=300.0)
    hpa = HpaConfig(target_utilisation=0.9, startup_s=120)
    result = simulate(times, values, SimConfig(capacity=100.0, hpa=hpa))
    assert result.hpa_under_min > 30  # the HPA lags every morning
    assert result.pred_under_min <= 0.5 * result.hpa_under_min
    # honest: on this series it buys that with a few percent more replica-hours
    assert result.pred_replica_h <= 1.1 * result.hpa_replica_h
    assert result.fallback_share < 0.05


def test_at_the_hpa_defaults_predictive_runs_hotter_on_daily_ramps() -> None:
    times, values = daily_ramps(days=5, step=300.0)
    result = simulate(times, values, SimConfig(capacity=100.0))
    # the HPA's 70% target absorbs these ramps; predictive plans for 87.5% of the forecast
    assert result.pred_under_min <= result.hpa_under_min
    assert result.pred_replica_h <= 0.9 * result.hpa_replica_h


def test_constant_demand_is_never_under_provisioned_and_trusted_runs_hotter() -> None:
    times = 1_700_000_000 + np.arange(240) * 60.0
    result = simulate(times, np.full(240, 350.0), SimConfig(capacity=100.0))
    # HPA: ceil(350 / (100 x 0.7)) = 5 pods for 4 h; predictive starts there and, once the
    # forecast is trusted (an hour of history, the advisor's default), runs ceil(350 / 90) = 4
    assert result.hpa_under_min == result.pred_under_min == 0
    assert result.hpa_replica_h == 5 * 4
    assert abs(result.pred_replica_h - (5 * 1 + 4 * 3)) < 0.1
    # churn: the HPA never changes, predictive scales in once (5 -> 4) and keeps it
    assert result.hpa_changes_per_h == 0 and result.pred_changes_per_h == 1 / 4
    assert result.hpa_reversals_per_h == result.pred_reversals_per_h == 0


def test_a_scale_in_wanted_back_within_five_minutes_is_a_reversal() -> None:
    # 1-min steps alternating 300 / 900 every 3 minutes: the HPA holds the high count
    # through its 300 s window, a controller with none releases and re-creates pods
    k = np.arange(240)
    values = np.where((k // 3) % 2 == 0, 300.0, 900.0)
    times = 1_700_000_000 + k * 60.0
    hpa = HpaConfig(scale_down_stabilisation_s=0.0)  # an HPA without its window
    churning = simulate(times, values, SimConfig(capacity=100.0, min_history_s=1e9, hpa=hpa))
    steady = simulate(times, values, SimConfig(capacity=100.0, min_history_s=1e9))
    assert churning.hpa_reversals_per_h >= 8  # every 6-min cycle, 10 per hour
    assert churning.hpa_changes_per_h >= 2 * churning.hpa_reversals_per_h
    assert steady.hpa_reversals_per_h == 0 and steady.hpa_changes_per_h < 1


def test_a_burst_the_forecast_missed_is_met_as_fast_as_the_hpa_meets_it() -> None:
    rng = np.random.default_rng(2)
    values = 300 + 10 * rng.standard_normal(600)
    values[400:] += 700  # no forecast sees this coming
    times = 1_700_000_000 + np.arange(600) * 60.0
    result = simulate(times, values, SimConfig(capacity=100.0))
    # trusted once an hour of steps is learnt (the hour's last one at its close)
    assert result.fallback_share < 0.11
    assert 0 < result.pred_under_min <= result.hpa_under_min <= 2.0
    assert result.pred_replica_h < result.hpa_replica_h


def test_under_provisioned_minutes_count_15_s_instants() -> None:
    # a jump from 100 to 1000 at t=60 min: the HPA sees it 30 s late, pods take 60 s
    times = 1_700_000_000 + np.arange(120) * 60.0
    values = np.where(np.arange(120) < 60, 100.0, 1000.0)
    result = simulate(times, values, SimConfig(capacity=100.0, min_history_s=1e9))
    # 2 pods serve 200 < 1000 from t=3600 until the new pods are ready (lag 30 s + 60 s)
    assert result.hpa_under_min >= 1.5
    assert result.hpa_under_min % 0.25 == 0
    assert result.fallback_share == 1.0  # never trusted: identical to the HPA
    assert result.pred_under_min == result.hpa_under_min
    assert result.pred_replica_h == result.hpa_replica_h


def test_ramp_is_the_time_the_hpa_scale_up_policies_take() -> None:
    hpa = HpaConfig()  # max(100%, 4 pods) per 15 s
    assert ramp_s(1, 5, hpa) == 0.0  # one scale-up: no wait after the first
    assert ramp_s(1, 12, hpa) == 30.0  # 1 -> 5 -> 10 -> 20
    assert ramp_s(12, 12, hpa) == 0.0
    assert ramp_s(1, 12, HpaConfig(scale_up_percent=0, scale_up_pods=0)) == float("inf")


def warned_bursts(episodes: int) -> tuple[np.ndarray, np.ndarray]:
    """5-min steps near 50; every 12th step a rise to 150 that the next step follows to 1200."""
    rng = np.random.default_rng(8)
    values = 50 + 3 * rng.standard_normal(12 * episodes + 24)
    values[24::12] = 150.0
    values[25::12] = 1200.0
    return 1_700_000_000 + np.arange(len(values)) * 300.0, values


def test_a_rise_that_past_surprises_announce_is_ready_in_time() -> None:
    # the step after a surprising rise has always gone to 1200 (12 pods): after a few such
    # episodes the plan asks for them early enough for the HPA's scale-up limit (1 -> 5 ->
    # 10 -> 20 takes 30 s) and the start-up, so they are ready when the burst comes
    # the announcing step is news before it ends: the plan is made from a nowcast that has
    # learnt it as far as seen (learnt only at its close, the burst would have begun)
    times, values = warned_bursts(episodes=40)
    result = simulate(times, values, SimConfig(capacity=100.0))
    late = simulate(times, values, SimConfig(capacity=100.0, nowcast=False))
    assert late.pred_under_min > 2 * result.pred_under_min
    assert result.hpa_under_min > 40 * 1.5  # each burst: metrics lag + start-up + ramp
    # (0.21 here; 0.27 when the plan ignores the ramp and orders one start-up ahead only)
    assert result.pred_under_min <= 0.22 * result.hpa_under_min
    assert result.pred_replica_h <= result.hpa_replica_h


def test_without_a_scale_up_policy_the_replay_still_ends() -> None:
    times, values = warned_bursts(episodes=3)
    hpa = HpaConfig(scale_up_percent=0, scale_up_pods=0)
    result = simulate(times, values, SimConfig(capacity=100.0, hpa=hpa))
    # neither controller can add a pod: both under-provisioned through every burst alike
    assert result.hpa_under_min == result.pred_under_min > 0


def test_a_record_burst_is_beyond_any_controller_its_repeat_is_not() -> None:
    # 100, a burst to 1000 for 10 min at t=60 min, back to 100, the same burst at t=100 min
    k = np.arange(160)
    values = np.where(((k >= 60) & (k < 70)) | ((k >= 100) & (k < 110)), 1000.0, 100.0)
    times = 1_700_000_000 + k * 60.0
    result = simulate(times, values, SimConfig(capacity=100.0, min_history_s=1e9))
    # the first burst is above anything seen: 2 pods (100 at 70%) until the lag + start-up
    # are over, whatever the controller; the repeat is not: the HPA misses it again (it
    # scaled in meanwhile), a controller holding for the largest demand seen would not
    first = 0.25 * 6  # 15 s instants from t=60 min until ready at 60 min + 30 s + 60 s
    assert result.hpa_unreachable_min == result.pred_unreachable_min == first
    # each burst costs the HPA those and the scale-up limit's ramp (2 -> 6 -> 12 pods)
    assert result.hpa_under_min >= 2 * first + 0.5
    assert result.best_possible_ratio == first / result.hpa_under_min < 0.5
    assert result.summary()["best_possible_ratio"] == result.best_possible_ratio


def test_the_opening_of_a_short_trace_can_bound_the_ratio_at_one() -> None:
    # the trace opens at 100 and rises to 600 half a minute in: the starting pods, sized
    # for the first step, miss the rise until pods ordered when it is seen are ready
    times = 1_700_000_000 + np.arange(120) * 10.0
    values = np.where(np.arange(120) < 3, 100.0, 600.0)
    result = simulate(times, values, SimConfig(capacity=100.0))
    assert result.hpa_under_min > 0
    assert result.hpa_unreachable_min == result.hpa_under_min
    assert result.best_possible_ratio == 1.0
    assert not result.target_met


def test_an_hpa_that_keeps_its_tolerance_ignores_small_advice() -> None:
    # a slow rise from 15 to 30 pods' worth: the advice grows a pod at a time, which an HPA
    # at its default 0.1 tolerance ignores until it is 10% off (KEDA's AverageValue metric)
    times = 1_700_000_000 + np.arange(900) * 60.0
    values = np.linspace(1500.0, 3000.0, 900)
    exact = simulate(times, values, SimConfig(capacity=100.0))
    tolerant = simulate(times, values, SimConfig(capacity=100.0, advice_tolerance=0.1))
    assert exact.fallback_share < 0.1
    assert tolerant.pred_changes_per_h < exact.pred_changes_per_h / 2
    assert tolerant.hpa_under_min == exact.hpa_under_min  # the HPA's own replay is untouched
