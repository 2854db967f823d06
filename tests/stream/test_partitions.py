"""Partitioned stages on a real nats-server: two "processes" (two stores, two
PartitionedStages in one event loop) share the 4 partitions of the metrics stream, balance
them, hand them over with their state, and one takes over when the other crashes with
records fetched but not committed: every record counted exactly once in the end."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fixtures.nats import NatsServer, nats_store_config
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from keiko.components import Context
from keiko.config.load import validate
from keiko.partitioning import partition_of_text
from keiko.records import Kind, NewRecord, Record, Stream
from keiko.store import open_store
from keiko.store.base import Store
from keiko.stream.config import CheckpointConfig
from keiko.stream.partitions import PartitionedStage
from keiko.stream.worker import StreamWorker
from keiko.telemetry import Telemetry

COUNT = 4
TTL = 1.5
KEYS = [f"k{i}" for i in range(40)]


class Tally(StreamWorker):
    """TEST-ONLY stage: counts the records per key; exports how many it processed."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(
            ctx,
            name="tally",
            stream=Stream.METRICS,
            group="tally",
            checkpoint=CheckpointConfig(interval=3600.0, max_records=30, bucket="tally"),
            fetch_batch=10,
            fetch_timeout=0.05,
            checkpoint_name="counts",
        )
        self.counts: Counter[str] = Counter()
        ctx.telemetry.registry.register(_Export(self))
        ctx.routes.append(Route("/tally", self._serve, methods=["GET"]))

    async def _serve(self, request: Request) -> JSONResponse:
        return JSONResponse({"partition": self.partition, "records": self.stats.records})

    def process(self, records: list[Record]) -> list[NewRecord]:
        for record in records:
            self.counts[record.key] += 1
        return []

    def snapshot_parts(self) -> dict[str, bytes]:
        return {"counts": json.dumps(self.counts).encode()}

    def restore_parts(self, parts: dict[str, bytes]) -> str:
        self.counts = Counter(json.loads(parts["counts"]))
        return f"{sum(self.counts.values())} records"


class _Export(Collector):
    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    def collect(self) -> list[CounterMetricFamily]:
        family = CounterMetricFamily("tally_records", "Records counted.")
        family.add_metric([], float(self.tally.stats.records))
        return [family]


class Process:
    """One analysis 'process': its own NATS connection, context and partitioned stage."""

    def __init__(self, config: Any, count: int = COUNT, stage: type[Tally] | None = None) -> None:
        self.store: Store = open_store(config.store)
        self.ctx = Context(self.store, Telemetry(), config)
        self.stage = PartitionedStage("tally", stage or Tally, self.ctx, count=count, ttl=TTL)

    async def get(self, path: str) -> httpx.Response:
        app = Starlette(routes=self.ctx.routes)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://keiko") as client:
            return await client.get(path)

    async def start(self) -> Process:
        await self.store.start()
        await self.stage.start()
        return self

    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for held in self.stage.held.values():
            assert isinstance(held.worker, Tally)
            total += held.worker.counts
        return total

    async def crash(self) -> None:
        """Stop everything without a checkpoint, a nak or a lease release: a dead process."""
        assert self.stage._task is not None
        self.stage._task.cancel()
        for held in self.stage.held.values():
            assert held.worker._task is not None
            held.worker._task.cancel()
        self.stage._closed = True
        await self.store._nc.close()  # type: ignore[attr-defined]


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


async def append(store: Store, rounds: range) -> Counter[str]:
    sent: Counter[str] = Counter()
    for _ in rounds:
        batch = [NewRecord(Kind.EVENT_JSON, b"{}", key=k) for k in KEYS]
        await store.append(Stream.METRICS, batch)
        sent.update(KEYS)
        await asyncio.sleep(0.02)
    return sent


@pytest.fixture
def config(nats_server: NatsServer) -> Any:
    store = nats_store_config(nats_server)
    store["nats"]["partitions"] = COUNT
    return validate({"store": store})


def test_keys_spread_over_every_partition() -> None:
    assert {partition_of_text(k, COUNT) for k in KEYS} == set(range(COUNT))


