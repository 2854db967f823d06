"""The per-series detector, written once and vectorised over series.

Every series keeps a few dozen numbers (``FIELDS``) and a small time-of-day profile. One
call to :func:`step` scores one point of each of many series (each series at most once),
then learns from those points: score first, then learn.

What it looks for, each on a scale that means the same on every series so that one
threshold serves them all:

* **range novelty**: the value, or one of its exponential averages (a fast and a slow
  one), leaves the range it has recently lived in (a max and a min that follow new
  extremes at once and relax slowly towards the value, widened by a fraction of a step
  of the series' noise), by a fraction of that range. Level shifts, spikes beyond the
  usual peaks, drops to zero; the averages catch shifts and drifts that hide in the
  noise.
* **surprise**: the smallest normalised prediction error over three predictors (a fast
  and a slow exponentially weighted level, and a time-of-day profile), in log2 units. A
  point is surprising only if *every* predictor is surprised, so a daily pattern or a
  random walk is not flagged.
* **seasonal drift**: the short-term average of the time-of-day predictor's error, used
  only where that predictor is clearly better than the level (the series is seasonal).

**Weekly seasonality** is a day-of-week offset per UTC day (``WEEK_FIELDS``), learnt from
whole days' means against a slow deseasonalised base. Where it has predicted the change
from one day's mean to the next clearly better than "no change" for weeks, the slow level
(and so the time-of-day predictor built on it) is moved by the change of offset at each
midnight, so a quieter weekend is expected from its first point, and range novelty takes
the nearer of the value and the value less its day's offset (the range relaxes over the
weekdays; a usual weekend low must not look new every Saturday). The fast level is never
moved and the range is learnt from the values alone: the surprise is the smallest over
the predictors and the novelty the nearer of the two, so an offset that is wrong for part
of a day (a weekend that starts at local, not UTC, midnight) costs little.

The surprise features are calibrated by their own tail (peaks over threshold): each
tracks a high quantile ``q`` (exceeded by ``tail_p`` of the points) and the mean excess
``beta`` over it, and a value's *rarity* is ``(f - q) / beta``, the e-folds of tail
probability beyond ``q`` under an exponential tail; the tail follows the series, so a
bursty series needs a larger excursion. The largest of the range novelties and the
rarities less ``rarity_offset`` gives ``u``, and a logistic curve of ``u`` the anomaly
probability. A detection raises a hold that damps the points right after it, so that
one excursion is reported once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SECONDS_PER_DAY = 86400.0

# The features whose tails are tracked, in the order of their columns.
FEATURES = ("z", "z_season")
# The value and its exponential averages (Params.smooth_rates) each have a range.
RANGE_SCALES = 3
# One column per scalar of a series' state (float64).
FIELDS = (
    "n",  # points learnt
    "t",  # time of the last point
    "level_fast",
    "level_slow",
    "err_fast",  # mean absolute error of each predictor
    "err_slow",
    "err_season",
    "z_season_avg",  # short-term average of the seasonal predictor's error
    "seasonality",  # slow average of "the profile predicts better than the level"
    # The range the series lives in, and the ranges its smoothed values live in.
    *(f"{kind}{scale}" for scale in range(RANGE_SCALES) for kind in ("smooth", "max", "min")),
    "hold",  # points left in the hold after a detection
    "hold_u",  # the detection's u, fading: an alarm in the hold must beat it
    "onset",  # start time of the current excursion (NaN: none)
    # Per feature, its tail: a high quantile, the mean excess over it, and the mean
    # distance from it (the quantile's step size).
    *(f"{kind}_{feature}" for feature in FEATURES for kind in ("q", "beta", "dev")),
)
COL = {name: i for i, name in enumerate(FIELDS)}
DAYS_PER_WEEK = 7
# The weekly state, a float32 array of its own (so that checkpoints without it, written
# before it existed, still restore: all zeros is a fresh start).
WEEK_FIELDS = (
    *(f"week{day}" for day in range(DAYS_PER_WEEK)),  # offset of each day (0: Monday)
    "day_mean",  # running mean of the current UTC day's values
    "day_count",
    "prev_mean",  # the previous day's mean, valid if has_prev
    "has_prev",  # 1: the previous day was complete and just before the current one
    "week_base",  # slow level of the deseasonalised day means
    "err_week",  # mean error of the day-to-day change predicted by the offsets ...
    "err_flat",  # ... and of "no change"
    "days",  # day boundaries seen (the first day is partial and never learnt)
    "weekly",  # 1: the offsets are in use (decided at each day boundary)
)
WCOL = {name: i for i, name in enumerate(WEEK_FIELDS)}


@dataclass(frozen=True)
class Params:
    """The detector's constants (rates are per point; tuned on NAB, see benchmarks/nab_eval.py)."""

    warmup: int = 50  # points before any score above 0
    season_bins: int = 96  # time-of-day bins (15 min)
    level_fast: float = 0.625
    level_slow: float = 0.04
    error_rate: float = 0.05
    season_rate: float = 0.1
    season_bin_weight: float = 0.25  # per-bin error vs the series-wide error
    surprise_offset: float = 0.1  # log2(z + offset): z near 0 is not "very unsurprising"
    z_season_rate: float = 0.1
    seasonal_ratio: float = 0.5  # seasonal if its error < ratio x the slow level's error
    seasonal_min_points: int = 600
    seasonality_rate: float = 0.002  # rate of the slow "is it seasonal" average (~2 days)
    range_decay: float = 0.00006  # fraction of the range the max/min relax per point
    range_margin: float = 0.05  # novelty 1: this fraction of the range beyond it
    # The range is widened by this many of the value's typical steps (the fast level's
    # error; shrunk for the smoothed values), so a noisy series that wanders a step past
    # its old extremes is not news.
    range_noise: float = 0.15
    smooth_rate: float = 0.1  # the smoothed values' rates (scale 1 and 2)
    slow_smooth_rate: float = 0.03
    relative_floor: float = 1e-3  # scale floor relative to the level (flat series)
    quantum_deadband: float = 1.5  # quanta of a point's resolution that are no news
    tail_p: float = 0.02  # the tracked quantile: exceeded by this fraction of points
    tail_q_rate: float = 0.002  # the quantile's step, in mean distances from it
    tail_beta_rate: float = 0.02  # the mean excess's rate, per exceedance
    tail_dev_rate: float = 0.0005  # the mean distance's rate
    beta_floor: float = 0.05  # log2 units: a floor for the mean excess
    rarity_offset: float = 4.0  # e-folds beyond the quantile that make probability 1/2
    steepness: float = 2.0
    hold_points: int = 200
    # u at which the detector counts itself as alarmed and starts a hold (probability
    # 0.73 at steepness 2): the streaming threshold belongs at or a little above this
    # probability (the NAB-subset optimum is 0.79).
    hold_trigger: float = 0.5
    hold_penalty: float = 3.0  # u a point in the hold loses (the burst after a detection)
    hold_fade: float = 0.9  # per point, of the detection's u that a point in the hold must beat
    onset_z: float = 2.0  # a point this surprising starts an excursion
    expected_width: float = 3.0  # expected range: prediction +- width x its error
    week_rate: float = 0.3  # per day: rate of a day's offset (faster in the first weeks)
    week_base_rate: float = 0.2  # per day: rate of the deseasonalised base
    week_gate_rate: float = 0.05  # per day: rate of the day-to-day change errors
    weekly_ratio: float = 0.5  # weekly if its change error < ratio x "no change"'s
    weekly_min_days: int = 14


