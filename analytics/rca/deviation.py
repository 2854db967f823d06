"""How far each series moved, in its bad direction, after the problem started.

For each series the normal period (before ``at``) gives a median and a robust spread; the
deviation is the largest move after ``at`` in units of that spread. The spread has floors
(the normal range's reach, half the standard deviation, a hundredth of the level; a quarter
of the level for a histogram quantile) so that a series that was flat, quantised or spiky
does not turn noise into a huge score. The onset is the first point after ``at`` that
passes half the peak deviation (and at least 3): with ``at`` taken early, cause series
move before effect series.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analytics.rca.metricclass import MetricClass, Signal, classify

MIN_BEFORE = 3  # normal points needed to judge a series at all
ONSET_Z = 3.0
# A series that never moved before (a flat zero) has no spread to speak of: any move is
# "far outside anything seen", and beyond this many spreads the number means nothing.
Z_MAX = 1000.0
PERSIST_SHARE, PERSIST_MAX = 10, 3  # the move held by 1 in 10 points after, 3 at most
SMALL_COUNT = 1000  # whole numbers below this are counts; bytes and the like are not
DERIVED_PREFIX = "trace."  # the series RCA derives from spans: means and shares
# A histogram quantile as keiko's decoder names it (``...:p99``, then its labels in a case
# read from the store: ``...:p99{http.route=/cart}``) is interpolated inside
# its bucket; buckets are commonly 30-90% of their values wide, so one that read the same
# before (a bucket's midpoint, few observations per interval) is known to this share of
# its level, not to a hundredth of it.
QUANTILE_SUFFIX = re.compile(r":p\d+(\.\d+)?(\{|$)")
QUANTILE_STEP = 0.25
RECENT = 2  # points just before `at` that show whether a series had moved already
NORMAL_REACH = 0.99  # quantile of the normal period a move must pass to count fully


@dataclass(frozen=True, slots=True)
class Deviation:
    """One series' move after ``at``."""

    service: str
    metric: str
    instance: str
    cls: MetricClass
    z: float  # largest move in the bad direction, in robust spreads (>= 0)
    onset: float  # unix s of the first point past the onset level (nan: none)
    normal: float  # median before
    peak: float  # the value at the largest move

    @property
    def strength(self) -> float:
        """The deviation on a log scale, weighted by what the metric says about a cause."""
        return self.cls.weight * float(np.log1p(self.z))


def _spread(before: np.ndarray, median: float, direction: int, relative: float = 0.01) -> float:
    """The unit of a move: the normal spread, at least the normal range's reach.

    Besides the IQR it takes half the standard deviation and the distance from the median
    to the normal period's 1st/99th percentile on the bad side, so a series that was
    spiky before (sparse calls, bursts) needs a move past its old extremes to score.
    ``relative``: the floor as a share of the level."""
    q75, q25 = np.percentile(before, [75, 25])
    hi, lo = np.quantile(before, [NORMAL_REACH, 1 - NORMAL_REACH])
    reach = {1: hi - median, -1: median - lo}.get(direction, max(hi - median, median - lo))
    return max(
        float(q75 - q25), float(reach), 0.5 * float(np.std(before)), relative * abs(median), 1e-9
    )


def series_deviation(
    times: np.ndarray,
    values: np.ndarray,
    at: float,
    cls: MetricClass,
    counted: bool = True,
    metric: str = "",
) -> tuple[float, float, float, float] | None:
    """(z, onset, median before, peak value) of one series, or None without enough data.

    ``counted``: whether whole-number values may be a count (not for derived shares);
    ``metric`` names the series where its name says what resolution it has."""
    ok = np.isfinite(values)
    times, values = times[ok], values[ok]
    before, after = values[times < at], values[times >= at]
    if len(before) < MIN_BEFORE or len(after) == 0:
        return None
    # The last points before `at` are judged too: a series that had already moved there
    # (a shift between the normal period and the problem's, noise at the boundary) did
    # not move because of the problem, and its move after `at` counts that much less.
    if len(before) >= MIN_BEFORE + RECENT:
        before, recent = before[:-RECENT], before[-RECENT:]
    else:
        recent = before[:0]
    median = float(np.median(before))
    quantile = QUANTILE_SUFFIX.search(metric) is not None
    spread = _spread(before, median, cls.direction, QUANTILE_STEP if quantile else 0.01)
    if cls.signal == Signal.TRAFFIC or (counted and _counts(before, after)):
        # Counts are Poisson-like: a gauge of requests in flight that was 0 and reads 1 once,
        # or 0 -> 1 call, is noise, not a move of a thousand spreads.
        spread = max(spread, float(np.sqrt(abs(median))), 1.0 if median == 0 else 0.0)
    z = _bad_side((after - median) / spread, cls.direction)
    already = max(0.0, float(_bad_side((recent - median) / spread, cls.direction).max(initial=0)))
    z = np.minimum(z / (1.0 + already), Z_MAX)
    # A move is what the series holds for a few points, not its single highest sample.
    hold = int(np.clip(len(z) // PERSIST_SHARE, 1, PERSIST_MAX))
    k = int(np.argsort(z)[-hold])
    peak = float(z[k])
    if peak <= 0:
        return 0.0, float("nan"), median, float(after[k])
    passed = np.flatnonzero(z >= max(ONSET_Z, peak / 2))
    onset = float(times[times >= at][passed[0]]) if len(passed) else float("nan")
    return peak, onset, median, float(after[k])


def _counts(before: np.ndarray, after: np.ndarray) -> bool:
    """Small whole numbers throughout (requests in flight, queue length, restarts)."""
    both = np.abs(np.concatenate([before, after]))
    return bool(np.all(both == np.round(both)) and np.max(both) < SMALL_COUNT)


def _bad_side(z: np.ndarray, direction: int) -> np.ndarray:
    return z * direction if direction else np.abs(z)


def deviations(metrics: pd.DataFrame, at: float) -> list[Deviation]:
    """The deviation of every series (service, metric, instance) of a case's metrics."""
    if metrics.empty:
        return []
    frame = metrics.sort_values(["service", "metric", "instance", "time"], kind="stable")
    keys = frame[["service", "metric", "instance"]].to_numpy(object)
    times = frame["time"].to_numpy(np.float64)
    values = frame["value"].to_numpy(np.float64)
    change = np.ones(len(frame), bool)
    change[1:] = (keys[1:] != keys[:-1]).any(axis=1)
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(frame))
    out = []
    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True):
        service, metric, instance = (str(x) for x in keys[lo])
        cls = classify(metric)
        counted = not metric.startswith(DERIVED_PREFIX)
        got = series_deviation(times[lo:hi], values[lo:hi], at, cls, counted, metric)
        if got is not None:
            out.append(Deviation(service, metric, instance, cls, *got))
    return out
