"""Fuzzing the decode path (hypothesis, bounded): random and mutated requests only ever give
InvalidInput (or are accepted), and never crash the receiver."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from otlp_clients import make_logs, make_metrics, make_spans, raw_grpc
from otlp_harness import run, running, store_config

from collectors.otlp.http_body import gunzip
from collectors.otlp.http_server import OtlpHttpApp
from collectors.otlp.ingest import Ingest
from collectors.otlp.signals import LOGS, METRICS, SIGNALS, TRACES, Signal
from keiko.errors import InvalidInput
from keiko.otlp_json import json_to_proto, proto_to_json
from keiko.security import TokenCheck
from keiko.store import open_store
from keiko.telemetry import Telemetry

FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LIMIT = 256 * 1024
VALID = {
    TRACES.name: encode_spans(make_spans()),
    METRICS.name: encode_metrics(make_metrics()),
    LOGS.name: encode_logs(make_logs()),
}
VALID_BYTES = {name: message.SerializeToString() for name, message in VALID.items()}
VALID_JSON = {name: json.dumps(proto_to_json(message)) for name, message in VALID.items()}


@st.composite
def mutated(draw: Any, original: bytes) -> bytes:
    """``original`` with a few random byte flips, insertions, deletions or a truncation."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated_json(draw: Any, original: str) -> bytes:
    """A valid OTLP/JSON document with one value somewhere replaced by random JSON."""
    data = json.loads(original)
    node: Any = data
    for _ in range(draw(st.integers(0, 8))):
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        children = [(k, v) for k, v in children if isinstance(v, dict | list) and v]
        if not children:
            break
        _, node = draw(st.sampled_from(children))
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    if keys:
        node[draw(st.sampled_from(keys))] = draw(JSON_VALUES)
    return json.dumps(data).encode()


def decode_or_invalid(ingest: Ingest, body: bytes) -> None:
    try:
        count = ingest.decode(body)
    except InvalidInput:
        return
    assert 0 <= count.rejected <= count.items


@pytest.mark.parametrize("signal", SIGNALS, ids=lambda s: s.name)
def test_protobuf_decode_fuzz(signal: Signal) -> None:
    ingest = Ingest(signal, None, Telemetry(), LIMIT)  # type: ignore[arg-type]

    @FUZZ
    @given(st.binary(max_size=2048) | mutated(VALID_BYTES[signal.name]))
    def check(body: bytes) -> None:
        decode_or_invalid(ingest, body)

    check()


@pytest.mark.parametrize("signal", SIGNALS, ids=lambda s: s.name)
def test_json_decode_fuzz(signal: Signal) -> None:
    @FUZZ
    @given(
        st.binary(max_size=512)
        | mutated(VALID_JSON[signal.name].encode())
        | mutated_json(VALID_JSON[signal.name])
        | JSON_VALUES.map(json.dumps).map(str.encode)
    )
    def check(body: bytes) -> None:
        with contextlib.suppress(InvalidInput):
            signal.request.FromString(json_to_proto(signal.request, body))

    check()


def test_gzip_fuzz() -> None:
    packed = gzip.compress(VALID_BYTES["traces"])

    @FUZZ
    @given(st.binary(max_size=512) | mutated(packed))
    def check(body: bytes) -> None:
        with contextlib.suppress(InvalidInput):  # TooLarge is an InvalidInput too
            assert len(gunzip(body, LIMIT)) <= LIMIT

    check()


async def call_app(
    app: OtlpHttpApp, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> int:
    """One request through the ASGI app (uvicorn's part left out: it is not under test)."""
    sent: list[dict[str, Any]] = []
    pieces = [body[i : i + 4096] for i in range(0, len(body), 4096)] or [b""]

    async def receive() -> dict[str, Any]:
        chunk = pieces.pop(0) if pieces else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(pieces)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    await app(scope, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    return int(sent[0]["status"])


def test_http_app_fuzz(tmp_path: Path) -> None:
    """Random headers and bodies through the whole HTTP path, the real store behind it."""
    loop = asyncio.new_event_loop()
    store = open_store(store_config(tmp_path / "fuzz"))
    loop.run_until_complete(store.start())
    telemetry = Telemetry()
    app = OtlpHttpApp(
        [Ingest(s, store, telemetry, LIMIT) for s in SIGNALS], TokenCheck(None), LIMIT
    )
    # mostly supported media types, so that most examples reach the decoders
    content_types = st.sampled_from(
        [
            b"application/x-protobuf",
            b"application/x-protobuf",
            b"application/json",
            b"application/json; charset=utf-8",
            b"text/plain",
        ]
    )
    encodings = st.sampled_from([b"", b"", b"gzip", b"gzip", b"identity", b"deflate"])

    @FUZZ
    @given(
        path=st.sampled_from([s.http_path for s in SIGNALS]),
        content_type=content_types,
        encoding=encodings,
        body=st.binary(max_size=1024)
        | mutated(VALID_BYTES["traces"])
        | mutated(VALID_JSON["logs"].encode()),
        zip_it=st.integers(0, 9),
    )
    def check(path: str, content_type: bytes, encoding: bytes, body: bytes, zip_it: int) -> None:
        if encoding == b"gzip" and zip_it:  # and once in ten, gzip in name only
            body = gzip.compress(body)
        headers = [(b"content-type", content_type), (b"content-encoding", encoding)]
        status = loop.run_until_complete(call_app(app, path, headers, body))
        assert status in (200, 400, 415)

    try:
        check()
        assert (
            telemetry.registry.get_sample_value(
                "keiko_requests_total",
                {
                    "component": "otlp",
                    "signal": "traces",
                    "transport": "http",
                    "outcome": "internal",
                },
            )
            is None
        )
    finally:
        loop.run_until_complete(store.shutdown(time.monotonic() + 5))
        loop.close()


JUNK = (
    b"\x00" * 100,
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 64,
)


def test_server_survives_garbage_then_serves(tmp_path: Path) -> None:
    """Raw garbage on both sockets (not even HTTP or HTTP/2), then a good request works."""

    async def scenario() -> None:
        async with running(tmp_path) as rx:
            for port in (rx.component.grpc.port, rx.component.http.port):  # type: ignore[union-attr]
                for junk in JUNK:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.write(junk)
                    await writer.drain()
                    await asyncio.wait_for(reader.read(4096), 5)
                    writer.close()
            assert await raw_grpc(rx.grpc_target, "traces", VALID_BYTES["traces"]) == b""
            assert len(await rx.records("traces")) == 1

    run(scenario())
