"""TLS, mutual TLS and bearer tokens on both transports, with the SDK exporters as clients."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from fixtures.certs import Certs, make_certs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from otlp_clients import Signal, Transport, exporter, make, make_spans, raw_grpc
from otlp_harness import Running, run, running

GOOD = encode_spans(make_spans()).SerializeToString()
PROTOBUF = {"content-type": "application/x-protobuf"}


@pytest.fixture(autouse=True)
def _no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets these variables override a session's own CA file (requests#3829), which
    # would make the HTTP exporter ignore its certificate_file
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def tls(certs: Certs, mutual: bool) -> dict[str, Any]:
    block: dict[str, Any] = {"cert_file": str(certs.server_cert), "key_file": str(certs.server_key)}
    if mutual:
        block["client_ca_file"] = str(certs.ca)
    return {"grpc": {"tls": block}, "http": {"tls": block}}


async def send(rx: Running, transport: Transport, signal: Signal = "traces", **kwargs: Any) -> str:
    exp = exporter(rx, transport, signal, **kwargs)
    try:
        result = await asyncio.to_thread(exp.export, make(signal))
        return str(result.name)
    finally:
        await asyncio.to_thread(exp.shutdown)


def client_context(certs: Certs, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.ca))
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


async def https_post(rx: Running, ctx: ssl.SSLContext) -> int:
    async with httpx.AsyncClient(verify=ctx) as client:
        reply = await client.post(
            rx.http_url(scheme="https", host="localhost"), content=GOOD, headers=PROTOBUF
        )
        return reply.status_code


def grpc_credentials(certs: Certs, cert: tuple[Path, Path] | None) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=certs.read("ca"),
        private_key=cert[1].read_bytes() if cert else None,
        certificate_chain=cert[0].read_bytes() if cert else None,
    )


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_sdk_exporters_over_tls(
    tmp_path: Path, certs: Certs, transport: Transport, mutual: bool
) -> None:
    async def scenario() -> None:
        async with running(tmp_path, **tls(certs, mutual)) as rx:
            for signal in ("traces", "metrics", "logs"):
                assert await send(rx, transport, signal, certs=certs) == "SUCCESS"
                assert len(await rx.records(signal)) == 1

    run(scenario())


def test_mutual_tls_refuses_clients_without_a_trusted_cert(tmp_path: Path, certs: Certs) -> None:
    stranger = (certs.other_client_cert, certs.other_client_key)
    good = (certs.client_cert, certs.client_key)

    async def scenario() -> None:
        async with running(tmp_path, **tls(certs, mutual=True)) as rx:
            target = f"localhost:{rx.grpc_target.rsplit(':', 1)[1]}"
            for cert in (None, stranger):
                creds = grpc_credentials(certs, cert)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await raw_grpc(target, "traces", GOOD, credentials=creds)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                with pytest.raises(
                    (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)
                ):
                    await https_post(rx, client_context(certs, cert))
            assert await rx.records("traces") == []
            # and with the right client cert both work
            assert (
                await raw_grpc(target, "traces", GOOD, credentials=grpc_credentials(certs, good))
                == b""
            )
            assert await https_post(rx, client_context(certs, good)) == 200
            assert len(await rx.records("traces")) == 2

    run(scenario())


def test_tls_refuses_plaintext_clients(tmp_path: Path, certs: Certs) -> None:
    async def scenario() -> None:
        async with running(tmp_path, **tls(certs, mutual=False)) as rx:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await raw_grpc(rx.grpc_target, "traces", GOOD)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            async with httpx.AsyncClient() as client:
                with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                    await client.post(rx.http_url(), content=GOOD, headers=PROTOBUF)
            assert await rx.records("traces") == []

    run(scenario())


AUTH = {"auth": {"bearer_tokens": ["s3cret-token"]}}


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_bearer_token(tmp_path: Path, transport: Transport) -> None:
    async def scenario() -> None:
        async with running(tmp_path, **AUTH) as rx:
            assert await send(rx, transport, token="s3cret-token") == "SUCCESS"
            assert await send(rx, transport, token="wrong") == "FAILURE"
            assert await send(rx, transport) == "FAILURE"
            assert len(await rx.records("traces")) == 1
            assert (
                rx.metric(
                    "keiko_requests_total",
                    component="otlp",
                    signal="traces",
                    transport=transport,
                    outcome="unauthenticated",
                )
                == 2
            )

    run(scenario())


def test_bearer_token_answers(tmp_path: Path) -> None:
    """401 with WWW-Authenticate, UNAUTHENTICATED on gRPC, each with a message that says why."""

    async def scenario() -> None:
        async with running(tmp_path, **AUTH) as rx, httpx.AsyncClient() as client:
            reply = await client.post(rx.http_url(), content=GOOD, headers=PROTOBUF)
            assert reply.status_code == 401
            assert reply.headers["www-authenticate"].startswith("Bearer")
            reply = await client.post(
                rx.http_url(),
                content=b"{}",
                headers={"content-type": "application/json", "authorization": "Bearer nope"},
            )
            assert reply.status_code == 401 and reply.json()["message"] == "invalid bearer token"
            for metadata in (None, (("authorization", "Bearer nope"),)):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await raw_grpc(rx.grpc_target, "traces", GOOD, metadata=metadata)
                assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert "bearer token" in (err.value.details() or "")
            ok = (("authorization", "Bearer s3cret-token"),)
            assert await raw_grpc(rx.grpc_target, "traces", GOOD, metadata=ok) == b""
            reply = await client.post(
                rx.http_url(),
                content=GOOD,
                headers={**PROTOBUF, "authorization": "Bearer s3cret-token"},
            )
            assert reply.status_code == 200
            assert len(await rx.records("traces")) == 2

    run(scenario())
