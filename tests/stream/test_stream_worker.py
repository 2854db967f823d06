"""StreamWorker with a trivial stage (a running sum of numbers) on a real embedded store:
process, append events, checkpoint before commit, restore, skip replays, a checkpoint
ahead of the stream, an unusable checkpoint."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from keiko.components import Context
from keiko.config.load import validate
from keiko.records import Kind, NewRecord, Record, Stream
from keiko.store import open_store
from keiko.stream.checkpoint import CheckpointStore
from keiko.stream.config import CheckpointConfig
from keiko.stream.worker import StreamWorker
from keiko.telemetry import Telemetry

STREAM = Stream.TRACES  # any stream: the worker does not care what it holds
BIG = 100  # a number above this raises an event


class Summer(StreamWorker):
    """TEST-ONLY stage: adds up the numbers in the records; an event per big one."""

    def __init__(self, ctx: Context, checkpoint: CheckpointConfig) -> None:
        super().__init__(
            ctx,
            name="summer",
            stream=STREAM,
            group="summer",
            checkpoint=checkpoint,
            fetch_batch=3,  # several fetches per test
            fetch_timeout=0.05,
            checkpoint_name="sum",
        )
        self.total = 0
        self.seen: list[int] = []  # offsets handed to process

    def process(self, records: list[Record]) -> list[NewRecord]:
        events = []
        for record in records:
            self.seen.append(record.offset)
            value = int(record.payload)
            self.total += value
            if value > BIG:
                events.append(NewRecord(Kind.EVENT_JSON, json.dumps({"big": value}).encode()))
        return events

    def snapshot_parts(self) -> dict[str, bytes]:
        return {"total": str(self.total).encode()}

    def restore_parts(self, parts: dict[str, bytes]) -> str:
        self.total = int(parts["total"])
        return f"total {self.total}"


Body = Callable[[Context, Summer], Awaitable[None]]
CHECKPOINT = CheckpointConfig(interval=3600.0, bucket="summer")


def run(
    data: Path,
    *bodies: Body,
    checkpoint: CheckpointConfig = CHECKPOINT,
    prepare: Callable[[Context], Awaitable[object]] | None = None,
) -> None:
    """Each body runs against a fresh Summer (started, then shut down) on one store;
    ``prepare`` runs before the first."""

    async def main() -> None:
        config = validate({"store": {"embedded": {"path": str(data)}}})
        store = open_store(config.store)
        await store.start()
        try:
            ctx = Context(store, Telemetry(), config)
            if prepare is not None:
                await prepare(ctx)
            for body in bodies:
                worker = Summer(ctx, checkpoint)
                await worker.start()
                try:
                    await body(ctx, worker)
                finally:
                    await worker.shutdown(time.monotonic() + 10)
        finally:
            await store.shutdown()

    asyncio.run(main())


async def append(ctx: Context, *values: int) -> int:
    """Append one record per value; the last offset."""
    records = [NewRecord(Kind.EVENT_JSON, str(v).encode()) for v in values]
    return (await ctx.store.append(STREAM, records))[-1]


async def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def committed(ctx: Context) -> int:
    stats = await ctx.store.stats()
    stream = next(s for s in stats.streams if s.name == STREAM)
    return next(g.committed for g in stream.groups if g.group == "summer")


async def saved_offset(ctx: Context) -> int | None:
    kv = await ctx.store.kv(CHECKPOINT.bucket)
    found = await CheckpointStore(kv, "sum", CHECKPOINT.chunk_bytes).load()
    return None if found is None else found.offset


def test_process_checkpoint_restore(tmp_path: Path) -> None:
    """Events are appended; shutdown saves the state and only then commits; a restart
    restores it and reads only new records."""
    seen: dict[str, int] = {}

    async def first(ctx: Context, worker: Summer) -> None:
        await wait_for(lambda: worker._consumer is not None)
        consumer = worker._consumer
        assert consumer is not None
        commit = consumer.commit

        async def checked_commit(offset: int) -> None:
            saved = await saved_offset(ctx)
            assert saved is not None and saved >= offset, "committed before the save"
            await commit(offset)

        consumer.commit = checked_commit  # type: ignore[method-assign]
        seen["last"] = await append(ctx, 1, 2, 300, 4, 5, 6, 7)
        await wait_for(lambda: worker.stats.offset == seen["last"])
        assert worker.total == 325 and worker.stats.records == 7
        await wait_for(lambda: worker.stats.events == 1)
        events = await ctx.store.read(Stream.EVENTS, 0, 10)
        assert [json.loads(r.payload) for r in events] == [{"big": 300}]
        assert worker.stats.checkpoints["ok"] == 0  # interval 1h: none yet

    async def second(ctx: Context, worker: Summer) -> None:
        assert await committed(ctx) == seen["last"]  # by the final checkpoint
        await wait_for(lambda: worker._consumer is not None)
        assert worker.total == 325
        assert worker.stats.offset == worker.stats.checkpoint_offset == seen["last"]
        last = await append(ctx, 10)
        await wait_for(lambda: worker.stats.offset == last)
        assert worker.total == 335 and worker.seen == [last] and worker.stats.records == 1
        assert worker.stats.skipped_records["replayed"] == 0

    run(tmp_path / "data", first, second)


def test_records_the_checkpoint_covers_are_skipped(tmp_path: Path) -> None:
    """Saved but not committed (a crash between the two): the restored state already has
    the records, and the consumer is rewound to just after the checkpoint, so they are
    neither added twice nor even fetched again."""

    async def no_commit(offset: int) -> None:
        return None

    async def first(ctx: Context, worker: Summer) -> None:
        await wait_for(lambda: worker._consumer is not None)
        worker._consumer.commit = no_commit  # type: ignore[union-attr,method-assign]
        last = await append(ctx, 1, 2, 3, 4)
        await wait_for(lambda: worker.stats.offset == last)

    async def second(ctx: Context, worker: Summer) -> None:
        await wait_for(lambda: worker._consumer is not None and worker.total == 10)
        assert worker.seen == [] and worker.stats.records == 0
        assert worker.stats.skipped_records["replayed"] == 0
        last = await append(ctx, 5)
        await wait_for(lambda: worker.stats.offset == last)
        assert worker.total == 15 and worker.seen == [last]

    run(tmp_path / "data", first, second)


def test_periodic_checkpoint_by_record_count(tmp_path: Path) -> None:
    """max_records: saved (and committed) while running, not only at shutdown."""
    checkpoint = CHECKPOINT.model_copy(update={"max_records": 3})

    async def body(ctx: Context, worker: Summer) -> None:
        await wait_for(lambda: worker._consumer is not None)
        last = await append(ctx, *range(7))
        await wait_for(lambda: worker.stats.checkpoints["ok"] >= 2)
        await wait_for(lambda: worker.stats.offset == last)
        saved = await saved_offset(ctx)
        assert saved is not None and saved >= 3
        assert await committed(ctx) == worker.stats.checkpoint_offset == saved

    run(tmp_path / "data", body, checkpoint=checkpoint)


async def plant(ctx: Context, parts: dict[str, bytes], offset: int) -> None:
    kv = await ctx.store.kv(CHECKPOINT.bucket)
    await CheckpointStore(kv, "sum", 1024).save(parts, offset)


def test_a_checkpoint_ahead_of_the_stream_keeps_the_state_and_reads_everything(
    tmp_path: Path,
) -> None:
    """The stream was recreated, the bucket survived: new records are read, not skipped."""

    async def body(ctx: Context, worker: Summer) -> None:
        await wait_for(lambda: worker._consumer is not None)
        assert worker.total == 1000 and worker.stats.offset == 0
        last = await append(ctx, 1, 2)
        await wait_for(lambda: worker.stats.offset == last)
        assert worker.total == 1003 and worker.stats.skipped_records["replayed"] == 0

    run(tmp_path / "data", body, prepare=lambda ctx: plant(ctx, {"total": b"1000"}, 1000))


def test_an_unusable_checkpoint_starts_fresh(tmp_path: Path) -> None:
    """restore_parts fails (a part is missing): fresh state, the stream read from its start."""

    async def prepare(ctx: Context) -> None:
        await append(ctx, 1, 2)
        await plant(ctx, {"other": b"x"}, 2)

    async def body(ctx: Context, worker: Summer) -> None:
        await wait_for(lambda: worker._consumer is not None)
        assert worker.stats.checkpoint_offset == 0
        last = await append(ctx, 5)
        await wait_for(lambda: worker.stats.offset == last)
        assert worker.total == 8 and worker.stats.skipped_records["replayed"] == 0

    run(tmp_path / "data", body, prepare=prepare)
