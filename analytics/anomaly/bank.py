"""DetectorBank: the state of every series' detector in numpy arrays, scored a batch at a time.

PLACEHOLDER: the API is final, the algorithm is being written (see detector.py when it lands).
"""

from __future__ import annotations

import numpy as np

from analytics.anomaly.scores import Scores


class DetectorBank:
    """Score first, then learn, for many series at once (series ids are dense ints)."""

    def __init__(self, capacity: int = 1024) -> None:
        self._mean = np.zeros(capacity)
        self._var = np.ones(capacity)
        self._n = np.zeros(capacity)

    def score_learn(self, series: np.ndarray, times: np.ndarray, values: np.ndarray) -> Scores:
        """Score each point against its series' state, then learn from it."""
        n = len(series)
        prob = np.zeros(n)
        return Scores(prob, values.copy(), values.copy(), np.full(n, np.nan))

    def forget(self, series: np.ndarray) -> None:
        """Reset the state of these series (evicted; their ids will be reused)."""

    def snapshot(self) -> bytes:
        """The whole state, to checkpoint in the store."""
        return b""

    @classmethod
    def restore(cls, data: bytes) -> DetectorBank:
        """A bank with the state of ``snapshot()``."""
        return cls()

    @property
    def bytes_per_series(self) -> int:
        """State memory per series slot."""
        return 0
