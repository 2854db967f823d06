"""Bad input gets the right status and a clear message, is counted, stores nothing, and the
receiver keeps serving."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.sdk.trace.export import SpanExportResult
from otlp_clients import make_spans, raw_grpc
from otlp_harness import Running, run, running

from keiko.otlp_json import proto_to_json

LIMIT = 64 * 1024
PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}
REQUEST = encode_spans(make_spans())
GOOD = REQUEST.SerializeToString()
GOOD_JSON = json.dumps(proto_to_json(REQUEST)).encode()
# Big, yet compresses to almost nothing: a "zip bomb" against LIMIT.
BOMB = gzip.compress(b"\n\x00" * (4 * LIMIT))


def mangled_json() -> bytes:
    data = json.loads(GOOD_JSON)
    data["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] = {"not": "a string"}
    return json.dumps(data).encode()


def chunks(body: bytes, size: int = 16 * 1024):  # type: ignore[no-untyped-def]
    """A generator body: httpx sends it chunked, without Content-Length."""

    async def gen():  # type: ignore[no-untyped-def]
        for i in range(0, len(body), size):
            yield body[i : i + size]

    return gen()


# name -> (headers, body, expected status, expected reason label, words in the message)
HTTP_CASES = {
    "malformed protobuf": (PROTOBUF, b"\x0a\xff\xff\xff\xff\x0f", 400, "invalid", "protobuf"),
    "wrong content type": (
        {"content-type": "text/plain"},
        GOOD,
        415,
        "unsupported_media_type",
        "Content-Type",
    ),
    "no content type": ({}, GOOD, 415, "unsupported_media_type", "Content-Type"),
    "unknown encoding": (
        {**PROTOBUF, "content-encoding": "br"},
        GOOD,
        415,
        "unsupported_media_type",
        "Content-Encoding",
    ),
    "truncated gzip": (
        {**PROTOBUF, "content-encoding": "gzip"},
        gzip.compress(GOOD)[:-12],
        400,
        "invalid",
        "truncated gzip",
    ),
    "corrupt gzip": (
        {**PROTOBUF, "content-encoding": "gzip"},
        b"\x1f\x8b" + b"x" * 50,
        400,
        "invalid",
        "gzip",
    ),
    "gzip bomb": (
        {**PROTOBUF, "content-encoding": "gzip"},
        BOMB,
        400,
        "too_large",
        "max_request_bytes",
    ),
    "body over the limit": (PROTOBUF, b"\x00" * (LIMIT + 1), 400, "too_large", "max_request_bytes"),
    "invalid json": (JSON, b'{"resourceSpans": [', 400, "invalid", "invalid JSON"),
    "wrongly typed json": (JSON, mangled_json(), 400, "invalid", "name"),
    "json id not hex": (
        JSON,
        GOOD_JSON.replace(b'"traceId": "', b'"traceId": "zz', 1),
        400,
        "invalid",
        "hex",
    ),
    "json not an object": (JSON, b"[1, 2]", 400, "invalid", "object"),
}


async def good_request_still_works(rx: Running, client: httpx.AsyncClient) -> None:
    reply = await client.post(rx.http_url(), content=GOOD, headers=PROTOBUF)
    assert reply.status_code == 200
    assert len(await rx.records("traces")) == 1
    assert await raw_grpc(rx.grpc_target, "traces", GOOD) == b""
    assert len(await rx.records("traces")) == 2


@pytest.mark.parametrize("case", list(HTTP_CASES))
def test_http_bad_input(tmp_path: Path, case: str) -> None:
    headers, body, status, reason, words = HTTP_CASES[case]

    async def scenario() -> None:
        async with running(tmp_path, max_request_bytes=LIMIT) as rx, httpx.AsyncClient() as client:
            reply = await client.post(rx.http_url(), content=body, headers=headers)
            assert reply.status_code == status, reply.content
            if headers.get("content-type") == PROTOBUF["content-type"]:
                assert reply.headers["content-type"] == "application/x-protobuf"
                message = Status.FromString(reply.content).message
            else:  # JSON requests, and requests in no known encoding, get JSON
                assert reply.headers["content-type"] == "application/json"
                message = reply.json()["message"]
            assert words in message
            assert "connection" not in reply.headers  # the connection stays usable
            assert await rx.records("traces") == []
            assert trace_requests(rx, "http", reason) == 1
            await good_request_still_works(rx, client)

    run(scenario())


def test_http_body_over_the_limit_without_content_length(tmp_path: Path) -> None:
    """A chunked body is refused once it passes the limit; a little more is drained so that
    the client reads the answer and the connection stays usable."""

    async def scenario() -> None:
        async with running(tmp_path, max_request_bytes=LIMIT) as rx, httpx.AsyncClient() as client:
            body = chunks(b"\x00" * (LIMIT * 3 // 2))
            reply = await client.post(rx.http_url(), content=body, headers=PROTOBUF)
            assert reply.status_code == 400 and "connection" not in reply.headers
            assert "max_request_bytes" in Status.FromString(reply.content).message
            assert trace_requests(rx, "http", "too_large") == 1
            await good_request_still_works(rx, client)

    run(scenario())


def test_sdk_exporter_far_over_the_limit_gets_a_final_400(tmp_path: Path) -> None:
    """Far over the limit the body is not drained (the connection is closed after the
    answer); the SDK's HTTP exporter still reads the 400 and does not retry."""
    request = encode_spans(make_spans() * 2000)
    assert request.ByteSize() > 4 * LIMIT

    async def scenario() -> None:
        async with running(tmp_path, max_request_bytes=LIMIT) as rx:
            exp = HttpSpans(endpoint=rx.http_url(), timeout=10)
            result = await asyncio.to_thread(exp.export, make_spans() * 2000)
            await asyncio.to_thread(exp.shutdown)
            assert result == SpanExportResult.FAILURE
            assert trace_requests(rx, "http", "too_large") == 1  # not retried
            async with httpx.AsyncClient() as client:
                await good_request_still_works(rx, client)

    run(scenario())


