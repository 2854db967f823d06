#!/usr/bin/env python3
"""Score an anomaly detector on NAB (Numenta Anomaly Benchmark) with NAB's own scoring.

Runs a detector over every data file of a NAB directory (or reads its per-file outputs)
and prints the three profile scores at the exhaustive-sweep threshold, the TP/FN/FP
counts, and the standard-profile points each file loses, worst first, so a detector
developer sees where the score goes. Scoring follows /work/shared/data/nab/SCORING.md
(``analytics.evaluation.nab``).

    .venv/bin/python benchmarks/nab_eval.py                           # keiko's offline detector
    .venv/bin/python benchmarks/nab_eval.py --detector windowed-gaussian
    .venv/bin/python benchmarks/nab_eval.py --results out/mydet       # score saved outputs
    .venv/bin/python benchmarks/nab_eval.py --detector random --write /tmp/rnd --json

Exit codes: 0 scored, 1 the detector failed or is missing, 2 bad input (files, arguments).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from analytics.evaluation import nab  # noqa: E402

DETECTORS = ("keiko", "windowed-gaussian", "null", "random")
FULL_CORPUS = "58 files, 116 windows, 365,558 rows"
# NAB README scoreboard (SCORING.md §9): standard, reward_low_FP_rate, reward_low_FN_rate.
PUBLISHED: list[tuple[str, tuple[float, float, float]]] = [
    ("Perfect", (100.0, 100.0, 100.0)),
    ("ARTime", (74.9, 65.1, 80.4)),
    ("Numenta HTM (NuPIC 1.0, best seed)", (70.5, 62.6, 75.2)),
    ("CAD OSE", (69.9, 67.0, 73.2)),
    ("earthgecko Skyline", (58.2, 46.2, 63.9)),
    ("KNN CAD", (58.0, 43.4, 64.8)),
    ("Relative Entropy", (54.6, 47.6, 58.8)),
    ("Random Cut Forest (AWS)", (51.7, 38.4, 59.7)),
    ("Twitter ADVec v1.0.0", (47.1, 33.6, 53.5)),
    ("Windowed Gaussian", (39.6, 20.9, 47.4)),
    ("Etsy Skyline", (35.7, 27.1, 44.5)),
    ("Bayesian Changepoint", (17.7, 3.2, 32.2)),
    ("EXPoSE", (16.4, 3.2, 26.9)),
    ("Random (mean over seeds)", (11.0, 1.2, 19.5)),
    ("Null", (0.0, 0.0, 0.0)),
]
SAME_DETECTOR = {
    "windowed-gaussian": "Windowed Gaussian",
    "random": "Random (mean over seeds)",
    "null": "Null",
}
PROFILE_ORDER = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


class DetectorMissing(RuntimeError):
    """The chosen detector cannot run here; the message says why and what to use instead."""


# ---------------------------------------------------------------------------- detectors


def windowed_gaussian(values: np.ndarray, window: int = 6400, step: int = 100) -> np.ndarray:
    """NAB's Windowed Gaussian baseline, vectorised.

    Each value is scored against the mean and population std of the window as it stood
    before the value arrived: while filling, every earlier value (up to ``window``); after
    that the window slides by ``step`` values at a time. The score is 1 - Q(|z|), Q the
    normal upper tail probability: 0.5 at the mean, towards 1 far from it; row 0 scores 0.
    A zero std is replaced by 1e-6, as NAB does.
    """
    n = len(values)
    mean = np.zeros(n)
    std = np.ones(n)
    fill = min(n, window + 1)  # rows 1..window see values[0:i]
    if fill > 1:
        # Centred on the first value so a constant series gives exactly zero variance.
        centred = values[: fill - 1] - values[0]
        count = np.arange(1, fill)
        m = np.cumsum(centred) / count
        var = np.maximum(np.cumsum(centred * centred) / count - m * m, 0.0)
        mean[1:fill] = values[0] + m
        std[1:fill] = np.sqrt(var)
    for start in range(window, n, step):
        # Rows start..start+step-1 see the window as it stood after (start - window) / step
        # slides of `step` values.
        shift = (start - window) // step * step
        past = values[shift : shift + window]
        mean[start : start + step] = past.mean()
        std[start : start + step] = past.std()
    std[std == 0.0] = 1e-6
    z = np.abs(values - mean) / std
    scores = 1.0 - 0.5 * _erfc(z / math.sqrt(2.0))
    scores[:1] = 0.0
    return np.clip(scores, 0.0, 1.0)


_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def run_keiko(files: list[nab.DataFile]) -> list[np.ndarray]:
    """keiko's offline detector (``analytics.anomaly.offline.detect_many``)."""
    try:
        from analytics.anomaly.offline import detect_many
    except ImportError as exc:
        raise DetectorMissing(
            f"the keiko detector needs analytics.anomaly.offline.detect_many, which cannot be "
            f"imported ({exc}); it is not written yet or is broken. Use --detector "
            "windowed-gaussian|null|random, or --results DIR with saved outputs"
        ) from None
    result: list[np.ndarray] = detect_many([(f.times, f.values) for f in files])
    return result


