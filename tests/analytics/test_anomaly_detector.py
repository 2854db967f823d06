"""The per-series anomaly detector's behaviour, through the DetectorBank that runs it."""

from __future__ import annotations

import io

import numpy as np

from analytics.anomaly.bank import DetectorBank
from analytics.anomaly.detector import Params
from analytics.anomaly.offline import detect_many, detect_values

STEP = 300.0  # five-minute points
DAY = 288  # points per day
# Close to the streaming default (the standard-profile NAB threshold, about 0.75).
ALARM = 0.7


def times(n: int, start: float = 1_600_000_000.0) -> np.ndarray:
    """Regular five-minute timestamps starting at midnight UTC."""
    start -= start % 86400.0
    return start + STEP * np.arange(n)


def noisy(n: int, seed: int = 0, level: float = 100.0, sd: float = 2.0) -> np.ndarray:
    return level + np.random.default_rng(seed).normal(0.0, sd, n)


def alarms(probability: np.ndarray) -> np.ndarray:
    return np.flatnonzero(probability >= ALARM)


def test_a_spike_in_a_noisy_series_scores_high_once() -> None:
    values = noisy(2000)
    values[1500] += 40.0  # 20 standard deviations
    probability = detect_values(times(2000), values)
    assert probability[1500] >= 0.99
    assert probability[1500] == probability.max()
    # One excursion, one alarm: the points after it are not flagged again.
    assert not np.any(probability[1501:1700] >= ALARM)
    # Plain noise is rarely flagged (well under 1% of its points).
    assert np.mean(probability >= ALARM) < 0.005


def test_a_level_shift_is_flagged_at_its_onset_and_not_long_after() -> None:
    values = noisy(3000, seed=1)
    values[2000:] += 30.0
    probability = detect_values(times(3000), values)
    assert probability[2000] >= 0.99
    # The excursion is reported at its start; while the new level is learnt, no more.
    found = alarms(probability[2000:2400]) + 2000
    assert np.all(found <= 2005)


def test_a_clean_daily_pattern_is_not_flagged_at_its_transitions_after_a_few_days() -> None:
    n = 12 * DAY
    t = times(n)
    hour = (t % 86400.0) / 3600.0
    busy = (hour >= 8) & (hour < 18)  # a square wave: sharp steps twice a day
    values = np.where(busy, 80.0, 20.0) + np.random.default_rng(2).normal(0.0, 1.0, n)
    probability = detect_values(t, values)
    assert not np.any(probability[4 * DAY :] >= ALARM)


def test_a_flat_series_then_a_change_is_flagged_at_the_change() -> None:
    values = np.full(1500, 5.0)
    values[1000:] = 6.0
    probability = detect_values(times(1500), values)
    assert np.all(probability[:1000] < ALARM)
    assert probability[1000] >= 0.9


def test_the_warm_up_scores_zero_and_every_probability_is_in_0_1() -> None:
    values = np.random.default_rng(3).standard_cauchy(3000) * 50.0  # wild, heavy tails
    probability = detect_values(times(3000), values)
    warmup = Params().warmup
    assert np.all(probability[:warmup] == 0.0)
    assert np.all((probability >= 0.0) & (probability <= 1.0))
    assert np.all(np.isfinite(probability))


def test_a_point_never_sees_the_future() -> None:
    values = noisy(1200, seed=4)
    changed = values.copy()
    changed[800:] = np.random.default_rng(5).normal(500.0, 80.0, 400)
    t = times(1200)
    before, after = detect_many([(t, values), (t, changed)])
    np.testing.assert_array_equal(before[:800], after[:800])
    assert not np.array_equal(before[800:], after[800:])


def test_several_points_of_a_series_in_one_batch_equal_one_at_a_time() -> None:
    rng = np.random.default_rng(6)
    n, count = 400, 3
    t = times(n)
    values = rng.normal(10.0, 1.0, (count, n))
    values[1, 300] += 25.0
    alone = DetectorBank(count)
    expected = np.stack(
        [
            alone.score_learn(np.arange(count), np.full(count, t[i]), values[:, i]).probability
            for i in range(n)
        ],
        axis=1,
    )
    batched = DetectorBank(count)
    got = np.zeros((count, n))
    for start in range(0, n, 50):  # 50 points of each series per batch, interleaved
        ids = np.repeat(np.arange(count)[None, :], 50, axis=0).ravel()
        rows = np.repeat(np.arange(start, start + 50), count)
        got[ids, rows] = batched.score_learn(ids, t[rows], values[ids, rows]).probability
    np.testing.assert_array_equal(got, expected)
    assert got[1, 300] >= 0.9


