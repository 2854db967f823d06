"""NAB (Numenta Anomaly Benchmark) scoring, re-implemented from the NAB scoring spec.

The spec is ``/work/shared/data/nab/SCORING.md``; section numbers below refer to it.
``load_corpus`` reads a NAB directory (``data/``, ``labels/combined_windows.json``,
``config/profiles.json``); ``score_corpus`` scores one detector's per-row anomaly scores
for every profile: the per-row weighted scores (§5) of the scorable rows (§3), the
exhaustive threshold sweep over the pooled rows of all files with ties going to the
highest threshold (§6, §7), and the 0-100 normalisation (§8).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analytics.csvseries import is_number

DEFAULT_NAB_DIR = Path("/work/shared/data/nab")
NO_DETECTION_THRESHOLD = 1.1  # NAB's first sweep candidate: above every score, so no detections
_PROBATION_PERCENT = 0.15
_PROBATION_CAP = _PROBATION_PERCENT * 5000  # 750 rows


class NabInputError(ValueError):
    """A NAB file or a detector output that cannot be scored; the message names it and the fix."""


@dataclass(frozen=True)
class Profile:
    """One NAB cost matrix; the weights are positive magnitudes (§1)."""

    name: str
    tp: float
    fp: float
    fn: float


@dataclass(frozen=True)
class DataFile:
    """One NAB data file and its anomaly windows, as inclusive row-index pairs."""

    key: str  # "<category>/<name>.csv", the key of combined_windows.json
    raw_timestamps: list[str]
    times: np.ndarray  # float64 unix seconds
    values: np.ndarray  # float64
    windows: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.raw_timestamps)

    @property
    def probation(self) -> int:
        """Rows with an index below this are never scored (§3)."""
        return probationary_period(len(self))


@dataclass(frozen=True)
class Corpus:
    """The data files (in key order) and the scoring profiles of a NAB directory."""

    root: Path
    files: dict[str, DataFile]
    profiles: dict[str, Profile]

    @property
    def window_count(self) -> int:
        """All windows of all files: S_perfect / A_TP (§8)."""
        return sum(len(f.windows) for f in self.files.values())

    def subset(self, keys: list[str]) -> Corpus:
        """The same corpus restricted to ``keys`` (normalised over their windows only)."""
        missing = [k for k in keys if k not in self.files]
        if missing:
            raise NabInputError(f"{self.root}: no data file {missing[0]!r} in the corpus")
        return Corpus(self.root, {k: self.files[k] for k in keys}, self.profiles)


@dataclass(frozen=True)
class FileResult:
    """One file's score at the profile's chosen threshold."""

    key: str
    raw_score: float
    windows: int
    tp_windows: int
    fn_windows: int
    fp_rows: int
    best_possible: float  # A_TP x windows: what a perfect detector gets on this file


@dataclass(frozen=True)
class ProfileResult:
    """A detector's NAB result for one profile."""

    profile: str
    score: float  # normalised: 0 = null detector, 100 = perfect
    threshold: float
    raw_score: float
    null_score: float
    perfect_score: float
    tp_windows: int
    fn_windows: int
    fp_rows: int
    files: list[FileResult] = field(default_factory=list)

    def points_lost(self, file: FileResult) -> float:
        """The NAB points (0-100 scale) this file costs; they sum to 100 - score."""
        span = self.perfect_score - self.null_score
        return 100.0 * (file.best_possible - file.raw_score) / span if span else 0.0


# ---------------------------------------------------------------------------- loading


def probationary_period(n: int) -> int:
    """P = min(floor(0.15 n), 750) (§3)."""
    return int(min(math.floor(_PROBATION_PERCENT * n), _PROBATION_CAP))


def load_corpus(nab_dir: str | Path = DEFAULT_NAB_DIR) -> Corpus:
    """Read every data file named in ``labels/combined_windows.json`` and the profiles."""
    root = Path(nab_dir)
    labels = _read_json(root / "labels" / "combined_windows.json")
    if not isinstance(labels, dict):
        raise NabInputError(f"{root}/labels/combined_windows.json: expected an object of windows")
    files = {}
    for key in sorted(labels):
        files[key] = _load_file(root, key, labels[key])
    return Corpus(root, files, load_profiles(root / "config" / "profiles.json"))