def run_detector(name: str, files: list[nab.DataFile], seed: int) -> list[np.ndarray]:
    """One score array per file, from the named detector."""
    if name == "keiko":
        return run_keiko(files)
    if name == "windowed-gaussian":
        return [windowed_gaussian(f.values) for f in files]
    if name == "null":
        return [np.full(len(f), 0.5) for f in files]
    return [np.random.default_rng([seed, i]).random(len(f)) for i, f in enumerate(files)]


# ---------------------------------------------------------------------------- outputs on disk


def find_result_file(results: Path, key: str) -> Path:
    """``<category>/<name>.csv``, or NAB's own ``<category>/<detector>_<name>.csv``."""
    plain = results / key
    if plain.is_file():
        return plain
    category, name = key.split("/", 1)
    nab_style = sorted((results / category).glob(f"*_{name}"))
    if len(nab_style) == 1:
        return nab_style[0]
    raise nab.NabInputError(
        f"{results}: no output for {key!r}; expected {plain} (or one <detector>_{name} "
        "in that folder, NAB's layout)"
    )


def read_results(results: Path, data: nab.DataFile) -> np.ndarray:
    """The anomaly_score column of one output file, checked row by row against the data."""
    path = find_result_file(results, data.key)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "anomaly_score" not in reader.fieldnames:
            raise nab.NabInputError(f"{path}: line 1: no 'anomaly_score' column in the header")
        scores = []
        for line, row in enumerate(reader, 2):
            stamp = row.get("timestamp")
            at = line - 2
            if stamp is not None and at < len(data) and stamp != data.raw_timestamps[at]:
                raise nab.NabInputError(
                    f"{path}: line {line}: timestamp {stamp!r} but the data file has "
                    f"{data.raw_timestamps[at]!r}; outputs must keep the data's rows in order"
                )
            try:
                scores.append(float(row["anomaly_score"]))
            except (TypeError, ValueError):
                raise nab.NabInputError(
                    f"{path}: line {line}: anomaly_score {row['anomaly_score']!r} is not a number"
                ) from None
    if len(scores) != len(data):
        raise nab.NabInputError(
            f"{path}: {len(scores)} rows but {data.key} has {len(data)}; need one per data row"
        )
    return np.array(scores)


def write_results(out: Path, data: nab.DataFile, scores: np.ndarray) -> None:
    """``<out>/<category>/<name>.csv`` with timestamp,value,anomaly_score."""
    path = out / data.key
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["timestamp", "value", "anomaly_score"])
        for stamp, value, score in zip(data.raw_timestamps, data.values, scores, strict=True):
            writer.writerow([stamp, repr(float(value)), repr(float(score))])


# ---------------------------------------------------------------------------- report


def published_for(detector: str, profile: str) -> str:
    label = SAME_DETECTOR.get(detector)
    for name, values in PUBLISHED:
        if name == label:
            return f"{values[PROFILE_ORDER.index(profile)]:.1f}"
    return "-"


def print_table(
    corpus: nab.Corpus, detector: str, results: dict[str, nab.ProfileResult], timing: str
) -> None:
    rows = sum(len(f) for f in corpus.files.values())
    print(
        f"NAB {corpus.root}: {len(corpus.files)} files, {corpus.window_count} windows, "
        f"{rows:,} rows; detector {detector}; {timing}"
    )
    print(
        f"NOTE: published scores are for the full corpus ({FULL_CORPUS}); if this is the "
        "27-file subset they are for orientation only, not comparable one to one."
    )
    print("Threshold: exhaustive sweep over all pooled rows (ties to the highest).\n")
    head = f"{'profile':<20} {'score':>7} {'threshold':>10} {'raw':>9} {'TP':>4} {'FN':>4} "
    print(head + f"{'FP rows':>8}  {'published':>9}")
    for name in _profiles(results):
        r = results[name]
        print(
            f"{name:<20} {r.score:7.2f} {r.threshold:10.8g} {r.raw_score:9.3f} "
            f"{r.tp_windows:4d} {r.fn_windows:4d} {r.fp_rows:8d}  "
            f"{published_for(detector, name):>9}"
        )
    std = results.get("standard") or results[_profiles(results)[0]]
    print(
        f"\nPer file, {std.profile} profile, worst first (lost = NAB points the file costs; "
        f"they sum to 100 - {std.score:.2f}):"
    )
    print(f"{'file':<58} {'win':>3} {'TP':>3} {'FN':>3} {'FP':>6} {'raw':>8} {'lost':>6}")
    for f in sorted(std.files, key=lambda f: -std.points_lost(f)):
        print(
            f"{f.key:<58} {f.windows:3d} {f.tp_windows:3d} {f.fn_windows:3d} {f.fp_rows:6d} "
            f"{f.raw_score:8.3f} {std.points_lost(f):6.2f}"
        )
    print(f"\nPublished NAB scoreboard ({FULL_CORPUS}), standard / low FP / low FN:")
    for label, (a, b, c) in PUBLISHED:
        print(f"  {label:<36} {a:6.1f} {b:6.1f} {c:6.1f}")


