"""From metric points to per-workload observations: request rate, errors, replicas, latency.

A workload's request rate is the sum of the per-second rates of its request-counting series
(one series per route, method, status and pod, say). Each series keeps its latest rate; a
workload's rate at time t is the sum over its series seen within ``freshness`` seconds.
Its error rate is the same sum over the series that count failures (HTTP status 5xx, an
``error.type``, span status ERROR). Replicas are the distinct instances (pod, or
service.instance.id) among the fresh series, and the latency is the highest fresh p99.
Used by the scaling advisor (rate, replicas, latency) and the per-service detector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import numpy as np

from analytics.series.table import SeriesTable
from analytics.series.types import PointBatch, SeriesInfo

# Request-counting series as keiko's decoder names them: a histogram's count rate, or a
# counter's rate (under the counter's own name).
DEFAULT_RATE_METRICS = [
    "http.server.request.duration:rate",  # OTel HTTP semantic conventions (stable)
    "http.server.duration:rate",  # the older HTTP conventions
    "rpc.server.duration:rate",
    "traces.span.metrics.calls",  # span metrics (the OTel Collector spanmetrics names)
]
DEFAULT_LATENCY_METRICS = [
    "http.server.request.duration:p99",
    "http.server.duration:p99",
    "rpc.server.duration:p99",
    "traces.span.metrics.duration:p99",
]
# CPU time counters (their rate is cores in use), summed over a workload's processes.
DEFAULT_CPU_METRICS = ["process.cpu.time", "container.cpu.time", "k8s.pod.cpu.time"]
INSTANCE_LABELS = ("k8s.pod.name", "k8s.pod.uid", "service.instance.id", "host.name")
SPAN_METRICS_PREFIX = "traces.span.metrics."
SERVED_SPAN_KINDS = frozenset({"SPAN_KIND_SERVER", "SPAN_KIND_CONSUMER"})


@dataclass(frozen=True, slots=True)
class Observation:
    """One workload at one time."""

    workload: str
    time: float
    rate: float
    replicas: float | None
    latency: float | None
    errors: float = 0.0  # per second, of ``rate``
    cpu: float | None = None  # cores, when CPU time series are known


@dataclass
class _Series:
    workload: str
    instance: str
    latency_series: bool
    error_series: bool = False
    cpu_series: bool = False
    from_spans: bool = False  # span metrics: used only where the workload has nothing else
    rate: float = np.nan
    latency: float = np.nan
    time: float = -np.inf


@dataclass
class WorkloadRates:
    """Turns scored metric batches into workload observations (bounded by the series table)."""

    rate_metrics: list[str]  # glob patterns of request-rate series, e.g. "http.server.*:rate"
    latency_metrics: list[str]  # glob patterns of latency series (seconds)
    workload_labels: list[str]  # labels naming the workload, joined with "/"
    freshness: float = 120.0
    cpu_metrics: list[str] = field(default_factory=list)  # CPU time counters (as rates)
    _series: dict[int, _Series | None] = field(default_factory=dict)  # None: not a rate series
    _members: dict[str, set[int]] = field(default_factory=dict)  # workload -> series ids

    def forget(self, ids: np.ndarray) -> None:
        """Series the table evicted or replaced."""
        for sid in ids.tolist():
            tracked = self._series.pop(int(sid), None)
            if tracked is not None:
                members = self._members.get(tracked.workload, set())
                members.discard(int(sid))
                if not members:
                    self._members.pop(tracked.workload, None)

    def observe(self, batch: PointBatch, table: SeriesTable) -> list[Observation]:
        """Update from a batch; one observation per workload touched, at its latest time."""
        touched: dict[str, float] = {}
        for sid, t, v in zip(
            batch.series.tolist(), batch.times.tolist(), batch.values.tolist(), strict=True
        ):
            tracked = self._tracked(sid, table)
            if tracked is None or t < tracked.time:
                continue
            if tracked.latency_series:
                tracked.latency = v
            else:
                tracked.rate = v
            tracked.time = t
            touched[tracked.workload] = max(t, touched.get(tracked.workload, -np.inf))
        return [self._observation(w, t) for w, t in touched.items()]

    def _tracked(self, sid: int, table: SeriesTable) -> _Series | None:
        if sid not in self._series:
            info = table.info(sid)
            tracked = self._classify(info) if info is not None else None
            self._series[sid] = tracked
            if tracked is not None:
                self._members.setdefault(tracked.workload, set()).add(sid)
        return self._series[sid]

    def _classify(self, info: SeriesInfo) -> _Series | None:
        is_rate = any(fnmatchcase(info.metric, p) for p in self.rate_metrics)
        is_latency = any(fnmatchcase(info.metric, p) for p in self.latency_metrics)
        is_cpu = any(fnmatchcase(info.metric, p) for p in self.cpu_metrics)
        if not (is_rate or is_latency or is_cpu):
            return None
        kind = info.labels.get("span.kind", "")
        if kind and kind not in SERVED_SPAN_KINDS:  # calls it makes, not requests it serves
            return None
        names = [info.labels.get(k, "") for k in self.workload_labels]
        workload = "/".join(n for n in names if n) or info.service
        if not workload:
            return None
        instance = next((info.labels[k] for k in INSTANCE_LABELS if info.labels.get(k)), "")
        if is_cpu and not (is_rate or is_latency):
            return _Series(workload, instance, False, False, True)
        return _Series(
            workload,
            instance,
            is_latency and not is_rate,
            _counts_errors(info),
            from_spans=info.metric.startswith(SPAN_METRICS_PREFIX),
        )

    def _observation(self, workload: str, now: float) -> Observation:
        tracked = (self._series[sid] for sid in self._members.get(workload, ()))
        fresh = [s for s in tracked if s is not None and now - s.time <= self.freshness]
        if any(not s.from_spans and not s.cpu_series for s in fresh):
            # The service's own request metrics and the span metrics count the same
            # requests: take one source, not both.
            fresh = [s for s in fresh if not s.from_spans]
        counting = [
            s for s in fresh if not (s.latency_series or s.cpu_series) and np.isfinite(s.rate)
        ]
        cpu = [s.rate for s in fresh if s.cpu_series and np.isfinite(s.rate)]
        rates = [s.rate for s in counting]
        latencies = [s.latency for s in fresh if s.latency_series and np.isfinite(s.latency)]
        instances = {s.instance for s in counting if s.instance}
        return Observation(
            workload,
            now,
            float(sum(rates)),
            float(len(instances)) if instances else None,
            max(latencies) if latencies else None,
            float(sum(s.rate for s in counting if s.error_series)),
            float(sum(cpu)) if cpu else None,
        )


def _counts_errors(info: SeriesInfo) -> bool:
    """Does this request-counting series count failures (OTel HTTP/RPC and span metrics)?"""
    labels = info.labels
    status = labels.get("http.response.status_code") or labels.get("http.status_code") or ""
    if status[:1] == "5":
        return True
    if labels.get("error.type"):
        return True
    return labels.get("status.code", "").upper() in ("ERROR", "STATUS_CODE_ERROR")
