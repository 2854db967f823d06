"""The spanmetrics stage end to end on a real embedded store: the OpenTelemetry SDK's own
OTLP/gRPC span exporter sends traces of two services to keiko's receiver; the stage
writes span metrics to the `metrics` stream (decoded here by the anomaly stage's
MetricsDecoder), builds the service graph (a virtual database node, an eBPF-only edge
from the `edges` stream), serves GET /api/v1/servicegraph and Prometheus metrics, and
continues its cumulative counts after a restart from its checkpoint."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fixtures.keiko import HOST, free_port
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from analytics.series.decode import MetricsDecoder
from analytics.series.table import SeriesTable
from analytics.spanmetrics.component import SpanMetricsStage
from analytics.spanmetrics.config import SpanMetricsConfig
from analytics.spanmetrics.edges import EdgeView
from analytics.spanmetrics.otlp import CALLS, DURATION
from keiko.api.app import build_app
from keiko.api.spec import load_spec
from keiko.components import Context
from keiko.config.load import validate
from keiko.partitioning import split
from keiko.process import Keiko
from keiko.records import Kind, NewRecord, Record
from keiko.store import open_store
from keiko.telemetry import Telemetry

SEC = 10**9
MS = 10**6
STAGE = SpanMetricsConfig.model_validate(
    {
        "fetch_timeout": "50ms",
        "flush_interval": "100ms",
        "checkpoint": {"interval": "1h"},
        "graph": {"wait": "2s"},
    }
)


def config(data: Path, grpc_port: int) -> Any:
    return validate(
        {
            "store": {"embedded": {"path": str(data)}},
            "api": {"enabled": False},
            "receivers": {
                "otlp": {"grpc": {"endpoint": f"{HOST}:{grpc_port}"}, "http": {"enabled": False}}
            },
            "probes": {"ebpf": {"enabled": False}},
            "analytics": {"spanmetrics": {"enabled": False}, "anomaly": {"enabled": False}},
        }
    )


# -- the client: two SDK tracer providers, the SDK's OTLP/gRPC exporter ------------------------


class Shop:
    """frontend -> cart -> postgresql, traced by the OpenTelemetry SDK."""

    def __init__(self) -> None:
        self.memory = InMemorySpanExporter()
        self.tracers = {}
        for service in ("frontend", "cart"):
            provider = TracerProvider(resource=Resource.create({"service.name": service}))
            provider.add_span_processor(SimpleSpanProcessor(self.memory))
            self.tracers[service] = provider.get_tracer("tests.spanmetrics")

    def request(self, t_ns: int, fail: bool) -> None:
        """One trace: GET / at the frontend calls the cart (10.0.0.5), which queries a db."""
        front, cart = self.tracers["frontend"], self.tracers["cart"]
        root = front.start_span("GET /", kind=SpanKind.SERVER, start_time=t_ns)
        ctx = trace.set_span_in_context(root)
        client = front.start_span(
            "GET cart",
            context=ctx,
            kind=SpanKind.CLIENT,
            start_time=t_ns + 1 * MS,
            attributes={"server.address": "10.0.0.5", "http.request.method": "GET"},
        )
        server = cart.start_span(
            "GET /items",
            context=trace.set_span_in_context(client),
            kind=SpanKind.SERVER,
            start_time=t_ns + 2 * MS,
        )
        db = cart.start_span(
            "SELECT items",
            context=trace.set_span_in_context(server),
            kind=SpanKind.CLIENT,
            start_time=t_ns + 3 * MS,
            attributes={"db.system": "postgresql"},
        )
        db.end(end_time=t_ns + 6 * MS)
        if fail:
            server.set_status(Status(StatusCode.ERROR))
        server.end(end_time=t_ns + 25 * MS)  # 23 ms
        client.end(end_time=t_ns + 28 * MS)  # 27 ms
        root.end(end_time=t_ns + 30 * MS)

    def send(self, endpoint: str, start_ns: int, n: int, fail_every: int = 5) -> None:
        """``n`` traces 100 ms apart from ``start_ns``, in one export."""
        self.memory.clear()
        for i in range(n):
            self.request(start_ns + i * 100 * MS, fail=i % fail_every == 0)
        spans: list[ReadableSpan] = list(self.memory.get_finished_spans())
        exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=10)
        try:
            assert exporter.export(spans) == SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()


async def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def run_stage(
    data: Path,
    port: int,
    body: Callable[[Keiko, SpanMetricsStage], Any],
    stage_config: SpanMetricsConfig = STAGE,
) -> None:
    async with Keiko(config(data, port)) as keiko:
        assert keiko.ctx is not None
        stage = SpanMetricsStage(stage_config, keiko.ctx)
        await stage.start()
        try:
            await body(keiko, stage)
        finally:
            await stage.shutdown(time.monotonic() + 10)


async def decoded(keiko: Keiko, decoder: MetricsDecoder) -> dict[tuple[str, str, str], list[float]]:
    """Every span metric point of the metrics stream: (metric, service, span.name) -> values."""
    assert keiko.store is not None
    out: dict[tuple[str, str, str], list[float]] = {}
    for record in await keiko.store.read("metrics", 1, 1000):
        assert record.kind == Kind.OTLP_METRICS
        batch = decoder.decode(record.payload)
        for sid, v in zip(batch.series.tolist(), batch.values.tolist(), strict=True):
            info = decoder.table.info(sid)
            assert info is not None
            out.setdefault((info.metric, info.service, info.labels["span.name"]), []).append(v)
    return out


async def flushed_after(stage: SpanMetricsStage, spans: int) -> None:
    await wait_for(lambda: stage.stats.spans == spans)
    flushes = stage.stats.flushes
    await wait_for(
        lambda: stage.stats.flushes > flushes or stage.flushed_ns >= stage.state.metrics.newest_ns
    )


def test_span_metrics_graph_api_and_prometheus(tmp_path: Path) -> None:
    port = free_port()
    grpc = f"{HOST}:{port}"
    shop = Shop()
    t0 = time.time_ns() - 3600 * SEC

    async def body(keiko: Keiko, stage: SpanMetricsStage) -> None:
        assert keiko.store is not None and keiko.ctx is not None and keiko.api_state is not None
        await asyncio.to_thread(shop.send, grpc, t0, 10)
        await flushed_after(stage, 40)
        await asyncio.to_thread(shop.send, grpc, t0 + 10 * SEC, 10)  # the db spans expire
        await flushed_after(stage, 80)
        await keiko.store.append("traces", [NewRecord(Kind.OTLP_TRACES, b"\x0a\xff garbage")])
        edges = {
            "time_unix_nano": t0 + 11 * SEC,
            "start_time_unix_nano": t0 + 10 * SEC,
            "resource": {"host.name": "node-1"},
            "edges": [
                {  # the frontend's calls to the cart, also seen by eBPF
                    "client": {"k8s.pod.name": "frontend-6b8c7d9f5-q2w3e", "container.id": "c1"},
                    "server": {"address": "10.0.0.5", "port": 8080},
                    "connects": 10,
                    "failed": 0,
                    "latency_us_total": 900.0,
                },
                {  # a cache no span mentions
                    "client": {"k8s.pod.name": "cart-5f7c9d8b6-abcde", "container.id": "c2"},
                    "server": {"address": "10.0.0.9", "port": 6379},
                    "connects": 7,
                    "failed": 1,
                    "latency_us_total": 300.0,
                },
            ],
        }
        payload = json.dumps(edges).encode()
        await keiko.store.append("edges", [NewRecord(Kind.EDGES_JSON, payload, 2)])
        await wait_for(lambda: stage.stats.skipped_records["undecodable"] == 1)
        await wait_for(lambda: stage.state.graph.stats.ebpf_edges == 2)

        # span metrics in the metrics stream: rates and quantiles per operation
        points = await decoded(keiko, MetricsDecoder(SeriesTable(1000)))
        span_end = 30 * MS  # the root span of each trace ends last
        interval = (t0 + 10 * SEC + 900 * MS + span_end - (t0 + 900 * MS + span_end)) / SEC
        assert points[(CALLS, "frontend", "GET /")][-1] == pytest.approx(10 / interval)
        assert 0.02 < points[(f"{DURATION}:p99", "cart", "GET /items")][-1] <= 0.05
        metrics = {(v.service, v.name, v.status): v.calls for v in stage.state.metrics.series()}
        assert metrics[("cart", "GET /items", "STATUS_CODE_ERROR")] == 4  # 2 of 10, twice
        assert metrics[("cart", "GET /items", "STATUS_CODE_UNSET")] == 16

        # the service graph over the HTTP API, as documented
        app = build_app(keiko.api_state, keiko.ctx.routes)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://keiko") as client:
            response = await client.get("/api/v1/servicegraph")
            metrics_text = (await client.get("/metrics")).text
        assert response.status_code == 200
        spec = load_spec()
        schema = spec["paths"]["/api/v1/servicegraph"]["get"]["responses"]["200"]["content"]
        jsonschema.Draft202012Validator(
            {**schema["application/json"]["schema"], "components": spec["components"]}
        ).validate(response.json())
        graph = response.json()
        by_id = {e["id"]: e for e in graph["edges"]}
        assert by_id["frontend->cart"]["requests"] == 20
        assert by_id["frontend->cart"]["failed"] == 4
        assert by_id["frontend->cart"]["seen_by"] == ["spans", "ebpf"]
        assert by_id["user->frontend/virtual_node"]["requests"] == 20
        assert by_id["cart->postgresql/database"]["requests"] == 10  # the first 10 expired
        tcp = by_id["cart->10.0.0.9:6379/tcp"]
        assert (tcp["requests"], tcp["failed"], tcp["seen_by"]) == (7, 1, ["ebpf"])
        assert by_id["frontend->cart"]["mainStat"] > 0  # two flushes: a rate
        nodes = {n["id"] for n in graph["nodes"]}
        assert nodes == {"user", "frontend", "cart", "postgresql", "10.0.0.9:6379"}

        # Prometheus, read at scrape time
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics_text)
            for s in family.samples
        }
        edge = (("client", "frontend"), ("connection_type", ""), ("server", "cart"))
        assert samples[("traces_service_graph_request_total", edge)] == 20
        assert samples[("traces_service_graph_request_failed_total", edge)] == 4
        assert samples[("traces_service_graph_request_server_seconds_count", edge)] == 20
        assert samples[("traces_service_graph_request_client_seconds_sum", edge)] == pytest.approx(
            20 * 0.027
        )
        calls = (
            ("service", "frontend"),
            ("span_kind", "SPAN_KIND_SERVER"),
            ("span_name", "GET /"),
            ("status_code", "STATUS_CODE_UNSET"),
        )
        assert samples[("traces_span_metrics_calls_total", calls)] == 20
        assert samples[("keiko_spanmetrics_spans_total", ())] == 80
        assert (
            samples[("keiko_spanmetrics_skipped_records_total", (("reason", "undecodable"),))] == 1
        )

    asyncio.run(run_stage(tmp_path / "data", port, body))


def test_restart_continues_cumulative_counts(tmp_path: Path) -> None:
    port = free_port()
    grpc = f"{HOST}:{port}"
    shop = Shop()
    t0 = time.time_ns() - 3600 * SEC
    decoder = MetricsDecoder(SeriesTable(1000))
    seen: dict[str, Any] = {}

    async def one(keiko: Keiko, stage: SpanMetricsStage) -> None:
        await asyncio.to_thread(shop.send, grpc, t0, 10)
        await flushed_after(stage, 40)
        seen["first"] = await decoded(keiko, decoder)
        seen["edges"] = {(e.client, e.server): e.requests for e in stage.state.edges.views()}

    async def two(keiko: Keiko, stage: SpanMetricsStage) -> None:
        await wait_for(lambda: len(stage.state.metrics) == 5)  # restored
        assert {(e.client, e.server): e.requests for e in stage.state.edges.views()} == seen[
            "edges"
        ]
        await asyncio.to_thread(shop.send, grpc, t0 + 10 * SEC, 10)
        await flushed_after(stage, 40)
        assert stage.stats.skipped_records["replayed"] == 0
        calls = {(v.service, v.name): v.calls for v in stage.state.metrics.series()}
        assert calls[("frontend", "GET /")] == 20  # continued, not restarted
        seen["all"] = await decoded(keiko, decoder)  # the same decoder: across the restart

    asyncio.run(run_stage(tmp_path / "data", port, one))
    asyncio.run(run_stage(tmp_path / "data", port, two))
    assert (CALLS, "frontend", "GET /") not in seen["first"]  # one point: the baseline
    (rate,) = seen["all"][(CALLS, "frontend", "GET /")]
    assert rate == pytest.approx(10 / 10.0)
    assert decoder.skipped["counter_reset_unknown_start"] == 0


def test_reload_takes_the_live_keys(tmp_path: Path) -> None:
    async def body(keiko: Keiko, stage: SpanMetricsStage) -> None:
        raw = {"flush_interval": "3s", "max_series": 7, "graph": {"wait": "30s", "edge_ttl": "1m"}}
        new = config(tmp_path / "data", 1)
        new.analytics["spanmetrics"] = SpanMetricsConfig.model_validate(raw)
        for reload in keiko.ctx.reloaders if keiko.ctx else []:
            reload(new)
        assert stage.config.flush_interval == 3 and stage.config.graph.edge_ttl == 60
        assert stage.state.graph.wait_ns == 30 * SEC and stage.state.config is stage.config
        assert stage.config.max_series == STAGE.max_series  # needs a restart

    asyncio.run(run_stage(tmp_path / "data", free_port(), body))


def test_an_edges_offset_beyond_a_recreated_stream_is_reset(tmp_path: Path) -> None:
    async def body(keiko: Keiko, stage: SpanMetricsStage) -> None:
        assert keiko.store is not None
        stage.stats.edges_offset = 1000  # as restored from a checkpoint of an older stream
        edge = {
            "client": {"k8s.pod.name": "cart-5f7c9d8b6-abcde"},
            "server": {"address": "10.0.0.9", "port": 6379},
            "connects": 3,
            "failed": 0,
        }
        body_ = {"time_unix_nano": time.time_ns(), "edges": [edge]}
        payload = json.dumps(body_).encode()
        await keiko.store.append("edges", [NewRecord(Kind.EDGES_JSON, payload, 1)])
        await wait_for(lambda: stage.state.graph.stats.ebpf_edges == 1)
        assert stage.stats.edges_offset == 1
        (view,) = stage.state.edges.views()
        assert (view.client, view.server, view.requests) == ("cart", "10.0.0.9:6379", 3)

    fast = STAGE.model_copy(
        update={"checkpoint": STAGE.checkpoint.model_copy(update={"interval": 0.1})}
    )
    asyncio.run(run_stage(tmp_path / "data", free_port(), body, fast))


def test_trace_partitions_share_the_service_graph(tmp_path: Path) -> None:
    """Two workers of different trace partitions each count their share of 20 traces;
    after a flush each has published its edges and either serves the whole graph."""
    shop = Shop()
    t0 = time.time_ns()
    for i in range(20):
        shop.request(t0 + i * 100 * MS, fail=i % 5 == 0)
    body = encode_spans(list(shop.memory.get_finished_spans())).SerializeToString()

    async def main() -> None:
        store_config = {"embedded": {"path": str(tmp_path / "data")}, "nats": {"partitions": 2}}
        cfg = validate({"store": store_config})
        store = open_store(cfg.store)
        await store.start()
        try:
            workers = [SpanMetricsStage(STAGE, Context(store, Telemetry(), cfg)) for _ in (0, 1)]
            for p, w in enumerate(workers):
                w.partition = p
            for p, piece in split(NewRecord(Kind.OTLP_TRACES, body, 80), 2):
                workers[p].process([Record(1, t0, piece.kind, piece.payload, piece.count)])
            for _ in range(2):  # the first flush of worker 0 comes before worker 1 published
                for w in workers:
                    w._next_flush = 0.0
                    await w.tick()
            own = [_calls(w.edges_own()) for w in workers]
            assert own[0] > 0 and own[1] > 0 and own[0] + own[1] == 20  # each saw a share
            assert _calls(workers[0].edges()) == _calls(workers[1].edges()) == 20
            failed = {e.failed for e in workers[1].edges() if e.server == "cart"}
            assert failed == {4}  # every 5th of 20 failed, summed over the partitions
        finally:
            await store.shutdown()

    asyncio.run(main())


def _calls(edges: list[EdgeView]) -> int:
    """Requests on the frontend -> cart edge."""
    return sum(e.requests for e in edges if (e.client, e.server) == ("frontend", "cart"))