class States:
    """Every series' detector state; rows are series ids, grown on demand."""

    def __init__(self, params: Params, capacity: int = 1024) -> None:
        self.params = params
        self.scalars = np.zeros((0, len(FIELDS)))
        self.season = np.zeros((0, params.season_bins), np.float32)  # level offsets
        self.season_err = np.zeros((0, params.season_bins), np.float32)  # 0: bin unseen
        self.week = np.zeros((0, len(WEEK_FIELDS)), np.float32)
        self.grow(capacity)

    @property
    def capacity(self) -> int:
        """Series slots allocated."""
        return len(self.scalars)

    def grow(self, capacity: int) -> None:
        """Make room for series ids below ``capacity`` (new rows start fresh)."""
        old = self.capacity
        if capacity <= old:
            return
        bins = self.params.season_bins
        scalars = np.zeros((capacity, len(FIELDS)))
        scalars[:old] = self.scalars
        scalars[old:, COL["onset"]] = np.nan
        season = np.zeros((capacity, bins), np.float32)
        season[:old] = self.season
        season_err = np.zeros((capacity, bins), np.float32)
        season_err[:old] = self.season_err
        week = np.zeros((capacity, len(WEEK_FIELDS)), np.float32)
        week[:old] = self.week
        self.scalars, self.season, self.season_err = scalars, season, season_err
        self.week = week

    def reset(self, ids: np.ndarray) -> None:
        """Forget these series (their ids will be reused)."""
        ids = ids[ids < self.capacity]
        self.scalars[ids] = 0.0
        self.scalars[ids, COL["onset"]] = np.nan
        self.season[ids] = 0.0
        self.season_err[ids] = 0.0
        self.week[ids] = 0.0

    @property
    def bytes_per_series(self) -> int:
        """State memory per series slot."""
        profiles = 2 * self.season.itemsize * self.params.season_bins
        return int(
            self.scalars.itemsize * len(FIELDS)
            + profiles
            + self.week.nbytes // max(self.capacity, 1)
        )


