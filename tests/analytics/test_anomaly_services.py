"""The per-service multivariate detector (river HalfSpaceTrees) and its calibration."""

from __future__ import annotations

import numpy as np

from analytics.anomaly.bank import DetectorBank
from analytics.anomaly.config import AnomalyConfig
from analytics.anomaly.services import ServiceModels, error_ratio
from analytics.series.workloads import Observation


def _observations(n: int, seed: int = 5, broken_from: int | None = None) -> list[Observation]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rate = 100 + rng.normal(0, 5)
        errors = rate * 0.01 * rng.random()
        latency = 0.050 + rng.normal(0, 0.003)
        if broken_from is not None and i >= broken_from:
            errors, latency = rate * 0.2, 0.090  # errors and latency up together, rate holds
        out.append(Observation("shop/checkout", 1_700_000_000 + 15.0 * i, rate, 2, latency, errors))
    return out


def test_a_joint_change_of_errors_and_latency_scores_high_once_calibrated() -> None:
    models = ServiceModels()
    bank = DetectorBank(1)
    probabilities = []
    for obs in _observations(1000, broken_from=900):
        for point in models.observe([obs]):  # nothing during the trees' first window
            scores = bank.score_learn(np.array([0]), np.array([point.time]), np.array([point.raw]))
            probabilities.append(float(scores.probability[0]))
    assert len(probabilities) == 1000 - 250
    before, after = np.array(probabilities[:650]), np.array(probabilities[650:660])
    threshold = AnomalyConfig().threshold
    assert after.max() >= threshold
    assert np.mean(before >= threshold) == 0  # the steady service is never flagged


def test_snapshot_restore_continues_the_same_model() -> None:
    a, b = ServiceModels(), ServiceModels()
    obs = _observations(300)
    a.observe(obs[:200])
    b.restore(a.snapshot())
    later = [p.raw for p in a.observe(obs[200:])]
    assert len(later) == 50 and later == [p.raw for p in b.observe(obs[200:])]


def test_services_beyond_the_cap_evict_the_least_recent() -> None:
    models = ServiceModels(max_services=2)
    for name in ("a", "b", "c"):
        models.observe([Observation(name, 0.0, 10.0, None, 0.1)])
    assert list(models.models) == ["b", "c"] and models.evicted == 1


def test_the_error_ratio_is_the_failing_share_of_requests_and_none_without_traffic() -> None:
    def obs(rate: float, errors: float) -> Observation:
        return Observation("shop/checkout", 1_700_000_000.0, rate, 1, None, errors)

    assert error_ratio(obs(4.0, 1.0)) == 0.25
    assert error_ratio(obs(4.0, 0.0)) == 0.0
    assert error_ratio(obs(0.0, 0.0)) is None  # no requests: nothing failed or succeeded
    # Series seen at different times can sum to more errors than requests for a moment.
    assert error_ratio(obs(2.0, 3.0)) == 1.0
