"""The Kubernetes HorizontalPodAutoscaler algorithm (autoscaling/v2, default behaviour), simulated.

Follows pkg/controller/podautoscaler: every sync period (15 s) the replica calculator turns
the metric into a raw recommendation, ``ceil(ready * usage / target)``, left unchanged while
``|usage / target - 1| <= tolerance`` (0.1); when scaling up while pods are still starting,
those count as 0% used (the recompute of ``GetResourceReplicas``). The recommendation is then
stabilised (scale down only to the highest recommendation of the last 300 s, scale up to
the lowest of a 0 s window) and rate-limited by the default policies: up by at most
max(100%, 4 pods) per 15 s, down by up to 100% per 15 s. Pods serve only once ready, a
start-up delay after they are created; scale-in removes starting pods first.

The metric here is the demand (request rate) per ready pod as a fraction of one pod's
capacity, not saturated CPU: the HPA sees the whole overload, which favours it.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field

from pydantic import Field, model_validator

from analytics.forecast.config import check_replica_bounds
from keiko.store.config import Strict


class HpaConfig(Strict):
    """The HPA's settings (Kubernetes defaults) and the pods' start-up delay."""

    target_utilisation: float = Field(
        default=0.7, gt=0, le=1, description="Target average utilisation."
    )
    tolerance: float = Field(default=0.1, ge=0, description="No change while |ratio - 1| <= this.")
    sync_s: float = Field(default=15.0, gt=0, description="Controller sync period (s).")
    scale_down_stabilisation_s: float = Field(
        default=300.0, ge=0, description="Scale-down window (s)."
    )
    scale_up_stabilisation_s: float = Field(default=0.0, ge=0, description="Scale-up window (s).")
    scale_up_percent: float = Field(
        default=100.0, ge=0, description="Scale-up policy: percent per period."
    )
    scale_up_pods: int = Field(default=4, ge=0, description="Scale-up policy: pods per period.")
    scale_up_period_s: float = Field(
        default=15.0, gt=0, description="Period of the scale-up policies (s)."
    )
    metrics_lag_s: float = Field(
        default=30.0,
        ge=0,
        description="Age of the metric the controller sees (metrics-server scrape + window), s.",
    )
    startup_s: float = Field(default=60.0, ge=0, description="Pod creation to ready (s).")
    min_replicas: int = Field(default=1, ge=1, description="minReplicas.")
    max_replicas: int = Field(default=1000, ge=1, description="maxReplicas.")

    @model_validator(mode="after")
    def _bounds(self) -> HpaConfig:
        check_replica_bounds(self.min_replicas, self.max_replicas)
        return self


@dataclass
class Pods:
    """The pods of a workload: when each one is (or was) ready, in ascending order."""

    ready_at: list[float] = field(default_factory=list)

    def ready(self, now: float) -> int:
        """Pods serving at ``now``."""
        return bisect.bisect_right(self.ready_at, now)

    def total(self) -> int:
        """Pods provisioned (starting or ready)."""
        return len(self.ready_at)

    def scale_to(self, replicas: int, now: float, startup_s: float) -> None:
        """Create pods (ready after ``startup_s``) or delete them, starting ones first."""
        if replicas > len(self.ready_at):
            self.ready_at.extend([now + startup_s] * (replicas - len(self.ready_at)))
        elif replicas < len(self.ready_at):
            del self.ready_at[replicas:]  # kept sorted: the last ones are still starting


def raw_recommendation(replicas: int, ready: int, usage_ratio: float, tolerance: float) -> int:
    """The replica calculator: desired replicas from the usage/target ratio of ready pods."""
    unready = replicas - ready
    if ready == 0:
        return replicas  # no metrics: the controller leaves the scale alone
    if unready == 0 or usage_ratio <= 1.0:
        if abs(1.0 - usage_ratio) <= tolerance:
            return replicas
        return math.ceil(usage_ratio * ready)
    new_ratio = usage_ratio * ready / replicas  # starting pods count as 0% used
    if abs(1.0 - new_ratio) <= tolerance or new_ratio < 1.0:
        return replicas
    return max(math.ceil(new_ratio * replicas), replicas)


class Stabiliser:
    """Scale-down (and scale-up) stabilisation windows over raw recommendations."""

    def __init__(self, down_s: float, up_s: float = 0.0) -> None:
        self.down_s, self.up_s = down_s, up_s
        self.history: deque[tuple[float, int]] = deque()

    def apply(self, now: float, current: int, desired: int, down_s: float | None = None) -> int:
        """The stabilised recommendation (``down_s``: another scale-down window); records it."""
        down_s = self.down_s if down_s is None else down_s
        keep = max(self.down_s, self.up_s, down_s)
        while self.history and self.history[0][0] <= now - keep:
            self.history.popleft()
        up = down = desired
        for t, rec in self.history:
            if t > now - self.up_s:
                up = min(up, rec)
            if t > now - down_s:
                down = max(down, rec)
        self.history.append((now, desired))
        return min(max(current, up), down)


class Hpa:
    """One HPA: call ``sync`` every ``sync_s`` with the metric it would see."""

    def __init__(self, config: HpaConfig) -> None:
        self.config = config
        self.stabiliser = Stabiliser(
            config.scale_down_stabilisation_s, config.scale_up_stabilisation_s
        )
        self.scale_ups: deque[tuple[float, int]] = deque()  # (time, pods added)

    def desired(self, now: float, pods: Pods, observed_rate: float, capacity: float) -> int:
        """The raw recommendation from the rate observed (shared by the ready pods)."""
        ready = pods.ready(now)
        usage = observed_rate / (ready * capacity) if ready else 0.0
        ratio = usage / self.config.target_utilisation
        return raw_recommendation(pods.total(), ready, ratio, self.config.tolerance)

    def normalise(self, now: float, current: int, desired: int, down_s: float | None = None) -> int:
        """Stabilisation (``down_s``: another scale-down window), scale-up rate limit, min/max."""
        c = self.config
        rec = self.stabiliser.apply(now, current, desired, down_s)
        if rec > current:
            rec = min(rec, self.scale_up_limit(now, current))
        return max(c.min_replicas, min(c.max_replicas, rec))

    def scale_up_limit(self, now: float, current: int) -> int:
        """Default policies, selectPolicy Max: +100% or +4 pods per period."""
        c = self.config
        while self.scale_ups and self.scale_ups[0][0] <= now - c.scale_up_period_s:
            self.scale_ups.popleft()
        start = current - sum(n for _, n in self.scale_ups)
        by_percent = math.ceil(start * (1.0 + c.scale_up_percent / 100.0))
        return max(by_percent, start + c.scale_up_pods)

    def sync(self, now: float, pods: Pods, observed_rate: float, capacity: float) -> int:
        """One controller sync: scales ``pods`` and returns the new replica count."""
        current = pods.total()
        new = self.normalise(now, current, self.desired(now, pods, observed_rate, capacity))
        self.record(now, current, new)
        pods.scale_to(new, now, self.config.startup_s)
        return new

    def record(self, now: float, current: int, new: int) -> None:
        """Remember a scale-up for the rate limit."""
        if new > current:
            self.scale_ups.append((now, new - current))


def ramp_s(current: int, target: int, hpa: HpaConfig) -> float:
    """How long after its first scale-up the HPA's scale-up policies reach ``target`` pods."""
    pods, periods = current, 0
    while pods < target and periods < 64:
        grown = max(
            math.ceil(pods * (1.0 + hpa.scale_up_percent / 100.0)), pods + hpa.scale_up_pods
        )
        if grown <= pods:
            return math.inf  # no scale-up policy lets it grow
        pods, periods = grown, periods + 1
    return max(0, periods - 1) * hpa.scale_up_period_s
