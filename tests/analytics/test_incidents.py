"""analytics.incidents: anomalies grouped into incidents, and the incident stage end to end
on a real embedded store (metrics, spans and anomaly events appended as the OTLP receiver
and the anomaly stage would), checkpoint and restore."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette

from analytics.incidents.component import IncidentStage
from analytics.incidents.config import IncidentsConfig
from analytics.incidents.grouping import IncidentBook
from analytics.rca.fromstore import read_window
from analytics.rca.graph import CallGraph
from analytics.series import build
from keiko.cli import main
from keiko.components import Context
from keiko.config.load import validate
from keiko.records import Kind, NewRecord, Stream
from keiko.store import open_store
from keiko.telemetry import Telemetry

SPEC = yaml.safe_load((Path(__file__).parents[2] / "keiko/api/openapi.yaml").read_text())


def anomaly(aid: str, service: str, t: float, onset: float | None = None) -> dict[str, Any]:
    return {
        "id": aid,
        "series": f"m{{{service}}}",
        "service": service,
        "metric": "m",
        "time": t,
        "onset": t if onset is None else onset,
    }


def test_grouping_by_time_and_graph() -> None:
    graph = CallGraph([("front", "cart"), ("cart", "db"), ("batch", "queue")])
    book = IncidentBook(window=300, hops=2, max_open=10)
    first, new = book.add(anomaly("a1", "cart", 1000), graph) or (None, False)
    assert new and first is not None
    assert book.add(anomaly("a2", "front", 1010), graph) == (first, False)  # a neighbour
    queue, other = book.add(anomaly("a3", "queue", 1020), graph) or (None, False)
    assert other, "a service far away in the graph opens its own incident"
    _, late = book.add(anomaly("a4", "db", 1500), graph) or (None, False)
    assert late, "after the window a new incident opens"
    assert book.add(anomaly("a1", "cart", 1000), graph) is None  # a replay joins nothing
    assert first.services == ["cart", "front"] and first.symptom == "cart"
    assert book.due(1019, settle=20, reanalyse=60) == []
    assert first in book.due(1021, settle=20, reanalyse=60)
    restored = IncidentBook(300, 2, 10)
    restored.restore(book.snapshot())
    assert restored.open.keys() == book.open.keys()
    assert restored.add(anomaly("a2", "front", 1010), graph) is None
    closed = book.expire(1400)  # quiet for more than the window
    assert {i.id for i in closed} == {first.id, queue.id if queue else ""}
    assert len(book.open) == 1


NOW = time.time()
AT = NOW - 60  # the fault starts a minute before the test runs


@pytest.fixture(autouse=True)
def _now() -> None:
    """Times relative to when each test runs, not to when the suite imported this module
    (minutes earlier in a full run: the incident would be older than its window)."""
    global NOW, AT
    NOW = time.time()
    AT = NOW - 60


def metrics_records() -> list[NewRecord]:
    """Latency gauges every 5 s for 5 minutes: front and cart slow down at AT, db does not."""
    out = []
    for k in range(60):
        t = NOW - 300 + 5 * k
        slow = t >= AT
        for service, normal, fault in (
            ("front", 0.05, 0.30),
            ("cart", 0.02, 0.25),
            ("db", 0.01, 0.01),
        ):
            req, scope = build.request({"service.name": service})
            wobble = 0.001 * ((k * 7 + len(service)) % 5)
            build.gauge(
                scope, "http.server.latency", [({}, t, (fault if slow else normal) + wobble)]
            )
            build.gauge(scope, "process.cpu.utilization", [({}, t, 0.2 + wobble)])
            out.append(NewRecord(Kind.OTLP_METRICS, req.SerializeToString(), 2))
    return out


def trace_record(t: float, slow: bool, error: bool) -> NewRecord:
    """front (server) -> cart (server, client to db) -> db (server): cart's own time grows."""
    req = ExportTraceServiceRequest()
    trace = os.urandom(16)
    ids = {name: os.urandom(8) for name in ("front", "cart", "cart-db", "db")}
    start = int(t * 1e9)
    cart_self = 230_000_000 if slow else 10_000_000
    plan = [  # service, span, parent, kind, start offset, duration
        ("front", "front", b"", 2, 0, cart_self + 30_000_000),
        ("cart", "cart", "front", 2, 5_000_000, cart_self + 15_000_000),
        ("cart", "cart-db", "cart", 3, 5_000_000 + cart_self, 10_000_000),
        ("db", "db", "cart-db", 2, 6_000_000 + cart_self, 8_000_000),
    ]
    for service, name, parent, kind, offset, duration in plan:
        rs = req.resource_spans.add()
        rs.resource.attributes.extend(build.kvs({"service.name": service}))
        span = rs.scope_spans.add().spans.add()
        span.trace_id, span.span_id = trace, ids[name]
        span.parent_span_id = ids[parent] if parent else b""
        span.name, span.kind = name, kind
        span.start_time_unix_nano = start + offset
        span.end_time_unix_nano = start + offset + duration
        if error and name == "cart":
            span.status.code = 2
    return NewRecord(Kind.OTLP_TRACES, req.SerializeToString(), 4)


def anomaly_event(service: str, t: float) -> NewRecord:
    body = {
        "type": "anomaly",
        "id": f"anomaly-{service}-{t}",
        "series": f"http.server.latency{{{service}}}",
        "service": service,
        "metric": "http.server.latency",
        "time_unix_nano": int(t * 1e9),
        "onset_unix_nano": int(AT * 1e9),
        "score": 0.99,
        "value": 0.3,
    }
    return NewRecord(Kind.EVENT_JSON, json.dumps(body).encode(), 1)


