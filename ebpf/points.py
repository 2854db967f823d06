"""What probes hand to the agent: metric points keyed by raw kernel ids, and TCP edges.

Probes know kernel facts only (cgroup ids, addresses, device numbers). The agent
(ebpf/component.py) turns cgroup ids into container/pod labels, bounds cardinality,
exports to Prometheus and writes OTLP metrics and edges to the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class PointKind(StrEnum):
    """How a point's value is to be read."""

    COUNTER = "counter"  # a delta since the previous collect() (monotonic sum in OTLP)
    GAUGE = "gauge"  # a current value
    HISTOGRAM = "histogram"  # a delta histogram with log2 buckets (see Log2Histogram)


@dataclass(frozen=True, slots=True)
class Log2Histogram:
    """Counts per power-of-two bucket: bucket i holds values in [2**i, 2**(i+1)) of ``unit``.

    Bucket 0 also holds 0. ``total`` is the sum of the observed values when the program
    keeps it (else None: the agent then estimates from bucket midpoints).
    """

    counts: tuple[int, ...]
    unit: str  # "us", "ns", "ms"
    total: float | None = None

    @property
    def count(self) -> int:
        return sum(self.counts)

    def upper_bounds(self) -> list[float]:
        """Inclusive upper bound of every bucket but the last (OTLP explicit_bounds)."""
        return [float(2 ** (i + 1) - 1) for i in range(len(self.counts) - 1)]


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One value of one series. ``cgroup_id`` 0 means "not per cgroup" (e.g. per device)."""

    name: str  # e.g. "keiko.ebpf.runq.latency" (OTLP name; Prometheus gets _ and a suffix)
    kind: PointKind
    value: float | Log2Histogram
    cgroup_id: int = 0
    labels: dict[str, str] = field(default_factory=dict)  # e.g. {"remote": "10.0.0.5:443"}
    unit: str = ""  # UCUM-ish: "us", "By", "1"
    description: str = ""


@dataclass(frozen=True, slots=True)
class TcpEdge:
    """Connections seen from a client cgroup to a server address in one interval."""

    cgroup_id: int  # the client side's cgroup
    remote_addr: str  # server IP
    remote_port: int
    connects: int
    failed: int = 0
    latency_us_total: float = 0.0  # sum of connect latencies (mean = total / connects)


@dataclass(slots=True)
class Collected:
    """What one probe returned from one collect()."""

    points: list[MetricPoint] = field(default_factory=list)
    edges: list[TcpEdge] = field(default_factory=list)
