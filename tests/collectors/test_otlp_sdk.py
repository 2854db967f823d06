"""The OpenTelemetry SDK's own exporters send to the receivers; everything lands in the store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf.message import Message
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.metrics.export import MetricExportResult
from opentelemetry.sdk.trace.export import SpanExportResult
from otlp_clients import (
    LOG_SPAN_ID,
    LOG_TRACE_ID,
    Signal,
    Transport,
    attrs,
    exporter,
    make,
    make_logs,
    make_spans,
    value,
)
from otlp_harness import Running, run, running

from keiko.otlp_json import proto_to_json
from keiko.records import Kind

SIGNALS: list[Signal] = ["traces", "metrics", "logs"]


async def export(rx: Running, transport: Transport, signal: Signal, **kwargs: Any) -> Any:
    """Send SDK data with the SDK exporter (in a thread: the exporters block)."""
    data = make(signal)
    exp = exporter(rx, transport, signal, **kwargs)
    try:
        return await asyncio.to_thread(exp.export, data)
    finally:
        await asyncio.to_thread(exp.shutdown)


def spans_by_name(requests: list[Message]) -> dict[str, Any]:
    return {
        span.name: (rs, span)
        for req in requests
        for rs in req.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    }


def check_traces(requests: list[Message]) -> None:
    found = spans_by_name(requests)
    assert set(found) == {"GET /cart", "SELECT carts"}
    resource, server = found["GET /cart"]
    _, db = found["SELECT carts"]
    assert attrs(resource.resource.attributes)["service.name"] == "checkout"
    assert attrs(server.attributes) == {
        "http.request.method": "GET",
        "http.response.status_code": 200,
    }
    assert attrs(db.attributes) == {
        "db.system": "postgresql",
        "db.rows": 3,
        "cache.hit_ratio": 0.25,
        "retry": False,
        "tags": ("a", "b"),
    }
    assert db.trace_id == server.trace_id and len(db.trace_id) == 16
    assert db.parent_span_id == server.span_id
    assert server.kind == 2 and db.kind == 3  # SERVER, CLIENT


def check_metrics(requests: list[Message]) -> None:
    metrics = {
        m.name: m
        for req in requests
        for rm in req.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert set(metrics) == {"orders", "latency_ms", "queue_depth"}
    (orders,) = metrics["orders"].sum.data_points
    assert orders.as_int == 3 and attrs(orders.attributes) == {"region": "eu"}
    (latency,) = metrics["latency_ms"].histogram.data_points
    assert latency.count == 2 and latency.sum == 52.5
    assert attrs(latency.attributes) == {"route": "/cart"}
    assert metrics["latency_ms"].unit == "ms"
    (depth,) = metrics["queue_depth"].gauge.data_points
    assert depth.as_int == 7 and attrs(depth.attributes) == {"queue": "emails"}


def check_logs(requests: list[Message]) -> None:
    records = [
        lr
        for req in requests
        for rl in req.resource_logs
        for sl in rl.scope_logs
        for lr in sl.log_records
    ]
    by_body = {value(lr.body): lr for lr in records}
    assert set(by_body) == {"payment declined", "payment retried"}
    declined = by_body["payment declined"]
    assert declined.severity_number == 13 and declined.severity_text == "WARN"
    assert attrs(declined.attributes) == {"order.id": "o-17", "amount": 12.5}
    assert declined.trace_id == LOG_TRACE_ID.to_bytes(16, "big")
    assert declined.span_id == LOG_SPAN_ID.to_bytes(8, "big")
    assert attrs(by_body["payment retried"].attributes) == {"order.id": "o-17", "attempt": 2}


CHECKS = {"traces": check_traces, "metrics": check_metrics, "logs": check_logs}
ITEMS = {"traces": 2, "metrics": 3, "logs": 2}
KINDS = {"traces": Kind.OTLP_TRACES, "metrics": Kind.OTLP_METRICS, "logs": Kind.OTLP_LOGS}


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_exporters_store_every_signal(tmp_path: Path, transport: Transport, gzip: bool) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as rx:
            for signal in SIGNALS:
                result = await export(rx, transport, signal, gzip=gzip)
                assert result.name == "SUCCESS", signal
            for signal in SIGNALS:
                records = await rx.records(signal)
                assert len(records) == 1
                assert records[0].kind == KINDS[signal]
                assert records[0].count == ITEMS[signal]
                CHECKS[signal](await rx.requests(signal))
                labels = {"component": "otlp", "signal": signal, "transport": transport}
                assert rx.metric("keiko_accepted_items_total", **labels) == ITEMS[signal]
                assert rx.metric("keiko_received_items_total", **labels) == ITEMS[signal]
                assert rx.metric("keiko_requests_total", **labels, outcome="ok") == 1
                assert rx.metric("keiko_request_bytes_total", **labels) > 0

    run(scenario())


def test_json_body_is_stored_as_the_same_protobuf(tmp_path: Path) -> None:
    """OTLP/JSON (hex ids, integer enums) is converted to protobuf before it is stored."""
    spans_request = encode_spans(make_spans())
    logs_request = encode_logs(make_logs())

    async def scenario() -> None:
        async with running(tmp_path) as rx, httpx.AsyncClient() as client:
            for signal, request in (("traces", spans_request), ("logs", logs_request)):
                body = json.dumps(proto_to_json(request))
                assert '"traceId": "' in body  # camelCase keys and hex ids: OTLP/JSON
                reply = await client.post(
                    rx.http_url(f"/v1/{signal}"),
                    content=body,
                    headers={"content-type": "application/json"},
                )
                assert reply.status_code == 200
                assert reply.headers["content-type"] == "application/json"
                assert reply.json() == {}
                (stored,) = await rx.requests(signal)
                assert stored == request
            check_traces(await rx.requests("traces"))
            check_logs(await rx.requests("logs"))
            assert (
                rx.metric(
                    "keiko_accepted_items_total", component="otlp", signal="logs", transport="http"
                )
                == 2
            )

    run(scenario())


def test_many_batches_from_concurrent_exporters(tmp_path: Path) -> None:
    """Exporters on both transports at once: each batch is one record, none is lost."""

    async def scenario() -> None:
        async with running(tmp_path) as rx:
            results = await asyncio.gather(
                *(export(rx, transport, "traces") for transport in ("grpc", "http") * 5)
            )
            assert all(r == SpanExportResult.SUCCESS for r in results)
            records = await rx.records("traces")
            assert len(records) == 10 and sum(r.count for r in records) == 20
            metrics = await export(rx, "grpc", "metrics")
            assert metrics == MetricExportResult.SUCCESS

    run(scenario())