def test_a_snapshot_restored_mid_series_gives_identical_scores() -> None:
    t = times(1500)
    values = noisy(1500, seed=7)
    values[1200] += 30.0
    ids = np.zeros(1, np.int64)
    bank = DetectorBank(4)
    for i in range(700):
        bank.score_learn(ids, t[i : i + 1], values[i : i + 1])
    restored = DetectorBank.restore(bank.snapshot())
    rest = [slice(i, i + 1) for i in range(700, 1500)]
    first = np.concatenate([bank.score_learn(ids, t[s], values[s]).probability for s in rest])
    second = np.concatenate([restored.score_learn(ids, t[s], values[s]).probability for s in rest])
    np.testing.assert_array_equal(first, second)
    assert first[500] >= 0.9  # row 1200: the restored state still knows the series


def test_forget_resets_a_series_to_a_fresh_start() -> None:
    t = times(300)
    a = noisy(300, seed=8)
    b = noisy(300, seed=9, level=-40.0, sd=9.0)
    ids = np.zeros(1, np.int64)
    bank = DetectorBank(2)
    for i in range(300):
        bank.score_learn(ids, t[i : i + 1], a[i : i + 1])
    bank.forget(ids)
    assert bank.states.scalars[0, 0] == 0.0  # column 0 is the point count
    assert np.all(bank.states.week[0] == 0.0)
    reused = np.concatenate(
        [bank.score_learn(ids, t[i : i + 1], b[i : i + 1]).probability for i in range(300)]
    )
    np.testing.assert_array_equal(reused, detect_values(t, b))


def test_a_level_shift_is_dated_at_its_first_point() -> None:
    rng = np.random.default_rng(1)
    values = 50 + rng.normal(0, 2, 1400)
    values[900:] += 25
    times = 1_700_000_000 + 60.0 * np.arange(1400)
    bank = DetectorBank(1)
    flagged = []
    for i in range(1400):
        s = bank.score_learn(np.array([0]), times[i : i + 1], values[i : i + 1])
        if s.probability[0] >= 0.79 and i >= 890:  # (noise alone trips it now and then)
            flagged.append((i, s.onset[0]))
    first, onset = flagged[0]
    assert 900 <= first <= 903 and onset == times[900]


WEEK = 7 * DAY
NO_WEEKLY = Params(weekly_min_days=10**9)  # the weekly offsets never switch on


