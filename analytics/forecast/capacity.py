"""Learn a replica's capacity from observed throughput per replica against latency.

Throughput per replica is binned geometrically (bins 20% apart, at most ``max_bins``) and
each bin keeps an exponentially weighted mean latency. The capacity is the top of the
highest bin below the first saturated one, where saturated means a mean latency above the
objective (or, without one, above 1.5 x the latency of the least-loaded bins). Until some
bin has saturated the highest throughput seen is returned and flagged: a lower bound,
conservative for sizing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

_RATIO = 1.2
_MIN_COUNT = 3
_LATENCY_RATE = 0.1
_KNEE = 1.5


@dataclass(frozen=True)
class CapacityEstimate:
    """A per-replica capacity and whether saturation was actually seen."""

    value: float
    saturated: bool


class CapacityLearner:
    """Bounded bins of (throughput per replica -> mean latency)."""

    def __init__(self, latency_objective_s: float | None = None, max_bins: int = 48) -> None:
        self.objective = latency_objective_s
        self.max_bins = max_bins
        self.bins: dict[int, list[float]] = {}  # bin -> [count, mean latency]

    def observe(self, rate: float, replicas: float, latency_s: float) -> None:
        """Learn one observation (ignored unless all three are positive and finite)."""
        if not all(math.isfinite(v) and v > 0 for v in (rate, replicas, latency_s)):
            return
        key = math.floor(math.log(rate / replicas) / math.log(_RATIO))
        entry = self.bins.setdefault(key, [0.0, latency_s])
        entry[0] += 1
        entry[1] += max(_LATENCY_RATE, 1.0 / entry[0]) * (latency_s - entry[1])
        if len(self.bins) > self.max_bins:  # forget the rarest bin
            del self.bins[min(self.bins, key=lambda k: (self.bins[k][0], -k))]

    def estimate(self) -> CapacityEstimate | None:
        """The capacity, or None before any bin has enough observations."""
        seen = sorted(k for k, (n, _) in self.bins.items() if n >= _MIN_COUNT)
        if not seen:
            return None
        limit = self.objective or _KNEE * min(self.bins[k][1] for k in seen[:3])
        below = None
        for k in seen:
            if self.bins[k][1] > limit:
                if below is None:
                    return CapacityEstimate(_RATIO**k, True)  # saturated from the start
                return CapacityEstimate(_RATIO ** (below + 1), True)
            below = k
        return CapacityEstimate(_RATIO ** (seen[-1] + 1), False)

    def to_state(self) -> dict[str, Any]:
        """JSON-able state."""
        return {
            "objective": self.objective,
            "max_bins": self.max_bins,
            "bins": list(self.bins.items()),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> CapacityLearner:
        """The learner of ``to_state``."""
        learner = cls(state["objective"], int(state["max_bins"]))
        learner.bins = {int(k): [float(n), float(m)] for k, (n, m) in state["bins"]}
        return learner
