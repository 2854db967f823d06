"""Prediction intervals from the empirical quantiles of recent residuals (bounded rings).

A residual is ``actual - forecast`` for forecasts made exactly h steps earlier, so the
interval ``forecast + [q_lo, q_hi]`` is calibrated for that horizon on recent data (split
conformal prediction on a sliding window), whatever the residuals' distribution.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np


class Ring:
    """The last ``size`` floats pushed, oldest overwritten first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data = np.full(size, math.nan)
        self._next = 0
        self.count = 0

    def push(self, value: float) -> None:
        """Add one value, dropping the oldest when full."""
        self._data[self._next] = value
        self._next = (self._next + 1) % self.size
        self.count = min(self.count + 1, self.size)

    def values(self) -> np.ndarray:
        """The values held (in no particular order)."""
        return self._data[: self.count] if self.count < self.size else self._data

    def clone(self) -> Ring:
        """An independent copy."""
        twin = copy.copy(self)
        twin._data = self._data.copy()
        return twin

    def to_state(self) -> dict[str, Any]:
        """JSON-able state."""
        return {
            "size": self.size,
            "data": _floats(self._data),
            "next": self._next,
            "count": self.count,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Ring:
        """The ring of ``to_state``."""
        ring = cls(int(state["size"]))
        ring._data = np.array([math.nan if v is None else v for v in state["data"]], np.float64)
        ring._next, ring.count = int(state["next"]), int(state["count"])
        return ring


class ResidualQuantiles:
    """Two-sided interval of nominal ``coverage`` from the last ``window`` residuals.

    The quantile level adapts online (adaptive conformal inference, Gibbs and Candes 2021):
    each residual outside the current interval widens it a little, each inside narrows it,
    so that the long-run coverage stays near nominal when the residuals drift.
    """

    adapt_rate = 0.01

    def __init__(self, coverage: float, window: int, min_residuals: int = 20) -> None:
        self.coverage = coverage
        self.ring = Ring(window)
        self.miss_level = 1.0 - coverage  # the adapted alpha
        self.min_residuals = min_residuals

    def push(self, residual: float) -> None:
        """Record one residual (NaN is ignored)."""
        if not math.isfinite(residual):
            return
        if self.ready:
            lo, hi = self.offsets()
            missed = 0.0 if lo <= residual <= hi else 1.0
            target = 1.0 - self.coverage
            self.miss_level = min(1.0, self.miss_level + self.adapt_rate * (target - missed))
        self.ring.push(residual)

    @property
    def ready(self) -> bool:
        """Whether enough residuals are held for a meaningful interval."""
        return self.ring.count >= self.min_residuals

    def offsets(self) -> tuple[float, float]:
        """``(q_lo, q_hi)`` to add to a forecast; NaN until ``ready``."""
        if not self.ready:
            return math.nan, math.nan
        values = self.ring.values()
        tail = self.miss_level / 2.0
        if tail <= 0.0:  # asked for more than the window ever saw: widen beyond its range
            lo, hi = float(values.min()), float(values.max())
            spread = (hi - lo) * -tail * 2.0
            return lo - spread, hi + spread
        lo, hi = np.quantile(values, [tail, 1.0 - tail])
        return float(lo), float(hi)

    def upper_offset(self, quantile: float) -> float:
        """One-sided offset: the ``quantile`` of the residuals (NaN until ``ready``).

        The split-conformal rank: the ``ceil((n + 1) * quantile)``-th smallest of the n
        residuals, so that a new residual exchangeable with them stays below it with
        probability at least ``quantile`` however few there are (the interpolated sample
        quantile falls short with a short history); the largest when n is too small for it.
        """
        if not self.ready:
            return math.nan
        values = np.sort(self.ring.values())
        rank = min(math.ceil((len(values) + 1) * quantile), len(values))
        return float(values[rank - 1])

    def median(self) -> float:
        """The median residual (NaN until ``ready``)."""
        return float(np.median(self.ring.values())) if self.ready else math.nan

    def clone(self) -> ResidualQuantiles:
        """An independent copy."""
        twin = copy.copy(self)
        twin.ring = self.ring.clone()
        return twin

    def to_state(self) -> dict[str, Any]:
        """JSON-able state."""
        return {
            "coverage": self.coverage,
            "ring": self.ring.to_state(),
            "miss": self.miss_level,
            "min": self.min_residuals,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ResidualQuantiles:
        """The tracker of ``to_state``."""
        ring = Ring.from_state(state["ring"])
        # "min": absent from checkpoints written before it was configurable
        tracker = cls(float(state["coverage"]), ring.size, int(state.get("min", 20)))
        tracker.ring = ring
        tracker.miss_level = float(state["miss"])
        return tracker


def _floats(values: np.ndarray) -> list[float | None]:
    # JSON has no NaN: None stands for it
    return [None if math.isnan(v) else float(v) for v in values]
