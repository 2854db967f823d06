"""Backpressure and failures: retryable answers carry a delay, exporters retry, nothing is lost;
an unexpected error is a 500 / INTERNAL and the receiver keeps serving."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from otlp_clients import Transport, exporter, make_spans, raw_grpc
from otlp_harness import Running, run, running, store_config

from keiko.records import NewRecord
from keiko.store.base import Store

TINY = {"limits": {"max_backlog_bytes": 100, "retry_after": 0.2}}  # < any request
GOOD = encode_spans(make_spans()).SerializeToString()
PROTOBUF = {"content-type": "application/x-protobuf"}


async def wait_for(predicate: Any, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.02)


def lift_bound(rx: Running, tmp_path: Path) -> None:
    rx.store.reconfigure(store_config(tmp_path / "data", limits={"max_backlog_bytes": "1GiB"}))


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_exporter_retries_until_the_store_has_room(
    tmp_path: Path, transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with running(tmp_path, store=TINY) as rx:
            await rx.store.consumer("traces", "slow")  # a group that reads nothing: backlog
            exp = exporter(rx, transport, "traces", timeout=30)
            sending = asyncio.create_task(asyncio.to_thread(exp.export, make_spans()))
            labels = {"component": "otlp", "signal": "traces", "transport": transport}
            await wait_for(
                lambda: rx.metric("keiko_refused_items_total", **labels, reason="backpressure") > 0
            )
            assert await rx.records("traces") == []
            lift_bound(rx, tmp_path)
            assert (await asyncio.wait_for(sending, 30)).name == "SUCCESS"
            await asyncio.to_thread(exp.shutdown)
            (record,) = await rx.records("traces")
            assert record.count == 2
            assert rx.metric("keiko_accepted_items_total", **labels) == 2
            assert rx.metric("keiko_requests_total", **labels, outcome="backpressure") >= 1

    with caplog.at_level(logging.WARNING, logger="opentelemetry"):
        run(scenario())
    retries = [r.getMessage() for r in caplog.records if "Transient error" in r.getMessage()]
    assert retries
    # the exporter waited the delay keiko asked for (0.2 s; Retry-After has whole seconds)
    expected = "retrying in 0.20s" if transport == "grpc" else "retrying in 1.00s"
    assert all(expected in message for message in retries), retries


def test_grpc_retryable_answer_carries_retry_info(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, store=TINY) as rx:
            await rx.store.consumer("traces", "slow")
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await raw_grpc(rx.grpc_target, "traces", GOOD)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_backlog_bytes" in (err.value.details() or "")
            trailers = dict(err.value.trailing_metadata() or ())
            delay = RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"]).retry_delay
            assert (delay.seconds, delay.nanos) == (0, 200_000_000)
            status = Status.FromString(trailers["grpc-status-details-bin"])
            assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
            info = RetryInfo()
            assert status.details[0].Unpack(info) and info.retry_delay == delay

    run(scenario())


def test_http_retryable_answer_carries_retry_after(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, store=TINY) as rx, httpx.AsyncClient() as client:
            await rx.store.consumer("traces", "slow")
            reply = await client.post(rx.http_url(), content=GOOD, headers=PROTOBUF)
            assert reply.status_code == 429
            assert reply.headers["retry-after"] == "1"
            status = Status.FromString(reply.content)
            assert "max_backlog_bytes" in status.message and status.details
            reply = await client.post(
                rx.http_url(), content=b"{}", headers={"content-type": "application/json"}
            )
            assert reply.status_code == 200  # nothing to store, so nothing to refuse

    run(scenario())


def test_shutting_down_answers_unavailable_with_a_delay(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as rx, httpx.AsyncClient() as client:
            for ingest in rx.component._ingests:
                ingest.closing = True  # the moment between shutdown's start and the last close
            reply = await client.post(rx.http_url(), content=GOOD, headers=PROTOBUF)
            assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await raw_grpc(rx.grpc_target, "traces", GOOD)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "google.rpc.retryinfo-bin" in dict(err.value.trailing_metadata() or ())
            assert await rx.records("traces") == []

    run(scenario())


class FailingOnce:
    """The real store, except that the first append raises a bug-like error."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.failures = 1

    async def append(self, stream: str, records: Sequence[NewRecord]) -> list[int]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("simulated bug")
        return await self._store.append(stream, records)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_unexpected_error_is_internal_and_logged_once(
    tmp_path: Path, transport: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with running(tmp_path, wrap=FailingOnce) as rx, httpx.AsyncClient() as client:
            if transport == "grpc":
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await raw_grpc(rx.grpc_target, "traces", GOOD)
                assert err.value.code() == grpc.StatusCode.INTERNAL
                assert "simulated" not in (err.value.details() or "")  # no internals leak
                assert await raw_grpc(rx.grpc_target, "traces", GOOD) == b""
            else:
                reply = await client.post(rx.http_url(), content=GOOD, headers=PROTOBUF)
                assert reply.status_code == 500
                assert "see keiko's log" in Status.FromString(reply.content).message
                reply = await client.post(rx.http_url(), content=GOOD, headers=PROTOBUF)
                assert reply.status_code == 200
            assert len(await rx.records("traces")) == 1
            assert (
                rx.metric(
                    "keiko_requests_total",
                    component="otlp",
                    signal="traces",
                    transport=transport,
                    outcome="internal",
                )
                == 1
            )

    with caplog.at_level(logging.ERROR, logger="collectors"):
        run(scenario())
    logged = [r for r in caplog.records if r.name.startswith("collectors")]
    assert len(logged) == 1 and logged[0].exc_info is not None
    assert "simulated bug" in str(logged[0].exc_info[1])
