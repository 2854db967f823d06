"""The receiver as a component: registry, config, binding, shutdown, partial success."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from otlp_clients import raw_grpc
from otlp_harness import receiver_config, run, running

from collectors.otlp.component import SPEC
from collectors.otlp.config import OtlpReceiverConfig
from collectors.otlp.grpc_server import grpc_message_limit
from keiko.components import registry
from keiko.config import ConfigError
from keiko.config.load import validate
from keiko.records import NewRecord
from keiko.store.base import Store

PROTOBUF = {"content-type": "application/x-protobuf"}


def test_registered_under_receivers_otlp() -> None:
    assert registry()[("receivers", "otlp")] is SPEC


def test_config_defaults_and_units() -> None:
    config = OtlpReceiverConfig()
    assert config.grpc.endpoint == "127.0.0.1:4317" and config.http.endpoint == "127.0.0.1:4318"
    assert config.max_request_bytes == 16 * 1024**2 and config.auth is None
    assert receiver_config(max_request_bytes="4MiB").max_request_bytes == 4 * 1024**2
    # grpc core's own limit stays above ours, so we answer INVALID_ARGUMENT, not grpc
    assert grpc_message_limit(16 * 1024**2) == 33 * 1024**2


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"grpc": {"endpont": "0.0.0.0:4317"}}, "receivers.otlp.grpc.endpont: unknown key"),
        ({"http": {"endpoint": "4318"}}, "receivers.otlp.http.endpoint"),
        ({"max_request_bytes": "lots"}, "receivers.otlp.max_request_bytes"),
        ({"max_request_bytes": 0}, "receivers.otlp.max_request_bytes"),
        (
            {"grpc": {"tls": {"cert_file": "/nope.pem", "key_file": "/nope.pem"}}},
            "receivers.otlp.grpc.tls",
        ),
    ],
)
def test_bad_config_names_the_key(raw: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate({"receivers": {"otlp": raw}})
    assert words in str(err.value)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_port_in_use_is_a_clear_start_error(tmp_path: Path, transport: str) -> None:
    async def scenario() -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            endpoint = f"127.0.0.1:{taken.getsockname()[1]}"
            with pytest.raises(RuntimeError) as err:
                async with running(tmp_path, **{transport: {"endpoint": endpoint}}):
                    pass
            assert f"receivers.otlp.{transport}.endpoint" in str(err.value)
            assert endpoint in str(err.value)

    run(scenario())


def test_disabled_transport_is_not_served(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, grpc={"enabled": False}) as rx:
            assert rx.component.grpc is None
            async with httpx.AsyncClient() as client:
                reply = await client.post(rx.http_url(), content=b"", headers=PROTOBUF)
                assert reply.status_code == 200

    run(scenario())


class SlowStore:
    """The real store, with appends that take a while (to be in flight during shutdown)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.started = asyncio.Event()

    async def append(self, stream: str, records: Sequence[NewRecord]) -> list[int]:
        self.started.set()
        await asyncio.sleep(0.3)
        return await self._store.append(stream, records)


def metrics_request(with_empty: bool) -> bytes:
    request = ExportMetricsServiceRequest()
    metrics = request.resource_metrics.add().scope_metrics.add().metrics
    gauge = metrics.add(name="queue_depth")
    gauge.gauge.data_points.add(as_int=7)
    gauge.gauge.data_points.add(as_int=8)
    if with_empty:
        metrics.append(Metric(name="no_data_here"))
    return request.SerializeToString()


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_shutdown_lets_inflight_requests_finish_then_refuses(
    tmp_path: Path, transport: str
) -> None:
    slow: list[SlowStore] = []

    def wrap(store: Store) -> SlowStore:
        slow.append(SlowStore(store))
        return slow[0]

    async def scenario() -> None:
        async with running(tmp_path, wrap=wrap) as rx, httpx.AsyncClient() as client:
            body = metrics_request(with_empty=False)
            if transport == "grpc":
                sending = asyncio.create_task(raw_grpc(rx.grpc_target, "metrics", body))
            else:
                sending = asyncio.create_task(
                    client.post(rx.http_url("/v1/metrics"), content=body, headers=PROTOBUF)
                )
            await asyncio.wait_for(slow[0].started.wait(), 5)
            await rx.component.shutdown(time.monotonic() + 5)
            reply = await sending
            assert reply == b"" if transport == "grpc" else reply.status_code == 200
            assert len(await rx.records("metrics")) == 1
            await rx.component.shutdown(time.monotonic() + 5)  # idempotent
            with pytest.raises((grpc.aio.AioRpcError, httpx.ConnectError)):
                if transport == "grpc":
                    await raw_grpc(rx.grpc_target, "metrics", body)
                else:
                    await client.post(rx.http_url("/v1/metrics"), content=body, headers=PROTOBUF)

    run(scenario())


def test_metric_without_data_is_a_partial_success(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as rx, httpx.AsyncClient() as client:
            body = metrics_request(with_empty=True)
            reply = ExportMetricsServiceResponse.FromString(
                await raw_grpc(rx.grpc_target, "metrics", body)
            )
            assert reply.partial_success.rejected_data_points == 1
            assert "no_data_here" in reply.partial_success.error_message
            http = await client.post(rx.http_url("/v1/metrics"), content=body, headers=PROTOBUF)
            assert ExportMetricsServiceResponse.FromString(http.content) == reply
            (stored, _) = await rx.records("metrics")
            assert stored.payload == body and stored.count == 2  # stored, valid points counted
            labels = {"component": "otlp", "signal": "metrics", "transport": "grpc"}
            assert rx.metric("keiko_requests_total", **labels, outcome="partial") == 1
            assert rx.metric("keiko_accepted_items_total", **labels) == 2
            assert rx.metric("keiko_refused_items_total", **labels, reason="partial") == 1

    run(scenario())


def test_partial_success_in_json(tmp_path: Path) -> None:
    body = (
        '{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "empty"}, '
        '{"name": "up", "gauge": {"dataPoints": [{"asInt": "1"}]}}]}]}]}'
    )

    async def scenario() -> None:
        async with running(tmp_path) as rx, httpx.AsyncClient() as client:
            reply = await client.post(
                rx.http_url("/v1/metrics"),
                content=body,
                headers={"content-type": "application/json"},
            )
            assert reply.status_code == 200
            partial = reply.json()["partialSuccess"]
            assert partial["rejectedDataPoints"] == "1" and "'empty'" in partial["errorMessage"]

    run(scenario())


def test_requests_without_items_are_acknowledged_not_stored(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as rx:
            for signal in ("traces", "metrics", "logs"):
                assert await raw_grpc(rx.grpc_target, signal, b"") == b""
                assert await rx.records(signal) == []

    run(scenario())
