"""The agent's series for Prometheus: running totals, read at scrape time (a Collector).

Probes hand over deltas; Prometheus wants cumulative counters and histograms, so every
series keeps its running total here. Names follow Prometheus conventions:
``keiko.ebpf.runq.latency`` (us, histogram) -> ``keiko_ebpf_runq_latency_seconds``,
``keiko.ebpf.tcp.connects`` (counter) -> ``keiko_ebpf_tcp_connects_total``. Owner labels
are ``pod``, ``namespace``, ``container`` (the Kubernetes name, else the short container
id) and ``cgroup``; the probe's own labels follow (dots become underscores). Series not
updated for ``idle_expiry`` seconds are dropped, like the cardinality slots.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ebpf.encode import Series, histogram_sum
from ebpf.points import Log2Histogram, PointKind

# unit -> (name suffix, factor to the base unit)
UNITS: dict[str, tuple[str, float]] = {
    "ns": ("_seconds", 1e-9),
    "us": ("_seconds", 1e-6),
    "ms": ("_seconds", 1e-3),
    "s": ("_seconds", 1.0),
    "By": ("_bytes", 1.0),
}
OWNER_LABELS = ("pod", "namespace", "container", "cgroup")
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def prom_name(name: str, unit: str) -> str:
    """OTLP name + unit -> Prometheus base name (without _total, which the family adds)."""
    base = _INVALID.sub("_", name)
    suffix = UNITS.get(unit, ("", 1.0))[0]
    return base if not suffix or base.endswith(suffix) else base + suffix


def owner_labels(attributes: dict[str, str]) -> tuple[str, ...]:
    """The bounded owner labels of one series, in OWNER_LABELS order."""
    container = attributes.get("k8s.container.name") or attributes.get("container.id", "")[:12]
    return (
        attributes.get("k8s.pod.name") or attributes.get("k8s.pod.uid", ""),
        attributes.get("k8s.namespace.name", ""),
        container,
        attributes.get("cgroup.path", ""),
    )


_OWNER_KEYS = frozenset(
    {"cgroup.path", "container.id", "k8s.pod.uid", "k8s.pod.name", "k8s.namespace.name"}
    | {"k8s.container.name"}
)


@dataclass
class _Family:
    kind: PointKind
    scale: float
    description: str
    label_names: tuple[str, ...]
    # labels -> running value (float) or [bucket counts..., sum]; and when last updated
    values: dict[tuple[str, ...], float | list[float]] = field(default_factory=dict)
    bounds: list[float] = field(default_factory=list)
    seen: dict[tuple[str, ...], float] = field(default_factory=dict)


class PromExport(Collector):
    """Running totals of every series plus the agent's self-metrics, read at scrape time."""

    def __init__(
        self,
        probe_up: Callable[[], dict[str, bool]],
        folded: Callable[[], dict[str, int]],
        idle_expiry: float = 600.0,
    ) -> None:
        self._probe_up = probe_up
        self._folded = folded
        self.idle_expiry = idle_expiry
        self._families: dict[str, _Family] = {}
        self._lock = threading.Lock()

    def update(self, series: list[Series], now: float | None = None) -> None:
        """Add one collect's deltas (counters, histograms) and latest gauges."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for s in series:
                self._add(s, now)
            self._expire(now)

    def _add(self, s: Series, now: float) -> None:
        attributes = dict(s.attributes)
        extra = tuple(sorted(k for k in attributes if k not in _OWNER_KEYS))
        name = prom_name(s.name, s.unit)
        fam = self._families.get(name)
        if fam is None:
            scale = UNITS.get(s.unit, ("", 1.0))[1]
            names = OWNER_LABELS + tuple(_INVALID.sub("_", k) for k in extra)
            fam = self._families[name] = _Family(s.kind, scale, s.description, names)
        labels = owner_labels(attributes) + tuple(attributes[k] for k in extra)
        if len(labels) != len(fam.label_names) or s.kind is not fam.kind:
            return  # a probe changed a family's shape: keep the first one consistent
        fam.seen[labels] = now
        if isinstance(s.value, Log2Histogram):
            self._add_histogram(fam, labels, s.value)
        elif s.kind is PointKind.COUNTER:
            old = fam.values.get(labels, 0.0)
            assert isinstance(old, float)
            fam.values[labels] = old + s.value * fam.scale
        else:
            fam.values[labels] = s.value * fam.scale

    @staticmethod
    def _add_histogram(fam: _Family, labels: tuple[str, ...], h: Log2Histogram) -> None:
        # Every log2 bucket gets its own le (OTLP folds the top one into overflow).
        bounds = [(2 ** (i + 1) - 1) * fam.scale for i in range(len(h.counts))]
        if len(bounds) > len(fam.bounds):
            fam.bounds = bounds
        old = fam.values.get(labels)
        acc = old if isinstance(old, list) else [0.0]
        counts = acc[:-1]
        if len(counts) < len(h.counts):
            counts += [0.0] * (len(h.counts) - len(counts))
        for i, c in enumerate(h.counts):
            counts[i] += c
        fam.values[labels] = [*counts, acc[-1] + histogram_sum(h) * fam.scale]

    def _expire(self, now: float) -> None:
        for fam in self._families.values():
            for labels in [k for k, t in fam.seen.items() if now - t > self.idle_expiry]:
                del fam.seen[labels]
                fam.values.pop(labels, None)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "keiko_ebpf_probe_up", "1 if the probe is loaded and collecting.", labels=["probe"]
        )
        for probe, ok in sorted(self._probe_up().items()):
            up.add_metric([probe], 1.0 if ok else 0.0)
        yield up
        folded = CounterMetricFamily(
            "keiko_ebpf_folded_series",
            'Points folded into "other" by the cardinality bounds, by bounded label.',
            labels=["label"],
        )
        for label, n in sorted(self._folded().items()):
            folded.add_metric([label], float(n))
        yield folded
        with self._lock:
            yield from (self._metric(n, f) for n, f in sorted(self._families.items()))

    @staticmethod
    def _metric(name: str, fam: _Family) -> Metric:
        labels = list(fam.label_names)
        if fam.kind is PointKind.HISTOGRAM:
            hist = HistogramMetricFamily(name, fam.description, labels=labels)
            for key, acc in fam.values.items():
                assert isinstance(acc, list)
                counts, total, cum = acc[:-1], acc[-1], 0.0
                buckets = []
                for i, bound in enumerate(fam.bounds):  # the same le set for every series
                    cum += counts[i] if i < len(counts) else 0.0
                    buckets.append((floatToGoString(bound), cum))
                buckets.append(("+Inf", cum))
                hist.add_metric(list(key), buckets, total)
            return hist
        family: CounterMetricFamily | GaugeMetricFamily
        if fam.kind is PointKind.COUNTER:
            family = CounterMetricFamily(name, fam.description, labels=labels)
        else:
            family = GaugeMetricFamily(name, fam.description, labels=labels)
        for key, value in fam.values.items():
            assert isinstance(value, float)
            family.add_metric(list(key), value)
        return family
