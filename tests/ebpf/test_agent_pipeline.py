"""The agent's pipeline with a scripted probe (no BPF needed): folding beyond the bounds,
merged "other" series, the folded counter, TCP edges as JSON in the `edges` stream."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from agent_harness import running
from prometheus_client import generate_latest

from ebpf import component
from ebpf.points import Collected, MetricPoint, PointKind, TcpEdge
from keiko.records import Kind


class Scripted:
    """A probe that reports three cgroups and three remote endpoints every collect."""

    name, tracepoints = "scripted", ()

    def load(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def collect(self) -> Collected:
        points = [
            MetricPoint(
                "keiko.ebpf.tcp.connects",
                PointKind.COUNTER,
                1.0,
                cgroup_id=cg,
                labels={"remote": f"10.0.0.{cg}:443"},
                unit="1",
            )
            for cg in (900001, 900002, 900003)
        ]
        edges = [
            TcpEdge(900001, f"10.0.0.{i}", 443, connects=2, latency_us_total=50.0)
            for i in (1, 2, 3)
        ]
        return Collected(points, edges)


def test_bounds_fold_into_other_and_edges_are_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    probe = Scripted()
    monkeypatch.setattr(component, "build_probes", lambda enabled, maps: [probe])
    monkeypatch.setattr(component, "diagnose", lambda: [])
    bounds = {"max_cgroups": 2, "max_remote_endpoints": 2}

    async def scenario() -> None:
        async with running(tmp_path, cardinality=bounds) as r:
            for _ in range(30):
                if r.agent.collects:
                    break
                await asyncio.sleep(0.1)
            (req,) = (await r.metrics())[:1]
            (metric,) = req.resource_metrics[0].scope_metrics[0].metrics
            assert metric.sum.is_monotonic
            by_path = {
                next(
                    kv.value.string_value for kv in dp.attributes if kv.key == "cgroup.path"
                ): dp.as_int
                for dp in metric.sum.data_points
            }
            assert by_path == {"unknown:900001": 1, "unknown:900002": 1, "other": 1}
            (edges_rec,) = (await r.store.read("edges", 1, 10))[:1]
            assert edges_rec.kind == Kind.EDGES_JSON
            edges = json.loads(edges_rec.payload)["edges"]
            servers = sorted((e["server"]["address"], e["connects"]) for e in edges)
            assert servers == [("10.0.0.1", 2), ("10.0.0.2", 2), ("other", 2)]
            text = generate_latest(r.telemetry.registry).decode()
            assert 'keiko_ebpf_folded_series_total{label="cgroup"}' in text
            assert r.sample("keiko_ebpf_folded_series_total", label="cgroup") >= 1
            assert r.sample("keiko_ebpf_folded_series_total", label="remote") >= 1

    asyncio.run(scenario())
    assert probe.closed