@dataclass(frozen=True, slots=True)
class StepResult:
    """Per point of one step: probability, expected range, onset (NaN: none)."""

    probability: np.ndarray
    low: np.ndarray
    high: np.ndarray
    onset: np.ndarray


def step(
    states: States,
    ids: np.ndarray,
    t: np.ndarray,
    x: np.ndarray,
    resolution: np.ndarray | None = None,
) -> StepResult:
    """Score one point per series (``ids`` unique, values finite), then learn from them.

    ``resolution`` is each value's quantum (0, the default: continuous). A move of up to
    ``quantum_deadband`` quanta is neither surprising nor outside the range, and no error
    scale is below one quantum: a counter's rate moves by a whole count per interval
    whatever the traffic, so a regular request scraped out of phase reads 2, 0, 2 where it
    read 1, 1, 1 while the series was learnt. A lasting shift still moves the smoothed
    values out of their range."""
    p = states.params
    quantum = np.zeros(len(ids)) if resolution is None else resolution
    deadband = p.quantum_deadband * quantum
    st = states.scalars[ids]
    n = st[:, COL["n"]]
    first = n == 0
    _turn_days(p, st, states.week, ids, t, first)
    dow = ((np.floor(t / SECONDS_PER_DAY) + 3) % DAYS_PER_WEEK).astype(np.intp)
    week_offset = np.where(states.week[ids, WCOL["weekly"]] > 0, states.week[ids, dow], 0.0).astype(
        np.float64
    )
    for i in range(len(FIELDS)):
        if FIELDS[i].startswith(("level_", "smooth", "max", "min")):
            st[:, i] = np.where(first, x, st[:, i])
    level_fast, level_slow = st[:, COL["level_fast"]], st[:, COL["level_slow"]]
    relative_floor = p.relative_floor * np.abs(level_slow) + 1e-9
    floor = np.maximum(relative_floor, quantum)  # no error scale finer than the values

    bins = ((t % SECONDS_PER_DAY) * (p.season_bins / SECONDS_PER_DAY)).astype(np.intp)
    bins = np.clip(bins, 0, p.season_bins - 1)
    offset = states.season[ids, bins].astype(np.float64)
    bin_err = states.season_err[ids, bins].astype(np.float64)
    seen = bin_err > 0
    pred_season = level_slow + np.where(seen, offset, 0.0)
    err_fast, err_slow = st[:, COL["err_fast"]], st[:, COL["err_slow"]]
    err_season = st[:, COL["err_season"]]
    scale_season = np.where(
        seen, p.season_bin_weight * bin_err + (1 - p.season_bin_weight) * err_season, err_season
    )

    z_fast = _beyond(x - level_fast, deadband) / np.maximum(err_fast, floor)
    z_slow = _beyond(x - level_slow, deadband) / np.maximum(err_slow, floor)
    z_season = np.minimum(_beyond(x - pred_season, deadband) / np.maximum(scale_season, floor), 1e6)
    z = np.minimum(np.minimum(z_fast, z_slow), z_season)
    low, high = _expected_range(
        p,
        (z_fast, z_slow, z_season),
        level_fast,
        level_slow,
        pred_season,
        err_fast,
        err_slow,
        scale_season,
        relative_floor,
        deadband,
    )

    log_z = np.log2(z + p.surprise_offset)
    z_season_avg = st[:, COL["z_season_avg"]]
    z_season_avg = z_season_avg + (z_season - z_season_avg) * p.z_season_rate
    # Judged over days, not from the recent errors: an anomaly that breaks the daily
    # pattern must not switch off the feature that sees it.
    seasonality = st[:, COL["seasonality"]]
    better = err_season < p.seasonal_ratio * err_slow
    st[:, COL["seasonality"]] = seasonality + (better - seasonality) * p.seasonality_rate
    seasonal = (seasonality > 0.5) & (n > p.seasonal_min_points)
    novelty, smoothed = _range_novelty(p, st, x, floor, err_fast, week_offset, deadband)
    features = {
        "z": log_z,
        "z_season": np.log2(z_season_avg + p.surprise_offset),
    }
    rarity = {name: _rarity(p, st, name, value) for name, value in features.items()}
    rarity["z_season"] = np.where(seasonal, rarity["z_season"], -np.inf)
    u = np.maximum(novelty, np.max(np.stack(list(rarity.values())), axis=0) - p.rarity_offset)

    # In the hold, a point must beat both the penalty and the (fading) detection that
    # started it: the rest of a burst is not a new event.
    hold, hold_u = st[:, COL["hold"]], st[:, COL["hold_u"]]
    raw_u = u
    u = np.where(hold > 0, np.minimum(u - p.hold_penalty, u - hold_u), u)
    logit = np.clip(p.steepness * u, -50.0, 50.0)  # no overflow in exp
    probability = np.where(n < p.warmup, 0.0, 1.0 / (1.0 + np.exp(-logit)))
    onset = _track_onset(st, t, np.minimum(z_slow, z_season), p)

    # Learn.
    trigger = u >= p.hold_trigger
    st[:, COL["hold"]] = np.where(trigger, p.hold_points, np.maximum(hold - 1, 0))
    st[:, COL["hold_u"]] = np.where(trigger, raw_u, hold_u * p.hold_fade)
    for name, value in features.items():
        _learn_tail(p, st, n, name, value)
    for scale, value in enumerate(smoothed):
        _learn_range(p, st, scale, value, floor)
    rate = p.error_rate
    st[:, COL["err_fast"]] = np.where(
        first, 0.0, err_fast + (np.abs(x - level_fast) - err_fast) * rate
    )
    st[:, COL["err_slow"]] = np.where(
        first, 0.0, err_slow + (np.abs(x - level_slow) - err_slow) * rate
    )
    # An unseen bin costs the seasonal predictor like the slow level does, so a profile
    # that has not seen a day yet does not look better than it is.
    season_abs = np.abs(x - pred_season)
    st[:, COL["err_season"]] = np.where(
        first,
        0.0,
        err_season + (season_abs - err_season) * rate + np.where(seen, 0.0, season_abs * rate),
    )
    st[:, COL["level_fast"]] = level_fast + (x - level_fast) * p.level_fast
    st[:, COL["level_slow"]] = level_slow + (x - level_slow) * p.level_slow
    states.season[ids, bins] = np.where(
        seen, offset + (x - level_slow - offset) * p.season_rate, x - level_slow
    )
    states.season_err[ids, bins] = np.where(
        seen, bin_err + (season_abs - bin_err) * p.season_rate, np.maximum(err_season, floor)
    )
    st[:, COL["z_season_avg"]] = z_season_avg
    st[:, COL["n"]] = n + 1
    st[:, COL["t"]] = t
    count = states.week[ids, WCOL["day_count"]] + 1
    mean = states.week[ids, WCOL["day_mean"]]
    states.week[ids, WCOL["day_mean"]] = mean + (x - mean) / count
    states.week[ids, WCOL["day_count"]] = count
    states.scalars[ids] = st
    return StepResult(probability, low, high, onset)