def test_http_gzip_and_json_together(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as rx, httpx.AsyncClient() as client:
            reply = await client.post(
                rx.http_url(),
                content=gzip.compress(GOOD_JSON),
                headers={**JSON, "content-encoding": "gzip"},
            )
            assert reply.status_code == 200 and reply.json() == {}
            (record,) = await rx.records("traces")
            assert record.payload == GOOD

    run(scenario())


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/traces", 405),
        ("PUT", "/v1/logs", 405),
        ("POST", "/v1/spans", 404),
        ("POST", "/", 404),
        ("GET", "/metrics", 404),
    ],
)
def test_http_wrong_method_or_path(tmp_path: Path, method: str, path: str, status: int) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as rx, httpx.AsyncClient() as client:
            reply = await client.request(method, rx.http_url(path), content=GOOD, headers=PROTOBUF)
            assert reply.status_code == status
            assert reply.json()["message"]
            if status == 405:
                assert reply.headers["allow"] == "POST"
            await good_request_still_works(rx, client)

    run(scenario())


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"\x0a\xff\xff\xff\xff\x0f", "protobuf"),
        (b"\x0a\x05\x12\x03\x0a\x01", "protobuf"),  # truncated nested message
        (b"\x00" * (LIMIT + 1), "max_request_bytes"),
        (b"\x00" * (3 * LIMIT), "max_request_bytes"),  # far over ours, under grpc core's own limit
    ],
)
def test_grpc_bad_input(tmp_path: Path, body: bytes, words: str) -> None:
    async def scenario() -> None:
        async with running(tmp_path, max_request_bytes=LIMIT) as rx:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await raw_grpc(rx.grpc_target, "traces", body)
            # INVALID_ARGUMENT is final for exporters; RESOURCE_EXHAUSTED would be retried
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert words in (err.value.details() or "")
            assert await rx.records("traces") == []
            reason = "too_large" if words == "max_request_bytes" else "invalid"
            assert trace_requests(rx, "grpc", reason) == 1
            async with httpx.AsyncClient() as client:
                await good_request_still_works(rx, client)

    run(scenario())


def trace_requests(rx: Any, transport: str, outcome: str) -> float:
    """keiko_requests_total of the OTLP trace receiver for one transport and outcome."""
    return float(
        rx.metric(
            "keiko_requests_total",
            component="otlp",
            signal="traces",
            transport=transport,
            outcome=outcome,
        )
    )