async def incident_events(ctx: Context) -> list[dict[str, Any]]:
    records = await ctx.store.read(Stream.EVENTS, 1, 1000)
    events = [json.loads(r.payload) for r in records]
    return [e for e in events if e.get("type") == "incident"]


async def wait_for_incident(ctx: Context, timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await incident_events(ctx)
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError("no incident event")


def test_stage_ranks_the_slow_service_and_links_traces(tmp_path: Path) -> None:
    async def main() -> None:
        config = validate({"store": {"embedded": {"path": str(tmp_path)}}})
        store = open_store(config.store)
        await store.start()
        stage_config = IncidentsConfig(settle=0.5, fetch_timeout=0.1)
        try:
            ctx = Context(store, Telemetry(), config)
            await store.append(Stream.METRICS, metrics_records())
            traces = [
                trace_record(NOW - 300 + 3 * k, NOW - 300 + 3 * k >= AT, k % 10 == 0)
                for k in range(100)
            ]
            await store.append(Stream.TRACES, traces)
            stage = IncidentStage(stage_config, ctx)
            await stage.start()
            try:
                await store.append(
                    Stream.EVENTS, [anomaly_event("front", AT + 5), anomaly_event("cart", AT + 6)]
                )
                (incident,) = await wait_for_incident(ctx)
            finally:
                await stage.shutdown(time.monotonic() + 10)
            assert incident["status"] == "open" and incident["version"] == 1
            assert incident["services"] == ["front", "cart"]
            causes = incident["root_causes"]
            assert causes[0]["service"] == "cart", causes
            assert causes[0]["evidence"] and causes[0]["path"] == ["front", "cart"]
            assert "most likely cause: cart" in incident["summary"]
            cart = next(a for a in incident["anomalies"] if a["service"] == "cart")
            assert cart["exemplars"] and cart["exemplars"][0]["error"]  # failing traces first
            assert incident["window"]["spans"] == 400
            jsonschema.validate(incident, SPEC["components"]["schemas"]["Incident"])
            app = Starlette(routes=ctx.routes)  # the stage's API route, as keiko mounts it
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://keiko") as client:
                listed = (await client.get("/api/v1/incidents", params={"status": "open"})).json()
            assert [i["id"] for i in listed["incidents"]] == [incident["id"]]
            # A restart restores the open incident: the same anomalies join nothing new.
            again = IncidentStage(stage_config, ctx)
            await again.start()
            try:
                deadline = time.monotonic() + 15  # restoring takes a moment on a busy machine
                while not again.book.open and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                await asyncio.sleep(0.5)  # ... and then the replayed anomalies open nothing
                assert list(again.book.open) == [incident["id"]]
                assert again.stats.incidents["opened"] == 0
            finally:
                await again.shutdown(time.monotonic() + 10)
            assert len(await incident_events(ctx)) == 1
        finally:
            await store.shutdown()

    asyncio.run(main())


def test_export_case_then_rca_finds_the_slow_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`keiko export-case` writes a window of the store as a case directory (metrics decoded
    as the detectors see them, spans, call edges); `keiko rca` on it names cart."""
    data = tmp_path / "data"

    async def fill() -> None:
        config = validate({"store": {"embedded": {"path": str(data)}}})
        store = open_store(config.store)
        await store.start()
        try:
            await store.append(Stream.METRICS, metrics_records())
            await store.append(
                Stream.TRACES,
                [
                    trace_record(NOW - 300 + 3 * k, NOW - 300 + 3 * k >= AT, False)
                    for k in range(100)
                ],
            )
            await store.append(Stream.EVENTS, [anomaly_event("cart", AT + 6)])
        finally:
            await store.shutdown()

    asyncio.run(fill())
    config_file = tmp_path / "keiko.yaml"
    config_file.write_text(yaml.safe_dump({"store": {"embedded": {"path": str(data)}}}))
    case = tmp_path / "case"
    since = str(int(NOW - 3600))
    assert main(["export-case", "-c", str(config_file), "--since", since, "-o", str(case)]) == 0
    hint = capsys.readouterr().out
    assert f"keiko rca {case} --at {AT:.0f}" in hint  # the anomaly's onset
    assert {p.name for p in case.iterdir()} == {"metrics.csv", "spans.csv", "graph.csv"}
    assert main(["rca", str(case), "--at", f"{AT:.0f}", "--json"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert ranked[0]["service"] == "cart"
    missing = ["export-case", "-c", str(config_file), "--incident", "nosuch", "-o", str(case)]
    assert main(missing) == 2


def test_window_reads_are_bounded_and_keep_the_newest(tmp_path: Path) -> None:
    async def main() -> None:
        config = validate({"store": {"embedded": {"path": str(tmp_path)}}})
        store = open_store(config.store)
        await store.start()
        try:
            records = metrics_records()  # 60 steps x 3 services, 2 points each
            await store.append(Stream.METRICS, records)
            window = await read_window(store, NOW - 3600, time.time() + 60, 30, 1000)
            assert window.truncated == ["metrics"]
            newest = window.case.metrics["time"].min()
            assert newest >= NOW - 300 + 5 * 50  # the last 10 steps: the newest 30 records
            whole = await read_window(store, NOW - 3600, time.time() + 60, 1000, 1000)
            assert whole.truncated == [] and whole.series == 6
        finally:
            await store.shutdown()

    asyncio.run(main())