def _profiles(results: dict[str, nab.ProfileResult]) -> list[str]:
    known = [p for p in PROFILE_ORDER if p in results]
    return known + sorted(set(results) - set(known))


def as_json(
    corpus: nab.Corpus, detector: str, results: dict[str, nab.ProfileResult], wall: float | None
) -> dict[str, Any]:
    rows = sum(len(f) for f in corpus.files.values())
    return {
        "nab_dir": str(corpus.root),
        "detector": detector,
        "files": len(corpus.files),
        "windows": corpus.window_count,
        "rows": rows,
        "detector_wall_s": wall,
        "rows_per_s": rows / wall if wall else None,
        "threshold_method": "exhaustive sweep, ties to the highest threshold",
        "profiles": {
            name: {
                "score": r.score,
                "threshold": r.threshold,
                "raw_score": r.raw_score,
                "null_score": r.null_score,
                "perfect_score": r.perfect_score,
                "tp_windows": r.tp_windows,
                "fn_windows": r.fn_windows,
                "fp_rows": r.fp_rows,
                "published_full_corpus": published_for(detector, name),
                "files": [dict(vars(f), points_lost=r.points_lost(f)) for f in r.files],
            }
            for name, r in results.items()
        },
    }


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Scores are NAB scores: 0 = the null detector, 100 = one detection at the "
        "start of every window and nothing else. Exit codes: 0 ok, 1 detector missing or "
        "failed, 2 bad input.",
    )
    parser.add_argument(
        "--nab-dir",
        type=Path,
        default=nab.DEFAULT_NAB_DIR,
        help="NAB directory with data/, labels/combined_windows.json and "
        "config/profiles.json (default: %(default)s)",
    )
    parser.add_argument(
        "--detector",
        choices=DETECTORS,
        default="keiko",
        help="detector to run: keiko = analytics.anomaly.offline.detect_many; "
        "windowed-gaussian = NAB's baseline (window 6400, step 100); null = "
        "constant 0.5; random = uniform, seeded (default: %(default)s)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        metavar="DIR",
        help="score saved outputs instead of running a detector: "
        "DIR/<category>/<name>.csv with an anomaly_score column (NAB's "
        "<category>/<detector>_<name>.csv layout is also found)",
    )
    parser.add_argument(
        "--write",
        type=Path,
        metavar="DIR",
        help="write the detector's outputs to DIR/<category>/<name>.csv "
        "(timestamp,value,anomaly_score) for later --results runs",
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of --detector random")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser.parse_args(argv)


def get_scores(
    args: argparse.Namespace, files: list[nab.DataFile]
) -> tuple[str, list[np.ndarray], float | None]:
    """(label, per-file scores, detector wall seconds or None when read from disk)."""
    if args.results is not None:
        return f"results:{args.results}", [read_results(args.results, f) for f in files], None
    started = time.perf_counter()
    scores = run_detector(args.detector, files, args.seed)
    wall = time.perf_counter() - started
    if len(scores) != len(files):
        raise DetectorMissing(f"{args.detector}: {len(scores)} score arrays for {len(files)} files")
    return args.detector, [np.asarray(s, dtype=np.float64) for s in scores], wall


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        corpus = nab.load_corpus(args.nab_dir)
        files = list(corpus.files.values())
        label, scores, wall = get_scores(args, files)
        if args.write is not None:
            for data, s in zip(files, scores, strict=True):
                write_results(args.write, data, s)
        results = nab.score_corpus(corpus, {f.key: s for f, s in zip(files, scores, strict=True)})
    except nab.NabInputError as exc:
        print(f"nab_eval: {exc}", file=sys.stderr)
        return 2
    except DetectorMissing as exc:
        print(f"nab_eval: {exc}", file=sys.stderr)
        return 1
    _report(args, corpus, label, results, wall)
    return 0


def _report(
    args: argparse.Namespace,
    corpus: nab.Corpus,
    label: str,
    results: dict[str, nab.ProfileResult],
    wall: float | None,
) -> None:
    rows = sum(len(f) for f in corpus.files.values())
    if args.json:
        json.dump(as_json(corpus, label, results, wall), sys.stdout, indent=1)
        print()
        return
    timing = f"wall {wall:.3f} s, {rows / wall:,.0f} rows/s" if wall else "scores read from disk"
    print_table(corpus, label, results, timing)


if __name__ == "__main__":
    sys.exit(main())
