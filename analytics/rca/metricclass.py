"""What a metric measures, from its name: which way is bad and how much it says about a cause.

Resource saturation (CPU, memory, disk) points at the service it is measured on; latency
(and requests in flight, which grow with it) and errors propagate from callee to caller,
so they count as a cause only where no callee shows the same; traffic changes are mostly
effects. Names from Prometheus, OTel and the benchmark exports differ, so the match is on
name tokens, most specific first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache


class Signal(StrEnum):
    """The kinds of evidence a metric gives."""

    RESOURCE = "resource"
    LATENCY = "latency"
    ERRORS = "errors"
    TRAFFIC = "traffic"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class MetricClass:
    """How to read a metric: its signal, the bad direction (+1 up, -1 down, 0 either)
    and its weight in a service's score."""

    signal: Signal
    direction: int
    weight: float


# Token sets, checked in this order: "availability" before "latency", "error" before "rate".
_RULES: tuple[tuple[frozenset[str], MetricClass], ...] = (
    (
        frozenset({"availability", "success", "apdex", "uptime", "up", "healthy"}),
        MetricClass(Signal.ERRORS, -1, 1.0),
    ),
    (
        frozenset(
            {
                "error",
                "errors",
                "fail",
                "failed",
                "failure",
                "fault",
                "5xx",
                "exception",
                "exceptions",
                "unavailable",
                "loss",
                "dropped",
                "drops",
                "retrans",
                "timeout",
                "timeouts",
                "oom",
                "restarts",
                "origins",
            }
        ),
        MetricClass(Signal.ERRORS, 1, 1.0),
    ),
    (
        frozenset(
            {
                "cpu",
                "mem",
                "memory",
                "heap",
                "gc",
                "disk",
                "io",
                "fs",
                "thread",
                "threads",
                "fd",
                "fds",
                "socket",
                "sockets",
                "net",
                "network",
                "rss",
                "throttled",
                "throttling",
                "runqueue",
                "sched",
                "swap",
            }
        ),
        MetricClass(Signal.RESOURCE, 1, 1.0),
    ),
    (
        frozenset(
            {
                "lat",
                "latency",
                "duration",
                "time",
                "seconds",
                "p50",
                "p75",
                "p90",
                "p95",
                "p99",
                "rt",
                "response",
                "self",
                "wait",
                "delay",
                "inflight",
                "concurrency",
                "concurrent",
                "active",
                "pending",
                "backlog",
            }
        ),
        MetricClass(Signal.LATENCY, 1, 1.0),
    ),
    (
        frozenset(
            {
                "lod",
                "load",
                "requests",
                "request",
                "rate",
                "calls",
                "qps",
                "rps",
                "tps",
                "workload",
                "throughput",
                "count",
                "sum",
                "traffic",
                "bytes",
                "receive",
                "transmit",
            }
        ),
        MetricClass(Signal.TRAFFIC, 0, 0.6),
    ),
)
_OTHER = MetricClass(Signal.OTHER, 0, 0.7)
_TOKENS = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=65536)
def classify(metric: str) -> MetricClass:
    """The class of a metric name (e.g. ``latency_p99`` -> latency, up is bad)."""
    name = metric.split("{", 1)[0]  # the name, not the labels (a route may say "error")
    if name.endswith(":rate"):  # a histogram's request rate (see analytics.series)
        return _RULES[-1][1]
    tokens = set(_TOKENS.findall(name.lower()))
    for words, cls in _RULES:
        if tokens & words:
            return cls
    return _OTHER
