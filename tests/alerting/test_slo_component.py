"""The `alerting.slo` stage end to end on a real embedded store: OTLP span-metric batches
(built with the protobuf classes, cumulative like the span-metrics stage writes them) in,
slo_burn and threshold events out, once per state change; a restart resumes from the
checkpoint without counting anything twice; the Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from prometheus_client import generate_latest

from alerting.slo.burn import CALLS
from alerting.slo.component import SloStage
from alerting.slo.config import SloConfig
from keiko.components import Context
from keiko.config.load import validate
from keiko.records import Kind, NewRecord, Stream
from keiko.store import open_store
from keiko.telemetry import Telemetry

S = 10**9
FLUSH = 30  # seconds between span-metric flushes
PER_FLUSH = 1000  # calls of cart per flush
CONFIG = SloConfig.model_validate(
    {
        "objectives": {"cart": {"service": "cart", "target": 0.999, "labels": {"team": "shop"}}},
        "rules": {
            "cart-errors": {
                "metric": CALLS,
                "matchers": {"service.name": "cart", "status.code": "STATUS_CODE_ERROR"},
                "rate": True,
                "op": ">",
                "threshold": 1.0,  # errors per second
                "for_duration": "1m",
            }
        },
        "fetch_batch": 25,
        "fetch_timeout": 0.05,
        "checkpoint": {"interval": 3600, "bucket": "slo-test"},
    }
)


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


class Workload:
    """Cumulative calls of cart (server spans, ok and failed) flushed every 30 s."""

    def __init__(self, start_ns: int) -> None:
        self.start_ns = start_ns
        self.t_ns = start_ns
        self.ok = 0
        self.failed = 0
        self.calls = 0  # every call flushed so far

    def flush(self, errors: int) -> bytes:
        self.t_ns += FLUSH * S
        self.ok += PER_FLUSH - errors
        self.failed += errors
        self.calls += PER_FLUSH
        request = ExportMetricsServiceRequest()
        rm = request.resource_metrics.add()
        rm.resource.attributes.append(kv("service.name", "cart"))
        metric = rm.scope_metrics.add().metrics.add(name=CALLS, unit="{call}")
        metric.sum.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
        metric.sum.is_monotonic = True
        for status, value in (("STATUS_CODE_UNSET", self.ok), ("STATUS_CODE_ERROR", self.failed)):
            metric.sum.data_points.add(
                attributes=[
                    kv("span.name", "GET /cart"),
                    kv("span.kind", "SPAN_KIND_SERVER"),
                    kv("status.code", status),
                ],
                start_time_unix_nano=self.start_ns,
                time_unix_nano=self.t_ns,
                as_int=value,
            )
        return request.SerializeToString()

    def records(self, flushes: int, errors: int) -> list[NewRecord]:
        return [NewRecord(Kind.OTLP_METRICS, self.flush(errors), 2) for _ in range(flushes)]


Body = Callable[[Context, SloStage], Awaitable[None]]


def run(data: Path, *bodies: Body, config: SloConfig = CONFIG) -> None:
    """Each body runs against a fresh stage (started, then shut down) on one store."""

    async def main() -> None:
        keiko = validate({"store": {"embedded": {"path": str(data)}}})
        store = open_store(keiko.store)
        await store.start()
        try:
            ctx = Context(store, Telemetry(), keiko)
            for body in bodies:
                stage = SloStage(config, ctx)
                await stage.start()
                try:
                    await body(ctx, stage)
                finally:
                    await stage.shutdown(time.monotonic() + 10)
        finally:
            await store.shutdown()

    asyncio.run(main())


async def events(ctx: Context) -> list[dict[str, Any]]:
    records = await ctx.store.read(Stream.EVENTS, 1, 10_000)
    assert all(r.kind == Kind.EVENT_JSON for r in records)
    return [json.loads(r.payload) for r in records]


async def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_burn_fires_then_resolves_across_a_restart(tmp_path: Path) -> None:
    # Data time ends about now: points may not be more than 5 min after their append.
    work = Workload(time.time_ns() - 2 * 3600 * S)
    expected_offset = 0

    async def healthy_then_failing(ctx: Context, stage: SloStage) -> None:
        nonlocal expected_offset
        await ctx.store.append(Stream.METRICS, work.records(120, 0))  # 1 h at 0%
        # 20 min at 5% (burn 50): page-1h needs 35 bad flushes for 1h to reach 14.4
        offsets = await ctx.store.append(Stream.METRICS, work.records(40, 50))
        expected_offset = offsets[-1]
        await wait_for(lambda: stage.stats.offset == expected_offset)
        seen = await events(ctx)
        slo = {e["id"]: e for e in seen if e["type"] == "slo_burn"}
        assert set(slo) == {
            f"slo:cart:{w}" for w in ("page-1h", "page-6h", "ticket-1d", "ticket-3d")
        }
        assert all(e["status"] == "firing" for e in slo.values())
        page = slo["slo:cart:page-1h"]
        assert page["severity"] == "page" and page["windows"] == {"long": "1h", "short": "5m"}
        assert page["factor"] == 14.4 and page["burn_rate"]["long"] >= 14.4
        assert page["burn_rate"]["short"] == 50.0  # 5m wholly inside the bad phase (rounded)
        assert page["labels"]["team"] == "shop" and page["labels"]["severity"] == "page"
        assert page["budget_remaining"] < 0  # 2000 bad of 160 000 at 0.1%: 12.5x spent
        assert page["time_unix_nano"] <= work.t_ns and page["time"].endswith("Z")
        rule = [e for e in seen if e["type"] == "threshold"]
        assert [e["status"] for e in rule] == ["firing"]  # 50 / 30 s = 1.67 errors/s > 1
        assert rule[0]["value"] == 50 / 30 and rule[0]["labels"]["service_name"] == "cart"
        text = generate_latest(ctx.telemetry.registry).decode()
        assert 'keiko_slo_alerts_firing{objective="cart",severity="page"} 2.0' in text
        short = 'keiko_slo_burn_rate{objective="cart",service="cart",window="5m"} '
        line = next(x for x in text.splitlines() if x.startswith(short))
        assert float(line.removeprefix(short)) == pytest.approx(50.0)
        assert 'keiko_rule_firing{rule="cart-errors"} 1.0' in text
        assert "keiko_slo_error_budget_remaining{" in text

    async def recovered_after_restart(ctx: Context, stage: SloStage) -> None:
        before = len(await events(ctx))
        await wait_for(lambda: stage.stats.offset == expected_offset)  # restored, not replayed
        assert stage.stats.records == 0 and stage.burn.firing
        offsets = await ctx.store.append(Stream.METRICS, work.records(20, 0))  # 10 min clean
        await wait_for(lambda: stage.stats.offset == offsets[-1])
        new = (await events(ctx))[before:]
        rule_id = next(e["id"] for e in new if e["type"] == "threshold")
        assert sorted((e["id"], e["status"]) for e in new) == [
            (rule_id, "resolved"),  # no errors: rate 0
            ("slo:cart:page-1h", "resolved"),  # the 5m window is clean; the others still burn
        ]
        resolved = next(e for e in new if e["type"] == "slo_burn")
        # Resolved with the first flush that brings 5m under 14.4: 8 clean flushes of 10.
        assert resolved["reason"] == "below_factor" and resolved["burn_rate"]["short"] == 10.0
        assert stage.stats.records == 20
        # Every call counted exactly once over the restart.
        objective = stage.burn.objectives["cart"]
        good, total = objective.fine.window(3 * 86400, work.t_ns / 1e9)
        assert total == work.calls == 180 * PER_FLUSH
        assert total - good == work.failed == 40 * 50

    run(tmp_path / "data", healthy_then_failing, recovered_after_restart)


def test_other_records_and_garbage_are_skipped_and_counted(tmp_path: Path) -> None:
    async def body(ctx: Context, stage: SloStage) -> None:
        records = [
            NewRecord(Kind.OTLP_METRICS, b"\xff\xff not protobuf"),
            NewRecord(Kind.OTLP_TRACES, b""),
        ]
        offsets = await ctx.store.append(Stream.METRICS, records)
        await wait_for(lambda: stage.stats.offset == offsets[-1])
        assert stage.stats.skipped_records == {"undecodable": 1, "kind": 1}
        assert await events(ctx) == []

    run(tmp_path / "data", body)


def test_nothing_configured_is_idle(tmp_path: Path) -> None:
    async def body(ctx: Context, stage: SloStage) -> None:
        assert stage._task is None and stage.names == frozenset()

    run(tmp_path / "data", body, config=SloConfig())


def test_a_service_gone_silent_resolves_once_the_stream_is_idle(tmp_path: Path) -> None:
    work = Workload(time.time_ns() - 30 * 60 * S)  # 20 min of 5% errors, ending 10 min ago
    config = CONFIG.model_copy(update={"idle_after": 0.3, "rules": {}})

    async def body(ctx: Context, stage: SloStage) -> None:
        await ctx.store.append(Stream.METRICS, work.records(40, 50))

        async def page_events() -> list[dict[str, Any]]:
            return [e for e in await events(ctx) if e["id"] == "slo:cart:page-1h"]

        deadline = time.monotonic() + 15
        while len(found := await page_events()) < 2:
            assert time.monotonic() < deadline, f"no resolution: {found}"
            await asyncio.sleep(0.05)
        firing, resolved = found
        assert (firing["status"], resolved["status"]) == ("firing", "resolved")
        assert resolved["reason"] == "insufficient_data"  # nothing in the last 5 min
        assert resolved["time_unix_nano"] > time.time_ns() - 5 * S  # judged at wall time
        assert ("cart", "page-6h") in stage.burn.firing  # its 30m window still holds the burn

    run(tmp_path / "data", body, config=config)
