"""The series table and point batches: the interface between metric decoding and the detectors."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np


class SeriesKind(StrEnum):
    """What a series' values are (the detectors never see raw cumulative counters)."""

    GAUGE = "gauge"  # a gauge, a non-monotonic sum, a summary quantile
    RATE = "rate"  # per-second rate of a monotonic counter or of a histogram's count
    QUANTILE = "quantile"  # a quantile estimated from histogram bucket deltas
    RATIO = "ratio"  # derived ratio in [0, 1] (e.g. errors / requests)


@dataclass(frozen=True, slots=True)
class SeriesInfo:
    """One series: its dense id, stable key and what it measures."""

    id: int
    key: str  # stable across processes: metric name + sorted identifying labels
    metric: str  # the derived metric name, e.g. "http.server.duration:p99"
    service: str  # resource service.name ("" when unknown)
    kind: SeriesKind
    unit: str = ""
    labels: dict[str, str] = field(default_factory=dict)  # resource + point attributes


@dataclass(frozen=True, slots=True)
class PointBatch:
    """Columnar points: series ids (int64), unix seconds (float64), values (float64).

    Points of one series appear in time order; a batch may hold several points of a series.
    ``resolution`` (float64, optional) is each value's quantum: the step it moves in by its
    nature (one count per interval for a counter's rate, 1 for an integer gauge), so that a
    detector does not read a move of one count as news; 0 where values are continuous.
    """

    series: np.ndarray
    times: np.ndarray
    values: np.ndarray
    resolution: np.ndarray | None = None

    def quanta(self) -> np.ndarray:
        """``resolution``, or zeros where the batch has none."""
        return np.zeros(len(self.series)) if self.resolution is None else self.resolution

    def __len__(self) -> int:
        return len(self.series)

    @staticmethod
    def empty() -> PointBatch:
        """A batch with no points."""
        return PointBatch(np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.float64))