def test_share_balance_hand_over_and_take_over_after_a_crash(config: Any) -> None:
    async def main() -> None:
        a = await Process(config).start()
        await until(lambda: a.stage.partitions() == [0, 1, 2, 3], 10, "a alone holds all")
        sent = await append(a.store, range(5))
        b = await Process(config).start()
        await until(
            lambda: len(a.stage.held) == 2 and len(b.stage.held) == 2, 15, "a and b share 2/2"
        )
        assert set(a.stage.partitions()).isdisjoint(b.stage.partitions())
        sent += await append(a.store, range(10))
        await until(lambda: a.counts() + b.counts() == sent, 15, "both counted every record")
        # Metrics of each held partition, with its label, on a's registry.
        text = generate_latest(a.ctx.telemetry.registry).decode()
        for p in a.stage.partitions():
            assert f'tally_records_total{{partition="{p}"}}' in text
        sent += await append(a.store, range(10))
        await until(lambda: b.counts().total() > 0, 10, "b busy")
        await b.crash()  # b held records it fetched but had not committed
        sent += await append(a.store, range(10))
        await until(lambda: len(a.stage.held) == COUNT, 6 * TTL + 10, "a took b's partitions over")
        await until(lambda: a.counts() == sent, 20, "a counted every record exactly once")
        await a.stage.shutdown(time.monotonic() + 10)
        await a.store.shutdown()

    asyncio.run(main())


def test_another_partition_count_is_refused(config: Any, nats_server: NatsServer) -> None:
    async def main() -> None:
        store = open_store(config.store)
        await store.start()
        await store.shutdown()
        other = config.store.model_copy(deep=True)
        other.nats.partitions = 2
        with pytest.raises(Exception, match=r"store\.nats\.partitions is 2 but .* split into 4"):
            await open_store(other).start()

    asyncio.run(main())


def test_one_partition_routes_answer_from_the_holder_standby_says_503(config: Any) -> None:
    """With one partition (e.g. incidents) the holder serves the stage's routes with its
    unlabelled metrics, like `keiko run`; the standby answers 503 until it takes over."""

    async def main() -> None:
        a = await Process(config, count=1).start()
        b = await Process(config, count=1).start()
        assert a.stage.partitions() == [0] and b.stage.partitions() == []
        await append(a.store, range(2))
        await until(lambda: a.counts().total() == 2 * len(KEYS), 10, "a counted")
        answer = await a.get("/tally")
        assert answer.status_code == 200 and answer.json()["records"] == 2 * len(KEYS)
        assert "tally_records_total 80.0" in generate_latest(a.ctx.telemetry.registry).decode()
        standby = await b.get("/tally")
        assert standby.status_code == 503 and "standby for tally" in standby.json()["detail"]
        await a.stage.shutdown(time.monotonic() + 10)  # hands the partition back
        await until(lambda: b.stage.partitions() == [0], 3 * TTL + 5, "b took over")
        assert (await b.get("/tally")).status_code == 200
        await b.stage.shutdown(time.monotonic() + 10)
        for p in (a, b):
            await p.store.shutdown()

    asyncio.run(main())


class WholeTally(Tally):
    """TEST-ONLY: a stage whose route shows every partition (as span metrics' graph does)."""

    serves_all_partitions = True


def test_partitioned_routes_say_why_they_are_not_served(config: Any) -> None:
    """With several partitions a route is answered only by a stage that covers them all."""

    async def main() -> None:
        a = await Process(config).start()
        answer = await a.get("/tally")
        assert answer.status_code == 503 and "runs in 4 partitions" in answer.json()["detail"]
        await a.stage.shutdown(time.monotonic() + 10)
        await a.store.shutdown()
        whole = await Process(config, stage=WholeTally).start()
        answer = await whole.get("/tally")
        assert answer.status_code == 200 and answer.json()["partition"] in range(COUNT)
        await whole.stage.shutdown(time.monotonic() + 10)
        await whole.store.shutdown()

    asyncio.run(main())