def load_profiles(path: Path) -> dict[str, Profile]:
    """The cost matrices of ``config/profiles.json``."""
    raw = _read_json(path)
    profiles = {}
    try:
        for name, body in raw.items():
            matrix = body["CostMatrix"]
            profiles[name] = Profile(
                name,
                float(matrix["tpWeight"]),
                float(matrix["fpWeight"]),
                float(matrix["fnWeight"]),
            )
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise NabInputError(
            f"{path}: bad profile ({exc!r}); each profile needs "
            "CostMatrix.tpWeight/fpWeight/fnWeight numbers"
        ) from None
    return profiles


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            result = json.load(handle)
    except OSError as exc:
        raise NabInputError(
            f"{path}: cannot read: {exc.strerror or exc}; check --nab-dir"
        ) from None
    except json.JSONDecodeError as exc:
        raise NabInputError(f"{path}: line {exc.lineno}: invalid JSON: {exc.msg}") from None
    return result


def _load_file(root: Path, key: str, windows: object) -> DataFile:
    path = root / "data" / key
    raw, values = _read_data_csv(path)
    stamps = _parse_stamps(raw, str(path))
    index = {int(t): i for i, t in enumerate(stamps)}
    pairs: list[tuple[int, int]] = []
    if not isinstance(windows, list):
        raise NabInputError(f"combined_windows.json: {key!r}: expected a list of [start, end]")
    for pos, window in enumerate(windows):
        where = f"combined_windows.json: {key!r} window {pos}"
        if not (isinstance(window, list) and len(window) == 2):
            raise NabInputError(f"{where}: expected a [start, end] pair of timestamps")
        ends = _parse_stamps([str(w) for w in window], where)
        rows = [index.get(int(t)) for t in ends]
        if rows[0] is None or rows[1] is None:
            raise NabInputError(f"{where}: {window} does not match row timestamps of {path}")
        if rows[1] < rows[0] or (pairs and rows[0] <= pairs[-1][1]):
            raise NabInputError(f"{where}: windows must be ordered, non-empty and not overlap")
        pairs.append((rows[0], rows[1]))
    times = stamps.astype(np.float64) / 1e6
    return DataFile(key, raw, times, values, pairs)


