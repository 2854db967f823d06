"""The HPA simulation against the documented Kubernetes algorithm, worked by hand."""

from __future__ import annotations

from analytics.forecast.hpa import Hpa, HpaConfig, Pods, Stabiliser, raw_recommendation


def test_replica_calculator_tolerance_and_scale_up() -> None:
    assert raw_recommendation(4, 4, 1.05, 0.1) == 4  # within the tolerance: unchanged
    assert raw_recommendation(4, 4, 0.95, 0.1) == 4
    assert raw_recommendation(4, 4, 1.2, 0.1) == 5  # ceil(4 x 1.2 = 4.8)
    assert raw_recommendation(4, 4, 0.5, 0.1) == 2


def test_starting_pods_count_as_idle_when_scaling_up() -> None:
    # 2 ready at ratio 1.5, 2 starting: recomputed ratio 1.5 x 2 / 4 = 0.75 < 1 -> no change
    assert raw_recommendation(4, 2, 1.5, 0.1) == 4
    # 2 ready at ratio 3, 2 starting: 3 x 2 / 4 = 1.5 -> ceil(1.5 x 4) = 6
    assert raw_recommendation(4, 2, 3.0, 0.1) == 6
    # no ready pod: no metrics, no change
    assert raw_recommendation(3, 0, 9.0, 0.1) == 3


def test_scale_down_waits_for_the_stabilisation_window() -> None:
    stab = Stabiliser(down_s=300)
    assert stab.apply(0, 6, 6) == 6
    assert stab.apply(15, 6, 2) == 6  # the 6 of t=0 is in the window
    assert stab.apply(299, 6, 2) == 6
    assert stab.apply(300, 6, 2) == 2  # t=0 has left (window is (now-300, now])


def test_scale_up_rate_limit_is_max_of_100_percent_and_4_pods() -> None:
    hpa = Hpa(HpaConfig())
    assert hpa.scale_up_limit(0, 1) == 5  # 1 + 4 beats 2 x 1
    assert hpa.scale_up_limit(0, 10) == 20  # 2 x 10 beats 10 + 4


def test_hand_worked_scale_up_start_up_and_stabilised_scale_down() -> None:
    cfg = HpaConfig(target_utilisation=0.5, startup_s=60, metrics_lag_s=0)
    hpa, pods, cap = Hpa(cfg), Pods([0.0, 0.0]), 10.0
    assert hpa.sync(0, pods, 10.0, cap) == 2  # usage 10/20 = 0.5 = target
    # rate 30: usage 1.5, ratio 3 -> ceil(3 x 2) = 6; limit max(4, 2 + 4) = 6
    assert hpa.sync(15, pods, 30.0, cap) == 6
    assert pods.ready(15) == 2 and pods.ready(75) == 6  # the 4 new pods: ready at 15 + 60
    # still starting: ratio 3 x 2 / 6 = 1.0 within tolerance -> unchanged
    assert hpa.sync(30, pods, 30.0, cap) == 6
    assert hpa.sync(90, pods, 30.0, cap) == 6  # all ready: 30 / 60 = 0.5 = target
    # demand drops to 10 at t=105: raw 2, held by the 6s recommended up to t=90
    assert hpa.sync(105, pods, 10.0, cap) == 6
    assert hpa.sync(375, pods, 10.0, cap) == 6  # 90 is still within (75, 375]
    assert hpa.sync(390, pods, 10.0, cap) == 2  # 90 left the window (90, 390]
    assert pods.total() == 2


def test_scale_in_removes_starting_pods_first() -> None:
    pods = Pods([0.0, 0.0])
    pods.scale_to(5, now=10, startup_s=60)
    pods.scale_to(3, now=20, startup_s=60)
    assert pods.ready_at == [0.0, 0.0, 70.0]
