"""Scale-out on a real 3-node JetStream cluster (three nats-servers clustered on loopback,
streams and KV with 3 replicas, 4 partitions): two `keiko agent`, two `keiko analyze` and
two `keiko alert` processes. The OTel SDK's metric exporter sends 12 services' latency
gauges through both agents; three of them spike. In the middle of the stream one NATS
node and one analyzer are killed (SIGKILL). Then:

- every point an agent acknowledged is in the store (read back from the cluster);
- the surviving analyzer took the dead one's partitions over with their detector state;
- each spike is one anomaly event, and no other series has one;
- each spike is one notification at the webhook, delivered exactly once.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fixtures.keiko import KeikoFactory, KeikoProcess
from fixtures.nats import NATS_SERVER, NatsServer
from fixtures.receiver import Receiver
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from keiko.config.load import validate
from keiko.records import Kind, Stream
from keiko.store import open_store

SERVICES = [f"svc{i}" for i in range(12)]
SPIKED = {"svc1", "svc6", "svc10"}
STEP = 10.0
POINTS = 222  # 200 baseline, 2 spike points, 20 after
SPIKE_AT = 200
PER_REQUEST = 25
PREFIX = "SCALE"

pytestmark = pytest.mark.skipif(
    not Path(NATS_SERVER).exists(), reason="nats-server is not installed (Debian nats-server)"
)


def series(service: str, start: float) -> list[tuple[float, float]]:
    # Bounded (uniform) noise: the detector leaves it alone (`keiko detect` scores every
    # point of these series below 0.7), so the spikes are the only anomalies.
    rng = np.random.default_rng(SERVICES.index(service))
    values = list(10 + rng.uniform(-0.5, 0.5, POINTS))
    if service in SPIKED:
        values[SPIKE_AT : SPIKE_AT + 2] = [100.0, 100.0]
    return [(start + i * STEP, float(v)) for i, v in enumerate(values)]


def request(points: dict[str, list[tuple[float, float]]]) -> MetricsData:
    scope = InstrumentationScope("tests.scale_out")
    resources = []
    for service, pts in points.items():
        dps = [NumberDataPoint({"route": "/r"}, 0, round(t * 1e9), v) for t, v in pts]
        metric = Metric("latency", "request latency", "ms", Gauge(dps))
        resource = Resource.create({"service.name": service})
        resources.append(ResourceMetrics(resource, [ScopeMetrics(scope, [metric], "")], ""))
    return MetricsData(resources)


def send(agent: KeikoProcess, data: MetricsData, deadline: float) -> None:
    """Export until acknowledged: a refused request (a NATS node just died) is sent again,
    as a real exporter would."""
    while True:
        exporter = OTLPMetricExporter(endpoint=agent.otlp_grpc, insecure=True, timeout=10)
        try:
            if exporter.export(data) == MetricExportResult.SUCCESS:
                return
        finally:
            exporter.shutdown()
        assert time.monotonic() < deadline, f"{agent.dir.name} never acknowledged a request"
        time.sleep(0.5)


def cluster(tmp_path: Path) -> list[NatsServer]:
    nodes = [
        NatsServer(tmp_path / f"nats{i}", name=f"n{i}", cluster_name="keiko-test") for i in range(3)
    ]
    for node in nodes:
        node.routes = [other.cluster_url for other in nodes if other is not node]
    for node in nodes:
        node.start()
    for node in nodes:
        node.wait_healthy(30)
    return nodes


def keiko_config(nodes: list[NatsServer], hook: Receiver) -> dict[str, Any]:
    return {
        "store": {
            "backend": "nats",
            "nats": {
                "servers": [n.url for n in nodes],
                "stream_prefix": PREFIX,
                "replicas": 3,
                "partitions": 4,
                "partition_lease": "5s",
            },
            "retention": {"max_bytes": "64MiB"},
        },
        "probes": {"ebpf": {"enabled": False}},
        "analytics": {
            "anomaly": {"fetch_timeout": "100ms", "checkpoint": {"interval": "2s"}},
            "spanmetrics": {"enabled": False},
            "scaling": {"enabled": False},
        },
        "alerting": {
            "router": {
                "route": {
                    "receiver": "hook",
                    "group_by": ["series"],
                    "group_wait": "1s",
                    "group_interval": "1s",
                    "repeat_interval": "1h",
                },
                "receivers": [{"name": "hook", "webhook_configs": [{"url": hook.url}]}],
                "sources": {"anomalies": True, "incidents": False},
            }
        },
    }


def stored_points(nodes: list[NatsServer]) -> tuple[set[tuple[str, int]], list[dict[str, Any]]]:
    """(service, time) of every point in the metrics stream, and every anomaly event."""

    async def read() -> tuple[set[tuple[str, int]], list[dict[str, Any]]]:
        live = [n.url for n in nodes if n.process is not None]
        nats = {"servers": live, "stream_prefix": PREFIX, "replicas": 3, "partitions": 4}
        retention = {"max_bytes": "64MiB"}
        config = validate({"store": {"backend": "nats", "nats": nats, "retention": retention}})
        store = open_store(config.store)
        await store.start()
        try:
            points: set[tuple[str, int]] = set()
            for record in await read_all(store, Stream.METRICS):
                if record.kind != Kind.OTLP_METRICS:
                    continue
                req = ExportMetricsServiceRequest.FromString(record.payload)
                for rm in req.resource_metrics:
                    attrs = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
                    for sm in rm.scope_metrics:
                        for m in sm.metrics:
                            for dp in m.gauge.data_points:
                                points.add((attrs["service.name"], dp.time_unix_nano))
            events = [
                json.loads(r.payload)
                for r in await read_all(store, Stream.EVENTS)
                if r.kind == Kind.EVENT_JSON
            ]
            return points, [e for e in events if e.get("type") == "anomaly"]
        finally:
            await store.shutdown()

    async def read_all(store: Any, stream: str) -> list[Any]:
        out, start = [], 1
        while batch := await store.read(stream, start, 500):
            out += batch
            start = batch[-1].offset + 1
        return out

    return asyncio.run(read())


def until(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout}s"
        time.sleep(0.2)


def families(kp: KeikoProcess) -> str:
    return httpx.get(f"{kp.api_url}/metrics", timeout=10).text


def test_kill_a_nats_node_and_an_analyzer_mid_stream(
    keiko_process: KeikoFactory, tmp_path: Path
) -> None:
    nodes = cluster(tmp_path)
    try:
        with Receiver() as hook:
            config = keiko_config(nodes, hook)
            procs: dict[str, KeikoProcess] = {}
            for name in ("alert0", "alert1", "analyze0", "analyze1", "agent0", "agent1"):
                kp = keiko_process(config, start=False, name=name)
                kp.command = name[:-1]
                procs[name] = kp.start(timeout=60)
            analyzers = [procs["analyze0"], procs["analyze1"]]
            agents = [procs["agent0"], procs["agent1"]]
            start = time.time() - POINTS * STEP - 60  # the spikes are ~4 minutes old
            data = {s: series(s, start) for s in SERVICES}
            deadline = time.monotonic() + 120
            for n, i in enumerate(range(0, POINTS, PER_REQUEST)):
                if n == 4:  # mid-stream, once it checkpointed: a NATS node and an analyzer die
                    until(lambda: "]: checkpoint saved" in analyzers[0].log_text(), 20)
                    nodes[0].kill()
                    analyzers[0].kill()
                for a, agent in enumerate(agents):
                    mine = {s: data[s][i : i + PER_REQUEST] for s in SERVICES[a::2]}
                    send(agent, request(mine), deadline)
            survivor = analyzers[1]
            wait = time.monotonic() + 90
            while True:
                text = families(survivor)
                held = {
                    line.split('partition="')[1].split('"')[0]
                    for line in text.splitlines()
                    if line.startswith("keiko_anomaly_records_total{")
                }
                if len(held) == 4:
                    break
                assert time.monotonic() < wait, f"the survivor holds only partitions {held}"
                time.sleep(1)
            # The dead one's detector state moved with its partitions.
            restored = re.compile(r"anomaly\[p\d\]: restored \d+ series from the checkpoint")
            until(lambda: restored.search(survivor.log_text()) is not None, 30)
            # One notification per spike, each exactly once.
            got = hook.wait(len(SPIKED), timeout=90)
            time.sleep(8)  # anything duplicated would come within a few group intervals
            notified = [
                alert["labels"]["service"]
                for _, doc in hook.posts
                for alert in doc["alerts"]
                if alert["status"] == "firing"
            ]
            assert sorted(notified) == sorted(SPIKED), got
            assert len(hook.posts) == len(SPIKED)
        # Nothing acknowledged was lost; each spike was found once, nothing else was.
        points, anomalies = stored_points(nodes)
        sent = {(s, round(t * 1e9)) for s in SERVICES for t, _ in data[s]}
        assert sent <= points, f"{len(sent - points)} acknowledged points are not stored"
        assert sorted(e["service"] for e in anomalies) == sorted(SPIKED)
        for e in anomalies:
            assert e["time_unix_nano"] == round(data[e["service"]][SPIKE_AT][0] * 1e9)
    finally:
        for node in nodes:
            node.stop()
