"""One collect: read every probe, attribute cgroups, bound cardinality, merge series.

Blocking (map reads are ctypes calls, attribution may walk cgroupfs or ask the Kubernetes
API): the component runs :meth:`Agent.collect` on a worker thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ebpf.attribution import FOLDED, Attribution, Attributor
from ebpf.cardinality import OTHER, Limiter
from ebpf.encode import Series
from ebpf.points import Log2Histogram, MetricPoint, PointKind, TcpEdge
from ebpf.probe import Probe

if TYPE_CHECKING:
    from ebpf.cgroup_watch import CgroupEvent

log = logging.getLogger(__name__)

# Probe labels that name a remote endpoint: bounded by cardinality.max_remote_endpoints.
REMOTE_LABELS = frozenset(
    {"remote", "remote.address", "remote.port", "server.address", "server.port"}
    | {"network.peer.address", "network.peer.port"}
)
# A point without a cgroup id may name its cgroup by path (the cgroupfs fallback does).
PATH_LABEL = "cgroup.path"


@dataclass
class Batch:
    """What one collect produced."""

    series: list[Series] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    start_ns: int = 0
    end_ns: int = 0
    duration_s: float = 0.0
    failed: list[str] = field(default_factory=list)  # probes whose collect() raised


class Agent:
    """Turns probes' raw points into attributed, bounded series."""

    def __init__(
        self, probes: Sequence[Probe], attributor: Attributor, cgroups: Limiter, remotes: Limiter
    ) -> None:
        self.probes = list(probes)
        self.attributor = attributor
        self.cgroups = cgroups
        self.remotes = remotes
        self._last_ns = time.time_ns()
        self._failing: set[str] = set()
        # Cgroups the kernel created or removed since the last call (ebpf.cgroup_watch).
        self.cgroup_events: Callable[[], Iterable[CgroupEvent]] | None = None

    def collect(self) -> Batch:
        """Read every probe once and return the merged, attributed series and edges."""
        started = time.perf_counter()
        batch = Batch(start_ns=self._last_ns, end_ns=time.time_ns())
        self._last_ns = batch.end_ns
        points: list[MetricPoint] = []
        edges: list[TcpEdge] = []
        for probe in self.probes:
            try:
                got = probe.collect()
            except Exception:
                batch.failed.append(probe.name)
                if probe.name not in self._failing:  # once per failure streak
                    log.exception("eBPF probe %s: collect failed", probe.name)
                self._failing.add(probe.name)
                continue
            self._failing.discard(probe.name)
            points += got.points
            edges += got.edges
        self._learn_cgroups()  # after the reads: covers every cgroup their points name
        now = time.monotonic()
        batch.series = self.attribute(points, now)
        batch.edges = self.attribute_edges(edges, now)
        self.attributor.index.end_interval()
        self.cgroups.expire(now)
        self.remotes.expire(now)
        batch.duration_s = time.perf_counter() - started
        return batch

    def _learn_cgroups(self) -> None:
        if self.cgroup_events is None:
            return
        try:
            self.attributor.index.learn(self.cgroup_events())
        except Exception:  # attribution falls back to the walk alone
            log.warning("eBPF agent: reading cgroup events failed", exc_info=True)

    def _owner(self, point: MetricPoint) -> tuple[Attribution | None, dict[str, str]]:
        labels = dict(point.labels)
        path = labels.pop(PATH_LABEL, None)
        if point.cgroup_id:
            return self.attributor.by_id(point.cgroup_id), labels
        if path is not None:
            return self.attributor.by_path(path), labels
        return None, labels

    def attribute(self, points: Iterable[MetricPoint], now: float) -> list[Series]:
        """Resolve owners, fold what exceeds the bounds, merge what folded together."""
        merged: dict[tuple[str, tuple[tuple[str, str], ...]], Series] = {}
        for p in points:
            owner, labels = self._owner(p)
            if owner is not None and not self.cgroups.admit(p.name, owner.cgroup_path, now):
                owner = FOLDED
            remote = tuple(sorted((k, v) for k, v in labels.items() if k in REMOTE_LABELS))
            if remote and not self.remotes.admit(p.name, remote, now):
                labels.update(dict.fromkeys(dict(remote), OTHER))
            attrs = {**labels, **(owner.attributes() if owner else {})}
            key = (p.name, tuple(sorted(attrs.items())))
            old = merged.get(key)
            value = p.value if old is None else _merge(old.kind, old.value, p.value)
            merged[key] = Series(p.name, p.kind, value, key[1], p.unit, p.description)
        return list(merged.values())

    def attribute_edges(self, edges: Iterable[TcpEdge], now: float) -> list[dict[str, Any]]:
        """Client owner -> server address edges (remote endpoints bounded like series)."""
        merged: dict[tuple[Any, ...], dict[str, Any]] = {}
        for e in edges:
            owner = self.attributor.by_id(e.cgroup_id) if e.cgroup_id else None
            if owner is not None and not self.cgroups.admit("edges", owner.cgroup_path, now):
                owner = FOLDED
            addr, port = e.remote_addr, e.remote_port
            if not self.remotes.admit("edges", (addr, port), now):
                addr, port = OTHER, 0
            client = owner.attributes() if owner else {}
            key = (tuple(sorted(client.items())), addr, port)
            edge = merged.setdefault(
                key,
                {
                    "client": client,
                    "server": {"address": addr, "port": port},
                    "connects": 0,
                    "failed": 0,
                    "latency_us_total": 0.0,
                },
            )
            edge["connects"] += e.connects
            edge["failed"] += e.failed
            edge["latency_us_total"] += e.latency_us_total
        return list(merged.values())


def _merge(
    kind: PointKind, a: float | Log2Histogram, b: float | Log2Histogram
) -> float | Log2Histogram:
    """Two values of one series folded together (gauges add up too: the "other" total)."""
    if isinstance(a, Log2Histogram) and isinstance(b, Log2Histogram):
        n = max(len(a.counts), len(b.counts))
        counts = [
            (a.counts[i] if i < len(a.counts) else 0) + (b.counts[i] if i < len(b.counts) else 0)
            for i in range(n)
        ]
        total = None if a.total is None or b.total is None else a.total + b.total
        return Log2Histogram(tuple(counts), a.unit, total)
    assert not isinstance(a, Log2Histogram) and not isinstance(b, Log2Histogram), kind
    return a + b
