"""What root-cause analysis and anomaly correlation need from a window of traces.

A :class:`TraceProfile` holds, per service, how much of its traces' time is its own work
(self-time) and on the critical path, and how often its errors start there; plus exemplars,
the traces worth opening for an anomaly (the failing ones where the service is the error
origin first, then the slowest). :func:`compare` turns two profiles (before and during an
anomaly) into the trace evidence RCA cites.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analytics.traces.analysis import TraceSummary

NS = 1e9
DEFAULT_EXEMPLARS = 3


@dataclass(slots=True)
class ServiceTraceStats:
    """One service over the traces of a window that touch it.

    ``origin_share`` is the share of the service's traces where it is an error origin;
    ``failing_origin_share`` the share of all the window's failing traces where it is.
    Times are per trace that touches the service, in seconds.
    """

    service: str
    spans: int = 0
    traces: int = 0
    failing_traces: int = 0
    error_origins: int = 0
    origin_share: float = 0.0
    failing_origin_share: float = 0.0
    self_s_mean: float = 0.0
    self_s_p90: float = 0.0
    critical_s_mean: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(slots=True)
class Exemplar:
    """A trace worth opening for an anomaly, and why it was picked."""

    trace_id: str  # hex
    time: float  # unix seconds of the trace's start
    duration_s: float
    error: bool
    reason: str
    critical_path: list[str] = field(default_factory=list)  # services in time order

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


@dataclass(slots=True)
class TraceProfile:
    """Per-service trace statistics of a window, with exemplars per service."""

    start_s: float | None
    end_s: float | None
    traces: int = 0
    failing_traces: int = 0
    services: dict[str, ServiceTraceStats] = field(default_factory=dict)
    exemplars: dict[str, list[Exemplar]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "start_s": self.start_s,
            "end_s": self.end_s,
            "traces": self.traces,
            "failing_traces": self.failing_traces,
            "services": {name: s.to_json() for name, s in self.services.items()},
            "exemplars": {
                name: [e.to_json() for e in found] for name, found in self.exemplars.items()
            },
        }


@dataclass(slots=True)
class ServiceShift:
    """How one service's trace statistics moved from one window to another."""

    service: str
    self_s_before: float
    self_s_after: float
    self_increase_s: float
    self_ratio: float | None  # after / before; None when before is zero
    origin_share_before: float
    origin_share_after: float
    origin_share_change: float
    failing_origin_share_before: float
    failing_origin_share_after: float
    failing_origin_share_change: float
    critical_s_before: float
    critical_s_after: float
    critical_increase_s: float

    def describe(self) -> str:
        """One sentence of evidence, e.g. "payment's self-time rose from 5 ms to 210 ms per
        trace; payment is the origin of errors in 37% of failing traces"."""
        verb = "rose" if self.self_increase_s >= 0 else "fell"
        text = (
            f"{self.service}'s self-time {verb} from {_ms(self.self_s_before)} to "
            f"{_ms(self.self_s_after)} per trace"
        )
        if self.failing_origin_share_after > 0:
            text += (
                f"; {self.service} is the origin of errors in "
                f"{self.failing_origin_share_after:.0%} of failing traces"
            )
        return text

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (with the sentence of :meth:`describe`)."""
        return asdict(self) | {"text": self.describe()}


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.2g} ms"


def in_window(
    summaries: Iterable[TraceSummary], start_s: float | None, end_s: float | None
) -> list[TraceSummary]:
    """The traces starting in [start_s, end_s) (an open side when None)."""
    lo = -math.inf if start_s is None else start_s * NS
    hi = math.inf if end_s is None else end_s * NS
    return [s for s in summaries if lo <= s.start_ns < hi]


def profile(
    summaries: Iterable[TraceSummary],
    start_s: float | None = None,
    end_s: float | None = None,
    k: int = DEFAULT_EXEMPLARS,
) -> TraceProfile:
    """Per-service statistics of the traces starting in the window (all when no bounds),
    with ``k`` exemplars per service."""
    window = in_window(summaries, start_s, end_s)
    failing = sum(s.error for s in window)
    touching: dict[str, list[TraceSummary]] = {}
    for s in window:
        for service in s.spans_per_service:
            touching.setdefault(service, []).append(s)
    out = TraceProfile(start_s, end_s, len(window), failing)
    for service in sorted(touching):
        traces = touching[service]
        out.services[service] = _stats(service, traces, failing)
        out.exemplars[service] = _pick(traces, service, k)
    return out


def _stats(service: str, traces: Sequence[TraceSummary], failing: int) -> ServiceTraceStats:
    own = np.array([s.self_ns.get(service, 0) for s in traces], np.float64) / NS
    critical = np.array([s.critical_ns.get(service, 0) for s in traces], np.float64) / NS
    origins = sum(service in s.origin_services for s in traces)
    return ServiceTraceStats(
        service=service,
        spans=sum(s.spans_per_service[service] for s in traces),
        traces=len(traces),
        failing_traces=sum(s.error for s in traces),
        error_origins=origins,
        origin_share=origins / len(traces),
        failing_origin_share=origins / failing if failing else 0.0,
        self_s_mean=float(own.mean()),
        self_s_p90=float(np.quantile(own, 0.9)),
        critical_s_mean=float(critical.mean()),
    )


def exemplars(
    summaries: Iterable[TraceSummary],
    service: str | None,
    start_s: float | None,
    end_s: float | None,
    k: int = 5,
) -> list[Exemplar]:
    """Up to ``k`` traces of the window touching ``service`` (any when None): failing traces
    where it is the error origin first, then the other failing ones, then the slowest."""
    window = in_window(summaries, start_s, end_s)
    if service is not None:
        window = [s for s in window if service in s.spans_per_service]
    return _pick(window, service, k)


def _pick(traces: Sequence[TraceSummary], service: str | None, k: int) -> list[Exemplar]:
    by_duration = sorted(traces, key=lambda s: (-s.duration_ns, s.trace_id))
    rank = {s.trace_id: i for i, s in enumerate(by_duration)}

    def group(s: TraceSummary) -> int:
        if s.error and (service in s.origin_services or service is None):
            return 0
        return 1 if s.error else 2

    picked = sorted(by_duration, key=group)[:k]  # stable: slowest first within a group
    return [_exemplar(s, group(s), rank[s.trace_id], len(traces), service) for s in picked]


def _exemplar(s: TraceSummary, group: int, rank: int, n: int, service: str | None) -> Exemplar:
    origins = ", ".join(sorted(s.origin_services))
    if group == 0:
        reason = f"error origin in {service if service is not None else origins}"
    elif group == 1:
        reason = f"failed (error origin in {origins})"
    else:
        reason = f"slowest {math.ceil(100 * (rank + 1) / n)}%"
    return Exemplar(
        trace_id=s.trace_id,
        time=s.start_ns / NS,
        duration_s=s.duration_ns / NS,
        error=s.error,
        reason=reason,
        critical_path=s.path_services(),
    )


FRAME_COLUMNS = (
    "time",
    "trace_id",
    "service",
    "spans",
    "self_s",
    "critical_s",
    "duration_s",
    "error",
    "origin",
)


def service_frame(summaries: Iterable[TraceSummary]) -> pd.DataFrame:
    """One row per (trace, service touched), for analysis over time with pandas: ``time``
    (the trace's start, unix s), ``trace_id``, ``service``, ``spans``, ``self_s``,
    ``critical_s``, ``duration_s`` (the trace's), ``error`` (the trace failed) and
    ``origin`` (the service is an error origin of the trace)."""
    rows = [
        (
            s.start_ns / NS,
            s.trace_id,
            service,
            spans,
            s.self_ns.get(service, 0) / NS,
            s.critical_ns.get(service, 0) / NS,
            s.duration_ns / NS,
            s.error,
            service in origins,
        )
        for s in summaries
        for origins in (s.origin_services,)
        for service, spans in s.spans_per_service.items()
    ]
    return pd.DataFrame.from_records(rows, columns=list(FRAME_COLUMNS))


def compare(before: TraceProfile, after: TraceProfile) -> dict[str, ServiceShift]:
    """Per service (of either profile), how its trace statistics moved from ``before`` to
    ``after``; a service missing from one side counts as zero there."""
    out = {}
    for service in sorted(before.services.keys() | after.services.keys()):
        old = before.services.get(service) or ServiceTraceStats(service)
        new = after.services.get(service) or ServiceTraceStats(service)
        out[service] = ServiceShift(
            service=service,
            self_s_before=old.self_s_mean,
            self_s_after=new.self_s_mean,
            self_increase_s=new.self_s_mean - old.self_s_mean,
            self_ratio=new.self_s_mean / old.self_s_mean if old.self_s_mean > 0 else None,
            origin_share_before=old.origin_share,
            origin_share_after=new.origin_share,
            origin_share_change=new.origin_share - old.origin_share,
            failing_origin_share_before=old.failing_origin_share,
            failing_origin_share_after=new.failing_origin_share,
            failing_origin_share_change=new.failing_origin_share - old.failing_origin_share,
            critical_s_before=old.critical_s_mean,
            critical_s_after=new.critical_s_mean,
            critical_increase_s=new.critical_s_mean - old.critical_s_mean,
        )
    return out
