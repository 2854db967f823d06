"""The streaming detectors, run offline over whole series (backtesting and evaluation).

Each row is scored from itself and the rows before it only, exactly as the streaming
path would have scored it: the series are stepped through time together, one row of
each per step, through the same :class:`DetectorBank`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from analytics.anomaly.bank import DetectorBank
from analytics.anomaly.detector import Params


def detect_many(
    series: Sequence[tuple[np.ndarray, np.ndarray]], params: Params | None = None
) -> list[np.ndarray]:
    """Anomaly probabilities in [0, 1], one per row, for each ``(times, values)`` series."""
    count = len(series)
    if count == 0:
        return []
    length = max(len(values) for _, values in series)
    times = np.full((count, length), np.nan)
    values = np.full((count, length), np.nan)
    present = np.zeros((count, length), bool)
    for i, (t, v) in enumerate(series):
        times[i, : len(t)] = t
        values[i, : len(v)] = v
        present[i, : len(v)] = True
    bank = DetectorBank(count, params)
    out = np.zeros((count, length))
    ids = np.arange(count)
    for row in range(length):
        live = ids[present[:, row]]
        out[live, row] = bank.score_learn(live, times[live, row], values[live, row]).probability
    return [out[i, : len(v)] for i, (_, v) in enumerate(series)]


def detect_values(
    times: np.ndarray, values: np.ndarray, params: Params | None = None
) -> np.ndarray:
    """Anomaly probabilities for one series (see :func:`detect_many`)."""
    return detect_many([(times, values)], params)[0]
