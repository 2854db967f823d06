"""The stage's state and per-fetch work without the store: decode trace requests, fold
the spans into span metrics and the service graph, merge eBPF edges, checkpoint parts.
The component (:mod:`analytics.spanmetrics.component`) runs it on the ``traces`` stream;
the benchmark runs it alone."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from analytics.spanmetrics.aggregate import SpanMetrics
from analytics.spanmetrics.config import SpanMetricsConfig
from analytics.spanmetrics.edges import EdgeTable
from analytics.spanmetrics.graph import ServiceGraph
from analytics.traces.spans import SpanBatch, decode_spans

# A Deployment's pod name: <workload>-<replicaset hash>-<5 chars>; a StatefulSet's: -<n>.
_POD_SUFFIX = re.compile(r"(-[a-z0-9]{6,10})?-[a-z0-9]{5}$|-\d+$")
OTHER = "other"  # the eBPF agent's folded client or server


def service_of_owner(owner: Mapping[str, Any]) -> str:
    """The service an eBPF edge's client owner is: its service.name or workload name when
    present, else its pod name without the ReplicaSet/StatefulSet suffix, else its
    container name; "" when none is known."""
    for key in ("service.name", "k8s.deployment.name", "k8s.statefulset.name"):
        value = owner.get(key)
        if isinstance(value, str) and value:
            return value
    pod = owner.get("k8s.pod.name")
    if isinstance(pod, str) and pod:
        return _POD_SUFFIX.sub("", pod) or pod
    container = owner.get("k8s.container.name")
    return container if isinstance(container, str) else ""


class SpanStage:
    """Span metrics and the service graph of one trace partition."""

    def __init__(self, config: SpanMetricsConfig) -> None:
        self.config = config
        g = config.graph
        self.metrics = SpanMetrics(config.buckets, config.max_series)
        self.edges = EdgeTable(g.buckets, g.max_edges, g.rate_window)
        self.graph = ServiceGraph(self.edges, g.wait, g.max_pending, g.root_client)
        self.skipped: Counter[str] = Counter()  # records not used, by reason

    def observe_payloads(
        self, payloads: Iterable[bytes], skipped: Counter[str] | None = None
    ) -> int:
        """Decode and fold in trace requests (undecodable ones counted in ``skipped``,
        by default ``self.skipped``); spans seen."""
        skipped = self.skipped if skipped is None else skipped
        batches = []
        for payload in payloads:
            try:
                batches.append(decode_spans(payload))
            except Exception:  # DecodeError is a plain Exception subclass under upb
                skipped["undecodable"] += 1
        batch = SpanBatch.concat(batches)
        self.observe(batch)
        return len(batch)

    def observe(self, batch: SpanBatch) -> None:
        """Fold in decoded spans."""
        self.metrics.observe(batch)
        if self.config.graph.enabled:
            self.graph.observe(batch)

    def observe_edges(self, payload: bytes) -> int:
        """One eBPF edges record (JSON); edges merged (ValueError when it is not JSON)."""
        body = json.loads(payload)
        t = int(body.get("time_unix_nano") or 0)
        merged = 0
        for edge in body.get("edges") or []:
            client = service_of_owner(edge.get("client") or {})
            server = edge.get("server") or {}
            address = str(server.get("address") or "")
            if not client or not address or address == OTHER:
                self.graph.stats.ebpf_unattributed += 1
                continue
            port = int(server.get("port") or 0)
            name = f"{address}:{port}" if port else address
            connects = int(edge.get("connects") or 0)
            self.graph.observe_tcp(client, name, connects, int(edge.get("failed") or 0), t)
            merged += 1
        self.graph.stats.ebpf_edges += merged
        return merged

    def evict(self) -> tuple[int, int]:
        """Drop idle series and edges (span time); how many of each."""
        newest = max(self.metrics.newest_ns, self.graph.newest_ns)
        if not newest:
            return 0, 0
        series = self.metrics.evict_idle(newest - int(self.config.idle_expiry * 1e9))
        edges = self.edges.evict_idle(newest - int(self.config.graph.edge_ttl * 1e9))
        if edges:
            self.graph.forget_edges()
        return series, edges

    def snapshot_parts(self) -> dict[str, bytes]:
        """Aggregates and edges (waiting spans are not kept: see graph.py)."""
        s = self.graph.stats
        meta = {
            "graph_newest_ns": self.graph.newest_ns,
            "pairs": s.pairs,
            "dropped": s.dropped,
            "virtual": s.virtual,
            "unpaired": [[side, svc, n] for (side, svc), n in s.unpaired.items()],
            "peers": [[c, p, sid] for (c, p), sid in self.graph.peers.items()],
        }
        return {
            "graph_meta": json.dumps(meta).encode(),
            "spanmetrics": self.metrics.snapshot(),
            "edges": self.edges.snapshot(),
        }

    def restore_parts(self, parts: dict[str, bytes]) -> str:
        """Rebuild from ``snapshot_parts``' output into fresh objects, then swap them in."""
        fresh = SpanStage(self.config)
        fresh.metrics.restore(parts["spanmetrics"])
        fresh.edges.restore(parts["edges"])
        meta = json.loads(parts["graph_meta"])
        g = fresh.graph
        g.newest_ns = int(meta["graph_newest_ns"])
        g.stats.pairs, g.stats.dropped = int(meta["pairs"]), int(meta["dropped"])
        g.stats.virtual = int(meta["virtual"])
        g.stats.unpaired.update({(str(a), str(b)): int(n) for a, b, n in meta["unpaired"]})
        g.peers = {(str(c), str(p)): int(sid) for c, p, sid in meta["peers"]}
        self.metrics, self.edges, self.graph = fresh.metrics, fresh.edges, fresh.graph
        return self.summary()

    def summary(self) -> str:
        """What the state holds."""
        return (
            f"{len(self.metrics)} span metric series, {len(self.edges)} edges, "
            f"{self.graph.pending} spans waiting"
        )