def _read_data_csv(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        raise NabInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not rows or [c.strip() for c in rows[0][:2]] != ["timestamp", "value"]:
        raise NabInputError(f"{path}: line 1: expected the header 'timestamp,value'")
    raw = [r[0] for r in rows[1:]]
    try:
        values = np.array([float(r[1]) for r in rows[1:]], dtype=np.float64)
    except (IndexError, ValueError):
        bad = next(i for i, r in enumerate(rows[1:], 2) if len(r) < 2 or not is_number(r[1]))
        raise NabInputError(f"{path}: line {bad}: expected 'timestamp,number'") from None
    return raw, values


def _parse_stamps(raw: list[str], where: str) -> np.ndarray:
    """Microseconds since the epoch (int64): exact, so window ends match rows by equality."""
    try:
        return np.array(raw, dtype="datetime64[us]").astype(np.int64)
    except ValueError as exc:
        raise NabInputError(
            f"{where}: bad timestamp ({exc}); expected YYYY-MM-DD HH:MM:SS"
        ) from None


# ---------------------------------------------------------------------------- per-row scores


def scaled_sigmoid(y: np.ndarray | float) -> np.ndarray:
    """S(y) = 2 sigma(-5y) - 1 for y <= 3, else -1 (§4)."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(over="ignore"):
        s = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, s)


S_MAX = float(scaled_sigmoid(-1.0))


def unweighted_row_scores(n: int, windows: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Per row: S(y)/S_max inside a window or S(y) outside (§5), and the window index or -1.

    Multiply by A_TP inside windows and by A_FP outside to get a profile's s_i.
    """
    rows = np.arange(n)
    if not windows:
        return np.full(n, -1.0), np.full(n, -1, dtype=np.int64)
    starts = np.array([w[0] for w in windows], dtype=np.int64)
    ends = np.array([w[1] for w in windows], dtype=np.int64)
    # The last window starting at or before the row: the row is in it, or it is the
    # most recent window that ended before the row (windows are ordered and disjoint).
    last = np.searchsorted(starts, rows, side="right") - 1
    has = last >= 0
    right = ends[np.maximum(last, 0)]
    width = right - starts[np.maximum(last, 0)] + 1
    inside = has & (rows <= right)
    y_in = -(right - rows + 1) / width
    # A one-row window would divide by zero (NAB itself fails there): every later row is
    # then taken as far past it, S = -1.
    y_out = (rows - right) / np.maximum(width - 1, 1)
    y_out[width == 1] = np.inf
    outside = np.where(has, scaled_sigmoid(y_out), -1.0)
    score = np.where(inside, scaled_sigmoid(y_in) / S_MAX, outside)
    return score, np.where(inside, last, -1)


# ---------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class _Pool:
    """The scorable rows of every file, sorted by anomaly score descending (stable)."""

    anomaly: np.ndarray  # sorted scores
    unweighted: np.ndarray  # S(y)/S_max in windows, S(y) outside
    window: np.ndarray  # global window id or -1
    file: np.ndarray  # file position in the corpus
    origin: np.ndarray  # position before sorting (files in order, rows in order)
    windows: int  # total windows (including any with no scorable rows)


def score_corpus(
    corpus: Corpus,
    scores: Mapping[str, np.ndarray],
    thresholds: Mapping[str, float] | None = None,
) -> dict[str, ProfileResult]:
    """Score a detector on every file of ``corpus`` for every profile.

    ``scores`` maps each file key to one anomaly score in [0, 1] per row. The threshold
    is the exhaustive-sweep optimum (§7) unless ``thresholds`` gives one per profile
    (e.g. NAB's stored ``config/thresholds.json``, to reproduce the scoreboard).
    """
    pool = _pool(corpus, scores)
    results = {}
    for name, profile in corpus.profiles.items():
        weighted = _weighted(pool, profile)
        if thresholds is not None and name in thresholds:
            threshold = float(thresholds[name])
        else:
            threshold = _sweep(pool, weighted, profile)[0]
        results[name] = _result_at(corpus, pool, weighted, profile, threshold)
    return results


def sweep(
    corpus: Corpus, scores: Mapping[str, np.ndarray], profile: str
) -> tuple[np.ndarray, np.ndarray]:
    """Every candidate threshold (descending, 1.1 first) and the corpus raw score at it (§7)."""
    pool = _pool(corpus, scores)
    prof = corpus.profiles[profile]
    _, candidates, raw = _sweep(pool, _weighted(pool, prof), prof)
    return candidates, raw


def _pool(corpus: Corpus, scores: Mapping[str, np.ndarray]) -> _Pool:
    unknown = sorted(set(scores) - set(corpus.files))
    if unknown:
        raise NabInputError(f"scores for {unknown[0]!r}, which is not a file of the corpus")
    if not corpus.files:
        raise NabInputError(f"{corpus.root}: the corpus has no data files to score")
    parts: list[tuple[np.ndarray, ...]] = []
    window_base = 0
    for pos, (key, data) in enumerate(corpus.files.items()):
        if key not in scores:
            raise NabInputError(f"no anomaly scores for {key!r}; every corpus file needs scores")
        anomaly = np.asarray(scores[key], dtype=np.float64)
        _check_scores(key, anomaly, len(data))
        unweighted, window = unweighted_row_scores(len(data), data.windows)
        keep = slice(data.probation, None)
        window = np.where(window >= 0, window + window_base, -1)
        file_ids = np.full(len(data), pos, dtype=np.int64)
        parts.append((anomaly[keep], unweighted[keep], window[keep], file_ids[keep]))
        window_base += len(data.windows)
    anomaly, unweighted, window, file_ids = (np.concatenate(c) for c in zip(*parts, strict=True))
    # Stable, so equal scores keep row order (they switch on together anyway).
    order = np.argsort(-anomaly, kind="stable")
    return _Pool(
        anomaly[order], unweighted[order], window[order], file_ids[order], order, window_base
    )


def _check_scores(key: str, anomaly: np.ndarray, n: int) -> None:
    if anomaly.shape != (n,):
        raise NabInputError(
            f"{key!r}: {anomaly.shape} anomaly scores for {n} rows; need one per row"
        )
    bad = np.flatnonzero(~((anomaly >= 0.0) & (anomaly <= 1.0)))
    if len(bad):
        raise NabInputError(
            f"{key!r}: row {bad[0]} (0-based): anomaly score {float(anomaly[bad[0]])!r} "
            "is not in [0, 1]; detectors must output scores in [0, 1]"
        )


def _weighted(pool: _Pool, profile: Profile) -> np.ndarray:
    return pool.unweighted * np.where(pool.window >= 0, profile.tp, profile.fp)


def _sweep(
    pool: _Pool, weighted: np.ndarray, profile: Profile
) -> tuple[float, np.ndarray, np.ndarray]:
    """The best threshold (ties to the highest), all candidates and their corpus raw scores."""
    none = -profile.fn * pool.windows
    outside = np.where(pool.window < 0, weighted, 0.0)
    gain = outside + _window_gains(pool, weighted, profile)
    if not len(gain):
        return NO_DETECTION_THRESHOLD, np.array([NO_DETECTION_THRESHOLD]), np.array([none])
    # The last row of each run of equal scores: the state once that threshold is applied.
    group_end = np.flatnonzero(np.append(pool.anomaly[1:] != pool.anomaly[:-1], True))
    raw = np.concatenate([[none], none + np.cumsum(gain)[group_end]])
    candidates = np.concatenate([[NO_DETECTION_THRESHOLD], pool.anomaly[group_end]])
    best = int(np.argmax(raw))  # first maximum = highest threshold
    return float(candidates[best]), candidates, raw


def _window_gains(pool: _Pool, weighted: np.ndarray, profile: Profile) -> np.ndarray:
    """Per sorted row, how much the window part of the score rises when the row switches on.

    A window is worth its best detection's s_i, i.e. its earliest detected row's (s_i falls
    within a window), or -A_FN. Walking rows by falling anomaly score, the window's value
    rises each time a row earlier than all its detected rows so far switches on. The
    running minimum of the row position per window, taken over the pool ordered by
    (window descending, sorted position), finds those rows: positions of a later group
    are all smaller than those of the groups before it, so one global
    ``minimum.accumulate`` never carries across windows.
    """
    gains = np.zeros(len(weighted))
    in_window = np.flatnonzero(pool.window >= 0)
    if not len(in_window):
        return gains
    # Before sorting, a window's rows are contiguous, in row order, and windows are in id
    # order; so the smallest origin among a window's detected rows is its earliest one.
    order = in_window[np.lexsort((in_window, -pool.window[in_window]))]
    earliest = np.minimum.accumulate(pool.origin[order])
    best = weighted[_inverse(pool.origin)[earliest]]
    first = np.append(True, pool.window[order][1:] != pool.window[order][:-1])
    before = np.where(first, -profile.fn, np.append(0.0, best[:-1]))
    gains[order] = best - before
    return gains


def _inverse(origin: np.ndarray) -> np.ndarray:
    inverse = np.empty_like(origin)
    inverse[origin] = np.arange(len(origin))
    return inverse


def _result_at(
    corpus: Corpus, pool: _Pool, weighted: np.ndarray, profile: Profile, threshold: float
) -> ProfileResult:
    detected = pool.anomaly >= threshold
    files = []
    window_base = 0
    for pos, (key, data) in enumerate(corpus.files.items()):
        mine = pool.file == pos
        hit = detected & mine
        fp = hit & (pool.window < 0)
        raw = float(weighted[fp].sum())
        tp = 0
        for w in range(window_base, window_base + len(data.windows)):
            rows = hit & (pool.window == w)
            if rows.any():
                tp += 1
                raw += float(weighted[rows].max())
            else:
                raw -= profile.fn
        k = len(data.windows)
        files.append(FileResult(key, raw, k, tp, k - tp, int(fp.sum()), profile.tp * k))
        window_base += k
    total = sum(f.raw_score for f in files)
    null = -profile.fn * pool.windows
    perfect = profile.tp * pool.windows
    span = perfect - null
    return ProfileResult(
        profile=profile.name,
        score=100.0 * (total - null) / span if span else 0.0,
        threshold=threshold,
        raw_score=total,
        null_score=null,
        perfect_score=perfect,
        tp_windows=sum(f.tp_windows for f in files),
        fn_windows=sum(f.fn_windows for f in files),
        fp_rows=sum(f.fp_rows for f in files),
        files=files,
    )
