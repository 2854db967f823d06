#!/usr/bin/env python3
"""How much keiko's NAB score depends on the files and the threshold, and how often the
detector fires on pure noise (the figures next to the NAB score in the README).

1. Half split: the files alternate (by sorted name) into halves A and B; each half is
   scored at its own swept threshold and at the other half's.
2. Fixed thresholds: the whole set scored at given thresholds (the streaming default and
   higher ones) instead of the swept optimum.
3. Noise: 20,000 points each of white, exponential, random-walk and Poisson(3) noise at
   one point a minute; alarms (points at or above each threshold) per 10,000 points.

    .venv/bin/python benchmarks/detect_robustness.py [--nab-dir DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from analytics.anomaly.config import AnomalyConfig  # noqa: E402
from analytics.anomaly.offline import detect_many  # noqa: E402
from analytics.evaluation import nab  # noqa: E402

THRESHOLDS = (AnomalyConfig().threshold, 0.85, 0.9, 0.95, 0.99)


def standard(
    corpus: nab.Corpus, scores: dict[str, np.ndarray], at: float | None = None
) -> nab.ProfileResult:
    """The standard profile's result on ``corpus``, at the swept threshold or at ``at``."""
    fixed = None if at is None else dict.fromkeys(corpus.profiles, at)
    mine = {k: scores[k] for k in corpus.files}
    return nab.score_corpus(corpus, mine, fixed)["standard"]


def main() -> None:
    """Print the three reports."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nab-dir", default=str(nab.DEFAULT_NAB_DIR))
    args = parser.parse_args()
    corpus = nab.load_corpus(args.nab_dir)
    files = list(corpus.files.values())
    outputs = detect_many([(f.times, f.values) for f in files])
    scores = {f.key: s for f, s in zip(files, outputs, strict=True)}

    keys = sorted(corpus.files)
    halves = {"A": corpus.subset(keys[0::2]), "B": corpus.subset(keys[1::2])}
    own = {h: standard(c, scores).threshold for h, c in halves.items()}
    print("half split (standard profile):")
    for h, other in (("A", "B"), ("B", "A")):
        c = halves[h]
        print(
            f"  {h}: {standard(c, scores).score:6.2f} at its own threshold {own[h]:.3f}, "
            f"{standard(c, scores, own[other]).score:6.2f} at {other}'s {own[other]:.3f}"
        )
    print("whole set at fixed thresholds (standard profile):")
    for th in THRESHOLDS:
        r = standard(corpus, scores, th)
        print(f"  {th:.2f}: {r.score:6.2f} ({r.tp_windows} windows, {r.fp_rows} FP rows)")

    rng = np.random.default_rng(0)
    n = 20_000
    times = 1.7e9 + 60.0 * np.arange(n)
    noise = {
        "white": rng.normal(size=n),
        "exponential": rng.exponential(size=n),
        "random walk": np.cumsum(rng.normal(size=n)),
        "Poisson(3)": rng.poisson(3, size=n).astype(float),
    }
    flagged = detect_many([(times, v) for v in noise.values()])
    print(
        "alarms per 10,000 points of noise at " + " / ".join(f"{t:.2f}" for t in THRESHOLDS) + ":"
    )
    for name, probability in zip(noise, flagged, strict=True):
        rates = [1e4 * float(np.mean(probability[100:] >= t)) for t in THRESHOLDS]
        print(f"  {name:<12} " + " / ".join(f"{r:.1f}" for r in rates))


if __name__ == "__main__":
    main()