def weekly_series(weeks: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Five-minute points from a Monday midnight UTC: a daily cycle around 100 on
    weekdays and 50 at weekends, with noise; the times, values and weekend mask."""
    start = 1_600_000_000.0
    start -= (start - 4 * 86400.0) % (7 * 86400.0)  # 1970-01-05 was a Monday
    t = start + STEP * np.arange(weeks * WEEK)
    weekend = ((t // 86400.0) + 3) % 7 >= 5
    hour = (t % 86400.0) / 3600.0
    daily = 10.0 * np.sin(2 * np.pi * (hour - 9.0) / 24.0)
    noise = np.random.default_rng(seed).normal(0.0, 2.0, len(t))
    return t, np.where(weekend, 50.0, 100.0) + daily + noise, weekend


def test_a_quieter_weekend_is_expected_once_learnt_and_a_weekend_outage_is_still_flagged() -> None:
    t, values, weekend = weekly_series(6, seed=0)
    outage = 5 * WEEK + 6 * DAY + 14 * 12  # the last Sunday, 14:00, for two hours
    values[outage : outage + 24] -= 30.0
    saturdays = [week * WEEK + 5 * DAY for week in range(3, 6)]  # weekly is on by day 14
    without = detect_values(t, values, NO_WEEKLY)
    with_weekly = detect_values(t, values)
    # Without the weekly term every Saturday starts with a "level shift".
    assert all(without[day] >= ALARM for day in saturdays)
    # With it, no weekend point before the outage is flagged once the offsets are learnt.
    later = np.arange(len(values)) >= 3 * WEEK
    quiet = later & weekend & (np.arange(len(values)) < outage)
    assert not np.any(with_weekly[quiet] >= ALARM)
    assert with_weekly[outage : outage + 24].max() >= 0.99


def test_the_weekly_term_stays_off_on_a_series_without_a_weekly_pattern() -> None:
    n = 5 * WEEK
    t = times(n)
    hour = (t % 86400.0) / 3600.0
    rng = np.random.default_rng(11)
    # A daily cycle whose daily level wanders at random (no day of the week is special).
    level = np.repeat(rng.normal(100.0, 5.0, n // DAY), DAY)
    values = level + 10.0 * np.sin(2 * np.pi * hour / 24.0) + rng.normal(0.0, 2.0, n)
    np.testing.assert_array_equal(detect_values(t, values), detect_values(t, values, NO_WEEKLY))


def test_a_checkpoint_without_weekly_state_restores_with_it_at_zero() -> None:
    t, values, _ = weekly_series(3, seed=3)
    ids = np.zeros(1, np.int64)
    bank = DetectorBank(1)
    for i in range(len(values)):
        bank.score_learn(ids, t[i : i + 1], values[i : i + 1])
    assert np.any(bank.states.week[0] != 0.0)
    # A checkpoint written before the weekly state existed has no "week" array.
    with np.load(io.BytesIO(bank.snapshot())) as archive:
        arrays = {name: archive[name] for name in archive.files if name != "week"}
    old = io.BytesIO()
    np.savez(old, **arrays)
    restored = DetectorBank.restore(old.getvalue())
    np.testing.assert_array_equal(restored.states.scalars[0], bank.states.scalars[0])
    assert np.all(restored.states.week == 0.0)
    later = restored.score_learn(ids, t[-1:] + STEP, values[-1:])
    assert np.isfinite(later.probability).all()


def test_a_snapshot_keeps_the_weekly_state() -> None:
    t, values, _ = weekly_series(3, seed=4)
    ids = np.zeros(1, np.int64)
    bank = DetectorBank(1)
    for i in range(len(values)):
        bank.score_learn(ids, t[i : i + 1], values[i : i + 1])
    with np.load(io.BytesIO(bank.snapshot())) as archive:
        assert "week" in archive.files
    assert bank.states.week[0].any()  # it learnt something to keep
    restored = DetectorBank.restore(bank.snapshot())
    np.testing.assert_array_equal(restored.states.week[0], bank.states.week[0])


def test_the_state_per_series_stays_within_its_budget() -> None:
    bank = DetectorBank(8)
    assert bank.bytes_per_series <= 2048
    # The weekly state is a few dozen bytes on top of the profile.
    assert bank.states.week.nbytes // bank.states.capacity <= 64


def scored_counts(counts: np.ndarray, interval: float, quantum: bool) -> np.ndarray:
    """A counter's per-interval rate scored live: with its quantum (one count per interval,
    as the metrics decoder gives it) or without (as a CSV gives it)."""
    n = len(counts)
    resolution = np.full(n, 1.0 / interval) if quantum else None
    t = 1_700_000_000.0 + interval * np.arange(n)
    scores = DetectorBank().score_learn(np.zeros(n, np.int64), t, counts / interval, resolution)
    return scores.probability


def test_a_regular_counter_read_out_of_phase_is_no_news_but_a_change_of_two_counts_is() -> None:
    # Three requests per 15-s interval, learnt for two hours; then the scrape drifts into
    # the requests' phase and reads 4, 2, 3, 4, 2 ... (the same traffic)
    learnt = np.full(480, 3.0)
    jitter = 3.0 + np.tile([1.0, -1.0, 0.0, 1.0, -1.0, 0.0, 0.0, 0.0], 20)
    counts = np.r_[learnt, jitter]
    assert np.any(scored_counts(counts, 15.0, quantum=False)[480:] >= ALARM)  # the old way
    assert not np.any(scored_counts(counts, 15.0, quantum=True) >= ALARM)
    # two counts more or fewer, or none at all, is news at once; one count more for good
    # is below the resolution of a single point (a threshold rule watches such series)
    for level, found in ((5.0, True), (1.0, True), (0.0, True), (4.0, False)):
        after = np.full(40, level)
        probability = scored_counts(np.r_[counts, after], 15.0, quantum=True)[len(counts) :]
        assert bool(probability[0] >= ALARM) is found, (level, probability[:3])


def test_an_integer_gauge_moving_by_one_is_no_news_but_a_jump_is() -> None:
    bank = DetectorBank()
    n = 600
    values = np.zeros(n)
    values[[300, 420, 421, 500]] = 1.0  # requests in flight now and then
    values[560] = 6.0
    t = 1_700_000_000.0 + 15.0 * np.arange(n)
    probability = bank.score_learn(np.zeros(n, np.int64), t, values, np.ones(n)).probability
    assert not np.any(probability[:560] >= ALARM)
    assert probability[560] >= 0.99


def test_a_zero_quantum_scores_exactly_as_no_quantum() -> None:
    values = noisy(1500, seed=5)
    values[1000] += 30.0
    t = times(1500)
    ids = np.zeros(1500, np.int64)
    plain = DetectorBank().score_learn(ids, t, values)
    zeros = DetectorBank().score_learn(ids, t, values, np.zeros(1500))
    for field in ("probability", "expected_low", "expected_high", "onset"):
        np.testing.assert_array_equal(getattr(plain, field), getattr(zeros, field))