def _turn_days(
    p: Params, st: np.ndarray, week: np.ndarray, ids: np.ndarray, t: np.ndarray, first: np.ndarray
) -> None:
    """At the first point of a new UTC day: learn the day that ended, and where the
    weekly offsets have earned it, move the slow level by the change of offset."""
    day = np.floor(t / SECONDS_PER_DAY)
    old = np.floor(st[:, COL["t"]] / SECONDS_PER_DAY)
    # Backward timestamps do not turn the day (the current day keeps accumulating).
    rows = np.flatnonzero((day > old) & ~first)
    if len(rows) == 0:
        return
    w = week[ids[rows]].astype(np.float64)
    new_dow = ((day[rows] + 3) % DAYS_PER_WEEK).astype(np.intp)  # 1970-01-01: Thursday
    old_dow = ((old[rows] + 3) % DAYS_PER_WEEK).astype(np.intp)
    prev_dow = (old_dow - 1) % DAYS_PER_WEEK
    at = np.arange(len(rows))
    offsets = w[:, :DAYS_PER_WEEK]
    days = w[:, WCOL["days"]]
    mean = w[:, WCOL["day_mean"]]
    whole = days >= 1  # the day began at a day boundary: its mean is a whole day's
    # Judge the offsets on the change they predicted, before they learn from it.
    judged = whole & (w[:, WCOL["has_prev"]] > 0) & (days > DAYS_PER_WEEK)
    change = mean - w[:, WCOL["prev_mean"]]
    predicted = offsets[at, old_dow] - offsets[at, prev_dow]
    for name, error in (("err_week", np.abs(change - predicted)), ("err_flat", np.abs(change))):
        w[:, WCOL[name]] = np.where(
            judged,
            w[:, WCOL[name]] + (error - w[:, WCOL[name]]) * p.week_gate_rate,
            w[:, WCOL[name]],
        )
    base = np.where(days == 1, mean, w[:, WCOL["week_base"]])
    rate = np.maximum(p.week_rate, 1.0 / (np.maximum(days - 1, 0) // DAYS_PER_WEEK + 1))
    learnt = offsets[at, old_dow] + (mean - base - offsets[at, old_dow]) * rate
    offsets[at, old_dow] = np.where(whole, learnt, offsets[at, old_dow])
    base = base + (mean - offsets[at, old_dow] - base) * p.week_base_rate
    w[:, WCOL["week_base"]] = np.where(whole, base, w[:, WCOL["week_base"]])
    weekly = (days >= p.weekly_min_days) & (
        w[:, WCOL["err_week"]] < p.weekly_ratio * w[:, WCOL["err_flat"]]
    )
    w[:, WCOL["weekly"]] = weekly
    shift = np.where(weekly, offsets[at, new_dow] - offsets[at, old_dow], 0.0)
    st[rows, COL["level_slow"]] += shift
    w[:, WCOL["prev_mean"]] = mean
    w[:, WCOL["has_prev"]] = whole & (day[rows] == old[rows] + 1)
    w[:, WCOL["day_mean"]] = 0.0
    w[:, WCOL["day_count"]] = 0.0
    w[:, WCOL["days"]] = days + 1
    week[ids[rows]] = w


def _range_novelty(
    p: Params,
    st: np.ndarray,
    x: np.ndarray,
    floor: np.ndarray,
    noise: np.ndarray,
    week_offset: np.ndarray,
    deadband: np.ndarray,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """How far the value, or a smoothed value, leaves its recent range (widened by
    ``range_noise`` x the noise at that scale, and at least by the quantum deadband at that
    scale), in units of ``range_margin`` x the range (the largest over scales); and the
    smoothed values. The noise of an exponential average of rate ``a`` is
    ``sqrt(a / (2 - a))`` of the value's.

    On a weekly series a value is also judged less its day's offset, and the nearer of
    the two counts: the range relaxes over the weekdays, so a usual weekend low would
    otherwise look new every Saturday."""
    novelty = np.full(len(x), -np.inf)
    smoothed = []
    for scale, rate in enumerate((1.0, p.smooth_rate, p.slow_smooth_rate)):
        value = st[:, COL[f"smooth{scale}"]]
        value = value + (x - value) * rate
        top, bottom = st[:, COL[f"max{scale}"]], st[:, COL[f"min{scale}"]]
        width = np.maximum(top - bottom, floor)
        damping = np.sqrt(rate / (2 - rate))
        slack = np.maximum(p.range_noise * noise * damping, deadband * damping)
        adjusted = value - week_offset
        outside = np.minimum(
            np.maximum(value - top, bottom - value), np.maximum(adjusted - top, bottom - adjusted)
        )
        outside = (outside - slack) / width
        novelty = np.maximum(novelty, outside / p.range_margin)
        smoothed.append(value)
    return novelty, smoothed


def _learn_range(
    p: Params, st: np.ndarray, scale: int, value: np.ndarray, floor: np.ndarray
) -> None:
    """The range follows new extremes at once and relaxes towards the value slowly."""
    top, bottom = COL[f"max{scale}"], COL[f"min{scale}"]
    high, low = st[:, top], st[:, bottom]
    relax = np.maximum(high - low, floor) * p.range_decay
    st[:, COL[f"smooth{scale}"]] = value
    st[:, top] = np.maximum(value, high - relax)
    st[:, bottom] = np.minimum(value, low + relax)


def _rarity(p: Params, st: np.ndarray, name: str, value: np.ndarray) -> np.ndarray:
    """How rare the value is for this series, in e-folds of tail probability beyond the
    tracked quantile (peaks over threshold with an exponential tail)."""
    beta = np.maximum(st[:, COL["beta_" + name]], p.beta_floor)
    return (value - st[:, COL["q_" + name]]) / beta


def _learn_tail(p: Params, st: np.ndarray, n: np.ndarray, name: str, value: np.ndarray) -> None:
    """Track the (1 - tail_p) quantile (a stochastic-approximation step scaled by the mean
    excess, so it works in any unit) and the mean excess over it."""
    q, beta, dev = (st[:, COL[kind + "_" + name]] for kind in ("q", "beta", "dev"))
    floor = p.beta_floor
    over = value > q
    # Early on, steps of 1/n: the estimates converge fast from a cold start.
    dev = dev + np.maximum(p.tail_dev_rate, 1.0 / (n + 1)) * (np.abs(value - q) - dev)
    scale = np.maximum(dev, floor)
    q_rate = np.maximum(p.tail_q_rate, p.tail_p / (n + 1))
    beta_rate = np.maximum(p.tail_beta_rate, 1.0 / (p.tail_p * n + 1))
    q_next = q + q_rate * scale * (over / p.tail_p - 1.0)
    beta = np.where(over, beta + beta_rate * (value - q - beta), beta)
    first = n == 0
    st[:, COL["dev_" + name]] = np.where(first, 10 * floor, dev)
    st[:, COL["q_" + name]] = np.where(first, value, q_next)
    st[:, COL["beta_" + name]] = np.where(first, 10 * floor, beta)


def _track_onset(st: np.ndarray, t: np.ndarray, z: np.ndarray, p: Params) -> np.ndarray:
    """When the current excursion began: the first point surprising to the predictors that
    do not chase the data (the slow level, the time-of-day profile), until one is not.

    The fast level adapts within a few points of a level shift, so its surprise would end
    the excursion while the series still sits at its new level."""
    onset = st[:, COL["onset"]]
    starting = np.isnan(onset) & (z >= p.onset_z)
    settled = z < 1.0
    onset = np.where(starting, t, np.where(settled, np.nan, onset))
    st[:, COL["onset"]] = onset
    return onset


def _expected_range(
    p: Params,
    zs: tuple[np.ndarray, np.ndarray, np.ndarray],
    level_fast: np.ndarray,
    level_slow: np.ndarray,
    pred_season: np.ndarray,
    err_fast: np.ndarray,
    err_slow: np.ndarray,
    scale_season: np.ndarray,
    floor: np.ndarray,
    deadband: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The range the best predictor for this point expected: prediction +- (width x error
    + the quantum deadband)."""
    best = np.argmin(np.stack(zs), axis=0)
    pred = np.choose(best, (level_fast, level_slow, pred_season))
    err = np.maximum(np.choose(best, (err_fast, err_slow, scale_season)), floor)
    half = p.expected_width * err + deadband
    return pred - half, pred + half


def _beyond(error: np.ndarray, deadband: np.ndarray) -> np.ndarray:
    """The size of a prediction error beyond the quantum deadband."""
    return np.maximum(np.abs(error) - deadband, 0.0)
