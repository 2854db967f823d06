"""NAB scoring against the spec (/work/shared/data/nab/SCORING.md) and a brute-force oracle."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from analytics.evaluation import nab

STANDARD = nab.Profile("standard", tp=1.0, fp=0.11, fn=1.0)
PROFILES = {
    "standard": STANDARD,
    "reward_low_FP_rate": nab.Profile("reward_low_FP_rate", tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": nab.Profile("reward_low_FN_rate", tp=1.0, fp=0.11, fn=2.0),
}
REAL_NAB = nab.DEFAULT_NAB_DIR


def make_corpus(files: dict[str, tuple[int, list[tuple[int, int]]]]) -> nab.Corpus:
    """Synthetic files of n rows, 5 minutes apart, with the given windows (row indices)."""
    made = {}
    for key, (n, windows) in files.items():
        times = 1.4e9 + 300.0 * np.arange(n)
        raw = [str(t) for t in times]
        made[key] = nab.DataFile(key, raw, times, np.zeros(n), windows)
    return nab.Corpus(Path("synthetic"), made, PROFILES)


def fire_at(n: int, rows: list[int]) -> np.ndarray:
    scores = np.zeros(n)
    scores[rows] = 1.0
    return scores


# ---------------------------------------------------------------- §3, §4


def test_scaled_sigmoid_reference_values() -> None:
    ys = [-1.0, -0.5, 0.0, 1.0, 3.0, 3.0000001, 50.0]
    want = [0.98661429815, 0.84828363996, 0.0, -0.98661429815, -0.99999938820, -1.0, -1.0]
    assert nab.scaled_sigmoid(np.array(ys)) == pytest.approx(want, abs=1e-11)
    assert pytest.approx(0.98661429815, abs=1e-11) == nab.S_MAX


@pytest.mark.parametrize(("n", "p"), [(1000, 150), (4033, 604), (5000, 750), (22696, 750)])
def test_probationary_period(n: int, p: int) -> None:
    assert nab.probationary_period(n) == p


# ---------------------------------------------------------------- §8 worked example

EXAMPLE = {"example/one.csv": (1000, [(500, 599)])}


@pytest.mark.parametrize(
    ("row", "s"),
    [
        (500, 1.0),
        (550, 0.85979),
        (599, 0.02533),
        (600, -0.002777),
        (650, -0.094443),
        (700, -0.108668),
        (897, -0.11 * 0.99999938820),  # y = 3 exactly: still on the sigmoid
        (898, -0.11),
        (0, -0.11),  # before any window (in probation, but s_i is defined)
        (300, -0.11),
    ],
)
def test_worked_example_row_scores(row: int, s: float) -> None:
    unweighted, window = nab.unweighted_row_scores(1000, [(500, 599)])
    weight = STANDARD.tp if window[row] >= 0 else STANDARD.fp
    assert unweighted[row] * weight == pytest.approx(s, abs=5e-6)
    assert (window[row] == 0) == (500 <= row <= 599)


def standard_at(corpus: nab.Corpus, scores: dict[str, np.ndarray]) -> nab.ProfileResult:
    """The standard profile scored at threshold 1 (detections = rows scored 1)."""
    fixed = dict.fromkeys(PROFILES, 1.0)
    return nab.score_corpus(corpus, scores, thresholds=fixed)["standard"]


def test_worked_example_file_scores() -> None:
    corpus = make_corpus(EXAMPLE)
    key = "example/one.csv"
    three = standard_at(corpus, {key: fire_at(1000, [550, 560, 700])})
    assert three.raw_score == pytest.approx(0.85979 - 0.108668, abs=1e-5)
    assert three.raw_score == pytest.approx(0.75112, abs=1e-5)
    assert (three.tp_windows, three.fn_windows, three.fp_rows) == (1, 0, 1)
    assert standard_at(corpus, {key: np.zeros(1000)}).raw_score == -1.0
    only_300 = standard_at(corpus, {key: fire_at(1000, [300])})
    assert only_300.raw_score == pytest.approx(-1.11)
    # Row 100 is in the probationary period (P = 150): no FP.
    start_and_100 = standard_at(corpus, {key: fire_at(1000, [100, 500])})
    assert start_and_100.raw_score == 1.0
    assert start_and_100.fp_rows == 0
    assert start_and_100.score == 100.0


def test_normalisation_uses_windows_of_scored_files() -> None:
    corpus = make_corpus({"a/x.csv": (1000, [(500, 599)]), "a/y.csv": (1000, [])})
    result = nab.score_corpus(corpus, {k: np.full(1000, 0.5) for k in corpus.files})
    assert result["standard"].null_score == -1.0
    assert result["reward_low_FN_rate"].null_score == -2.0
    assert all(r.perfect_score == 1.0 for r in result.values())


# ---------------------------------------------------------------- §7, §8 detectors

SEVERAL = {
    "a/one.csv": (1000, [(500, 599)]),
    "a/two.csv": (2000, [(400, 450), (900, 1000), (1500, 1700)]),
    "b/none.csv": (800, []),
}


def test_ties_go_to_the_highest_threshold() -> None:
    corpus = make_corpus({"a/one.csv": (1000, [(500, 599)])})
    scores = np.zeros(1000)
    scores[500] = 0.9  # the window's first row: +1
    scores[550] = 0.8  # later in the same window: adds nothing, so 0.8 ties with 0.9
    scores[200] = 0.7  # an FP: worse
    candidates, raw = nab.sweep(corpus, {"a/one.csv": scores}, "standard")
    assert list(candidates) == [1.1, 0.9, 0.8, 0.7, 0.0]
    assert raw[1] == raw[2] == 1.0
    result = nab.score_corpus(corpus, {"a/one.csv": scores})
    assert result["standard"].threshold == 0.9
    assert result["standard"].score == 100.0


def test_window_start_detector_scores_100() -> None:
    corpus = make_corpus(SEVERAL)
    scores = {k: fire_at(n, [w[0] for w in ws]) for k, (n, ws) in SEVERAL.items()}
    for name, result in nab.score_corpus(corpus, scores).items():
        assert result.score == 100.0, name
        assert (result.tp_windows, result.fn_windows, result.fp_rows) == (4, 0, 0)


def test_never_firing_and_null_detectors_score_0() -> None:
    corpus = make_corpus(SEVERAL)
    for value in (0.0, 0.5):
        scores = {k: np.full(n, value) for k, (n, _) in SEVERAL.items()}
        for name, result in nab.score_corpus(corpus, scores).items():
            assert result.score == 0.0, (value, name)
            assert result.threshold == nab.NO_DETECTION_THRESHOLD
            assert result.raw_score == -PROFILES[name].fn * 4


def test_probationary_rows_are_never_scored() -> None:
    corpus = make_corpus(SEVERAL)
    scores = {
        k: fire_at(n, list(range(nab.probationary_period(n)))) for k, (n, _) in SEVERAL.items()
    }
    at_one = nab.score_corpus(corpus, scores, thresholds=dict.fromkeys(PROFILES, 1.0))
    assert all(r.fp_rows == 0 and r.score == 0.0 for r in at_one.values())
    candidates, _ = nab.sweep(corpus, scores, "standard")
    assert list(candidates) == [1.1, 0.0]  # the 1.0 rows are not in the pool at all


def test_points_lost_sum_to_the_deficit() -> None:
    corpus = make_corpus(SEVERAL)
    rng = np.random.default_rng(7)
    scores = {k: rng.random(n) for k, (n, _) in SEVERAL.items()}
    for result in nab.score_corpus(corpus, scores).values():
        lost = sum(result.points_lost(f) for f in result.files)
        assert lost == pytest.approx(100.0 - result.score)
        assert sum(f.raw_score for f in result.files) == pytest.approx(result.raw_score)


def test_bad_scores_are_refused_with_the_file_and_row() -> None:
    corpus = make_corpus(EXAMPLE)
    bad = np.zeros(1000)
    bad[321] = 1.5
    with pytest.raises(nab.NabInputError, match=r"example/one.csv.*row 321"):
        nab.score_corpus(corpus, {"example/one.csv": bad})
    with pytest.raises(nab.NabInputError, match="one per row"):
        nab.score_corpus(corpus, {"example/one.csv": np.zeros(999)})
    with pytest.raises(nab.NabInputError, match="no anomaly scores"):
        nab.score_corpus(corpus, {})


# ---------------------------------------------------------------- brute force oracle


def brute_row_scores(n: int, windows: list[tuple[int, int]], p: nab.Profile) -> list[float]:
    """§5 literally: walk the rows, tracking the current window and the last one left."""

    def sig(y: float) -> float:
        return -1.0 if y > 3 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0

    s_max = sig(-1.0)
    pending = list(windows)
    current: tuple[int, int] | None = None
    previous: tuple[int, int] | None = None
    out = []
    for i in range(n):
        if current is None and pending and i == pending[0][0]:
            current = pending.pop(0)
        if current is not None:
            lw, rw = current
            out.append(p.tp * sig(-(rw - i + 1) / (rw - lw + 1)) / s_max)
            if i == rw:
                previous, current = current, None
        elif previous is None:
            out.append(-p.fp)
        else:
            lp, rp = previous
            out.append(p.fp * sig((i - rp) / (rp - lp)))
    return out


def brute_raw(corpus: nab.Corpus, scores: dict[str, np.ndarray], p: nab.Profile, t: float) -> float:
    """§6 literally, summed over the files."""
    total = 0.0
    for key, data in corpus.files.items():
        s = brute_row_scores(len(data), data.windows, p)
        rows = range(data.probation, len(data))
        in_window = {i for lw, rw in data.windows for i in range(lw, rw + 1)}
        for lw, rw in data.windows:
            hits = [s[i] for i in rows if lw <= i <= rw and scores[key][i] >= t]
            total += max(hits) if hits else -p.fn
        total += sum(s[i] for i in rows if i not in in_window and scores[key][i] >= t)
    return total


def brute_sweep(corpus: nab.Corpus, scores: dict[str, np.ndarray], p: nab.Profile) -> list:
    pooled = {
        float(scores[k][i]) for k, d in corpus.files.items() for i in range(d.probation, len(d))
    }
    candidates = [1.1, *sorted(pooled, reverse=True)]
    return [(t, brute_raw(corpus, scores, p, t)) for t in candidates]


def random_case(rng: np.random.Generator) -> tuple[nab.Corpus, dict[str, np.ndarray]]:
    files = {}
    for f in range(int(rng.integers(1, 4))):
        n = int(rng.integers(8, 60))
        cuts = sorted(rng.choice(np.arange(1, n), size=min(n - 1, 6), replace=False).tolist())
        windows = [
            (a, b) for a, b in zip(cuts[::2], cuts[1::2], strict=False) if rng.random() < 0.7
        ]
        files[f"c/f{f}.csv"] = (n, windows)
    corpus = make_corpus(files)
    levels = int(rng.integers(2, 8))  # few distinct scores: many ties
    scores = {k: rng.integers(0, levels, n) / (levels - 1) for k, (n, _) in files.items()}
    return corpus, scores


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_sweep_matches_brute_force(seed: int) -> None:
    corpus, scores = random_case(np.random.default_rng(seed))
    results = nab.score_corpus(corpus, scores)
    for name, profile in PROFILES.items():
        want = brute_sweep(corpus, scores, profile)
        candidates, raw = nab.sweep(corpus, scores, name)
        assert list(candidates) == [t for t, _ in want]
        assert raw == pytest.approx([r for _, r in want], abs=1e-9)
        best = max(r for _, r in want)
        best_t = next(t for t, r in want if r >= best - 1e-12)  # highest among ties
        assert results[name].threshold == best_t
        assert results[name].raw_score == pytest.approx(best, abs=1e-9)


# ---------------------------------------------------------------- loading


def write_nab(root: Path, windows: dict[str, list[list[str]]]) -> None:
    (root / "data" / "cat").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "config").mkdir()
    stamps = [f"2014-04-01 00:{m:02d}:00" for m in range(10)]
    body = "timestamp,value\n" + "".join(f"{s},{i}.5\n" for i, s in enumerate(stamps))
    (root / "data" / "cat" / "f.csv").write_text(body)
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    profiles = {
        name: {"CostMatrix": {"tpWeight": p.tp, "fpWeight": p.fp, "fnWeight": p.fn, "tnWeight": 1}}
        for name, p in PROFILES.items()
    }
    (root / "config" / "profiles.json").write_text(json.dumps(profiles))


def test_load_corpus_maps_windows_to_rows(tmp_path: Path) -> None:
    write_nab(tmp_path, {"cat/f.csv": [["2014-04-01 00:03:00.000000", "2014-04-01 00:05:00"]]})
    corpus = nab.load_corpus(tmp_path)
    data = corpus.files["cat/f.csv"]
    assert data.windows == [(3, 5)]
    assert data.times[0] == 1396310400.0
    assert data.raw_timestamps[1] == "2014-04-01 00:01:00"
    assert data.values[2] == 2.5
    assert corpus.profiles == PROFILES


def test_load_corpus_refuses_a_window_off_the_rows(tmp_path: Path) -> None:
    write_nab(tmp_path, {"cat/f.csv": [["2014-04-01 00:03:30", "2014-04-01 00:05:00"]]})
    with pytest.raises(nab.NabInputError, match=r"cat/f.csv' window 0.*does not match"):
        nab.load_corpus(tmp_path)


@pytest.mark.skipif(not (REAL_NAB / "labels").is_dir(), reason="NAB data not present")
def test_real_subset_perfect_and_null() -> None:
    corpus = nab.load_corpus(REAL_NAB)
    starts = {k: fire_at(len(d), [w[0] for w in d.windows]) for k, d in corpus.files.items()}
    assert all(r.score == 100.0 for r in nab.score_corpus(corpus, starts).values())
    null = {k: np.full(len(d), 0.5) for k, d in corpus.files.items()}
    assert all(r.score == 0.0 for r in nab.score_corpus(corpus, null).values())
