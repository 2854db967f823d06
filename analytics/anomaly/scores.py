"""What the detectors return for a batch of points."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Scores:
    """Per point of the batch, in batch order (float64 arrays, one entry per point).

    ``probability`` is calibrated so that one threshold serves every series: it is the
    anomaly probability in [0, 1] (0 during a series' warm-up). ``expected_low`` /
    ``expected_high`` bound the values the detector expected before seeing the point.
    ``onset`` is the unix time at which the current excursion began (NaN when the point is
    not part of an excursion).
    """

    probability: np.ndarray
    expected_low: np.ndarray
    expected_high: np.ndarray
    onset: np.ndarray
