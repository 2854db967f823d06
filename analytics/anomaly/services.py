"""Per-service multivariate detection: river's HalfSpaceTrees over each service's RED vector.

The per-series detectors look at one series at a time. Some failures show only in how a
service's signals move together (traffic holds while errors and latency rise a little each).
So each service (workload) also gets one HalfSpaceTrees model over the vector (log request
rate, error ratio, log p99 latency), built from its series by :class:`WorkloadRates`.

HalfSpaceTrees' raw score (0: typical, towards 1: isolated) does not mean the same on every
service. Rather than a second calibration, each service's raw score becomes a point of a
synthetic series ``keiko.service.red:hst`` of that service, which the caller scores with the
per-series detectors like any other series: its events, threshold and checkpoint are the
ones every series has. About 300 KiB and 80 µs per observation per service (n_trees=10,
height=6, window 250), so the number of services is capped.

The error ratio gets a synthetic series of its own, ``keiko.service.errors:ratio``: a
service's failures are spread over series per route, status and pod, and a series of
5xx responses is born with the first one (and then learns from zero for a while), so no
single series of the service shows "30% of requests now fail" as one move.
"""

from __future__ import annotations

import math
import pickle
from collections import OrderedDict
from dataclasses import dataclass

from river import anomaly, preprocessing

from analytics.series.workloads import Observation

METRIC = "keiko.service.red:hst"
ERRORS_METRIC = "keiko.service.errors:ratio"
WINDOW = 250  # observations per HalfSpaceTrees window
SMOOTHING = 0.4  # weight of the newest raw score in the score reported
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class ServicePoint:
    """A service's raw multivariate score at a time, to be scored as a series point."""

    workload: str
    time: float
    raw: float


class ServiceModel:
    """Standardise, squash into (0, 1), HalfSpaceTrees: score first, then learn.

    HalfSpaceTrees splits the unit cube, so features must live in [0, 1]. Min-max scaling
    stretches to every new extreme (an anomaly becomes the new edge of "normal" at once);
    a running standardisation squashed by a logistic keeps normal values near 0.5 and puts
    unusual ones out towards 0 or 1, where the trees hold little mass.
    """

    def __init__(self, seed: int) -> None:
        self.scaler = preprocessing.StandardScaler()
        self.trees = anomaly.HalfSpaceTrees(n_trees=10, height=6, window_size=WINDOW, seed=seed)
        self.learnt = 0
        self.smoothed = 0.0

    def score_learn(self, x: dict[str, float]) -> float | None:
        """The score of ``x`` (0: typical .. 1: isolated; averaged over the last few
        vectors), then learn it; None while the trees fill their first window (they have
        no reference mass yet and say 0)."""
        z = self.scaler.transform_one(x)
        squashed = {
            k: 1.0 / (1.0 + math.exp(-max(min(v / 3.0, 50.0), -50.0))) for k, v in z.items()
        }
        raw = float(self.trees.score_one(squashed))
        self.trees.learn_one(squashed)
        self.scaler.learn_one(x)
        self.learnt += 1
        # A single isolated vector is common (a burst of errors in one interval); a service
        # whose vector stays unusual is what this detector is for.
        self.smoothed += SMOOTHING * (raw - self.smoothed)
        return self.smoothed if self.learnt > WINDOW else None


class ServiceModels:
    """One HalfSpaceTrees model per workload (least recently seen evicted past the cap)."""

    def __init__(self, max_services: int = 200, seed: int = 42) -> None:
        self.max_services = max_services
        self.seed = seed
        self.models: OrderedDict[str, ServiceModel] = OrderedDict()
        self.evicted = 0

    def observe(self, observations: list[Observation]) -> list[ServicePoint]:
        """Score then learn each observation's vector; the raw scores as points."""
        points = []
        for obs in observations:
            if obs.rate <= 0 and obs.latency is None:
                continue  # no traffic and no latency: nothing to compare
            raw = self._model(obs.workload).score_learn(features(obs))
            if raw is not None:
                points.append(ServicePoint(obs.workload, obs.time, raw))
        return points

    def _model(self, workload: str) -> ServiceModel:
        model = self.models.get(workload)
        if model is None:
            model = ServiceModel(self.seed)
            self.models[workload] = model
            if len(self.models) > self.max_services:
                self.models.popitem(last=False)
                self.evicted += 1
        self.models.move_to_end(workload)
        return model

    def snapshot(self) -> bytes:
        """The models, pickled (river models have no other serialisation; the bytes only
        ever come back from keiko's own checkpoint)."""
        return pickle.dumps({"format": _FORMAT, "models": list(self.models.items())})

    def restore(self, data: bytes) -> None:
        """Take the models of ``snapshot()``; ValueError when unreadable."""
        try:
            state = pickle.loads(data)  # keiko's own checkpoint only, see snapshot()
        except Exception as exc:
            raise ValueError(f"service models unreadable: {exc}") from None
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError("service models from another version: starting fresh")
        self.models = OrderedDict(state["models"])


def error_ratio(obs: Observation) -> float | None:
    """The share of the service's requests that failed, in [0, 1]; None without traffic."""
    if obs.rate <= 0:
        return None
    return min(max(obs.errors / obs.rate, 0.0), 1.0)


def features(obs: Observation) -> dict[str, float]:
    """The RED vector: log request rate, error ratio, log p99 latency (ms)."""
    latency_ms = (obs.latency or 0.0) * 1000.0
    return {
        "rate": math.log1p(max(obs.rate, 0.0)),
        "errors": error_ratio(obs) or 0.0,
        "latency": math.log1p(max(latency_ms, 0.0)),
    }
