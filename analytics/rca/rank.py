"""Rank root-cause candidates of a case (first version: metric deviation only)."""

from __future__ import annotations

import numpy as np

from analytics.rca.model import Candidate, Case, Evidence


def _deviation(before: np.ndarray, after: np.ndarray) -> float:
    """How far the values after the incident start lie from the normal ones (robust z)."""
    if len(before) < 3 or len(after) == 0:
        return 0.0
    median = float(np.median(before))
    q75, q25 = np.percentile(before, [75, 25])
    scale = float(q75 - q25) or float(np.std(before)) or 1e-9
    return float(np.max(np.abs(after - median)) / scale)


def rank(case: Case, at: float, top: int = 5) -> list[Candidate]:
    """The ``top`` most likely root causes of the problem that started at ``at`` (unix s)."""
    frame = case.metrics
    best: dict[str, tuple[float, str]] = {}
    for (service, metric), rows in frame.groupby(["service", "metric"], sort=False):
        times = rows["time"].to_numpy(float)
        values = rows["value"].to_numpy(float)
        score = _deviation(values[times < at], values[times >= at])
        if score > best.get(str(service), (-1.0, ""))[0]:
            best[str(service)] = (score, str(metric))
    ordered = sorted(best.items(), key=lambda kv: -kv[1][0])[:top]
    return [
        Candidate(
            service,
            score,
            evidence=[
                Evidence("metric", f"{metric} deviates {score:.1f}x its normal spread", score)
            ],
        )
        for service, (score, metric) in ordered
    ]
