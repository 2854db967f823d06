"""The store contract: every test runs over both backends (see conftest.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from store_factory import StoreFactory

from keiko.errors import StoreFull
from keiko.records import NewRecord, Record
from keiko.store.base import Consumer, GroupStats, Store

KB = b"x" * 1000


def rec(payload: bytes, kind: str = "k", count: int = 1, key: str = "") -> NewRecord:
    return NewRecord(kind=kind, payload=payload, count=count, key=key)


def offsets(records: list[Record]) -> list[int]:
    return [r.offset for r in records]


async def drain(consumer: Consumer, limit: int = 100) -> list[Record]:
    """Fetch until a short fetch comes back empty."""
    got: list[Record] = []
    while batch := await consumer.fetch(limit, timeout=0.3):
        got += batch
    return got


# -- append and read --------------------------------------------------------------------------


async def test_append_returns_increasing_offsets_from_one(store: Store) -> None:
    assert await store.append("traces", [rec(b"a"), rec(b"b"), rec(b"c")]) == [1, 2, 3]
    assert await store.append("traces", [rec(b"d")]) == [4]
    assert await store.append("traces", []) == []
    assert await store.append("metrics", [rec(b"m")]) == [1]  # per stream


async def test_read_returns_exact_records(store: Store) -> None:
    records = [
        rec(b"\x00\xffbinary", kind="otlp.traces.v1+proto", count=1000, key="4bf92f3577b34da6"),
        rec(b"", kind="keiko.event+json", count=1),
        rec(b"third", kind="k", count=7, key="svc: checkout\nline two ✓"),
    ]
    before = time.time_ns()
    assert await store.append("events", records) == [1, 2, 3]
    after = time.time_ns()
    got = await store.read("events", 1, 100)
    assert offsets(got) == [1, 2, 3]
    for want, have in zip(records, got, strict=True):
        assert (have.kind, have.payload, have.count, have.key) == (
            want.kind,
            want.payload,
            want.count,
            want.key,
        )
        assert before - 10**9 <= have.time_ns <= after + 10**9
    assert offsets(await store.read("events", 2, 1)) == [2]
    assert await store.read("events", 4, 10) == []
    assert await store.read("never-written", 1, 10) == []


async def test_read_long_ranges(store: Store) -> None:
    await store.append("logs", [rec(str(i).encode()) for i in range(1, 61)])
    got = await store.read("logs", 1, 1000)
    assert offsets(got) == list(range(1, 61))
    assert [r.payload for r in got] == [str(i).encode() for i in range(1, 61)]
    assert offsets(await store.read("logs", 11, 35)) == list(range(11, 46))
    assert offsets(await store.read("logs", 55, 100)) == list(range(55, 61))
    times = [r.time_ns for r in got]
    assert times == sorted(times)


async def test_invalid_stream_name_is_refused(store: Store) -> None:
    for bad in ["Traces", "has space", "a.b", "", "9lives", "x" * 65]:
        with pytest.raises(ValueError):
            await store.append(bad, [rec(b"a")])
    with pytest.raises(ValueError):
        await store.consumer("no.dots", "g")


async def test_new_streams_are_created_on_first_append(store: Store) -> None:
    assert {"traces", "metrics", "logs", "events"} <= set(await store.streams())
    await store.append("custom-1", [rec(b"a")])
    assert "custom-1" in await store.streams()
    assert offsets(await store.read("custom-1", 1)) == [1]


# -- consumer groups --------------------------------------------------------------------------


async def test_group_resumes_after_committed_offset_across_restart(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    await store.append("traces", [rec(str(i).encode()) for i in range(1, 11)])
    consumer = await store.consumer("traces", "analytics.spans")
    first = await consumer.fetch(4, timeout=1)
    assert offsets(first) == [1, 2, 3, 4]
    await consumer.commit(2)
    await consumer.close()
    await store.shutdown()

    store = await make_store()  # a restart on the same data
    consumer = await store.consumer("traces", "analytics.spans")
    seen = await drain(consumer)
    assert min(offsets(seen)) == 3  # 3 and 4 were fetched but never committed: again
    assert set(offsets(seen)) == set(range(3, 11))
    assert [r.payload for r in seen if r.offset == 7] == [b"7"]
    await consumer.commit(10)
    await consumer.close()
    consumer = await store.consumer("traces", "analytics.spans")
    assert await consumer.fetch(10, timeout=0.2) == []


async def test_every_record_at_least_once_and_none_committed_again(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    await store.append("logs", [rec(str(i).encode()) for i in range(1, 31)])
    consumer = await store.consumer("logs", "g")
    seen: set[int] = set()
    committed = 0
    for n in range(3):
        batch = await consumer.fetch(7, timeout=1)
        seen |= set(offsets(batch))
        if n % 2 == 0:
            committed = batch[-1].offset
            await consumer.commit(committed)
    await store.shutdown()  # without closing the consumer: the store hands it back

    store = await make_store()
    consumer = await store.consumer("logs", "g")
    after = await drain(consumer, limit=5)
    assert min(offsets(after)) > committed
    assert seen | set(offsets(after)) == set(range(1, 31))


async def test_groups_are_independent(store: Store) -> None:
    await store.append("metrics", [rec(b"a"), rec(b"b"), rec(b"c")])
    one = await store.consumer("metrics", "one")
    two = await store.consumer("metrics", "two")
    assert offsets(await one.fetch(10, timeout=1)) == [1, 2, 3]
    await one.commit(3)
    assert offsets(await two.fetch(2, timeout=1)) == [1, 2]
    await two.commit(1)
    groups = await group_stats(store, "metrics")
    assert (groups["one"].committed, groups["one"].lag_records) == (3, 0)
    assert (groups["two"].committed, groups["two"].lag_records) == (1, 2)


async def test_commit_is_monotonic(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.append("events", [rec(str(i).encode()) for i in range(1, 6)])
    consumer = await store.consumer("events", "g")
    assert offsets(await consumer.fetch(5, timeout=1)) == [1, 2, 3, 4, 5]
    await consumer.commit(4)
    await consumer.commit(2)  # going back changes nothing
    assert (await group_stats(store, "events"))["g"].committed == 4
    await consumer.close()
    consumer = await store.consumer("events", "g")
    assert offsets(await consumer.fetch(5, timeout=1)) == [5]


async def test_fetch_returns_empty_after_timeout(store: Store) -> None:
    consumer = await store.consumer("traces", "g")
    started = time.monotonic()
    assert await consumer.fetch(10, timeout=0.3) == []
    assert 0.2 <= time.monotonic() - started < 2.0
    await store.append("traces", [rec(b"a")])
    assert offsets(await consumer.fetch(10, timeout=1)) == [1]
    assert await consumer.fetch(10, timeout=0.1) == []


async def test_fetch_wakes_when_a_record_arrives(store: Store) -> None:
    consumer = await store.consumer("traces", "g")

    async def append_later() -> None:
        await asyncio.sleep(0.2)
        await store.append("traces", [rec(b"late")])

    task = asyncio.create_task(append_later())
    started = time.monotonic()
    got = await consumer.fetch(100, timeout=5)
    await task
    assert [r.payload for r in got] == [b"late"]
    assert time.monotonic() - started < 2.0  # not the whole timeout


# -- key-value --------------------------------------------------------------------------------


async def test_kv_get_put_delete_keys(make_store: StoreFactory) -> None:
    store = await make_store()
    kv = await store.kv("checkpoints")
    assert await kv.keys() == []
    assert await kv.get("missing") is None
    odd = "svc:checkout/p99 ✓"
    await kv.put("a", b"1")
    await kv.put(odd, b"\x00two")
    await kv.put("a", b"one")
    assert await kv.get("a") == b"one"
    assert await kv.get(odd) == b"\x00two"
    assert await kv.keys() == sorted(["a", odd])
    await kv.delete("a")
    await kv.delete("never-there")
    assert await kv.get("a") is None
    assert await kv.keys() == [odd]
    other = await store.kv("other")
    assert await other.keys() == []
    await store.shutdown()

    store = await make_store()
    assert await (await store.kv("checkpoints")).get(odd) == b"\x00two"


# -- stats, time, wait ------------------------------------------------------------------------


async def group_stats(store: Store, stream: str) -> dict[str, GroupStats]:
    stats = {s.name: s for s in (await store.stats()).streams}
    return {g.group: g for g in stats[stream].groups}


async def test_stats_reflect_appends_and_lag(store: Store) -> None:
    before = time.time_ns()
    await store.append("logs", [rec(KB), rec(KB[:500]), rec(KB)])
    consumer = await store.consumer("logs", "g")
    await consumer.fetch(2, timeout=1)
    await consumer.commit(2)
    stats = await store.stats()
    assert stats.backend == store.backend
    assert stats.location
    logs = {s.name: s for s in stats.streams}["logs"]
    assert (logs.records, logs.first_offset, logs.last_offset) == (3, 1, 3)
    assert logs.bytes >= 2500
    assert logs.oldest_time_ns is not None and logs.newest_time_ns is not None
    assert before - 10**9 <= logs.oldest_time_ns <= logs.newest_time_ns <= time.time_ns() + 10**9
    (group,) = logs.groups
    assert (group.group, group.committed, group.lag_records) == ("g", 2, 1)
    empty = {s.name: s for s in stats.streams}["metrics"]
    assert (empty.records, empty.first_offset, empty.last_offset) == (0, 0, 0)


async def test_offset_at_finds_the_first_record_at_or_after_a_time(store: Store) -> None:
    assert await store.offset_at("events", time.time_ns()) == 1  # empty: last + 1
    await store.append("events", [rec(b"a")])
    await asyncio.sleep(0.01)
    middle = time.time_ns()
    await asyncio.sleep(0.01)
    await store.append("events", [rec(b"b"), rec(b"c")])
    assert await store.offset_at("events", 0) == 1
    assert await store.offset_at("events", middle) == 2
    assert await store.offset_at("events", time.time_ns() + 10**9) == 4
    for record in await store.read("events", 1):  # exact to the nanosecond
        assert await store.offset_at("events", record.time_ns) <= record.offset
        assert await store.offset_at("events", record.time_ns + 1) > record.offset


async def test_wait_wakes_on_append_and_times_out_otherwise(store: Store) -> None:
    started = time.monotonic()
    assert await store.wait("logs", 0, 0.2) is False
    assert time.monotonic() - started >= 0.15

    async def append_later() -> None:
        await asyncio.sleep(0.1)
        await store.append("logs", [rec(b"a")])

    task = asyncio.create_task(append_later())
    started = time.monotonic()
    assert await store.wait("logs", 0, 5) is True
    assert time.monotonic() - started < 2.0
    await task
    assert await store.wait("logs", 0, 0) is True  # already there
    assert await store.wait("logs", 1, 0.05) is False


# -- backpressure -----------------------------------------------------------------------------


async def test_store_full_while_a_group_is_behind(make_store: StoreFactory) -> None:
    store = await make_store(limits={"max_backlog_bytes": 2500, "retry_after": 3})
    await store.append("traces", [rec(KB)] * 5)  # no group yet: nothing to be behind
    consumer = await store.consumer("traces", "slow")
    assert offsets(await drain(consumer)) == [1, 2, 3, 4, 5]
    await consumer.commit(5)

    await store.append("traces", [rec(KB)])
    await store.append("traces", [rec(KB)])
    with pytest.raises(StoreFull) as refused:
        await store.append("traces", [rec(KB)])
    assert refused.value.retry_after == 3
    assert await store.read("traces", 8) == []  # nothing of the refused append was stored

    await consumer.commit((await consumer.fetch(10, timeout=1))[-1].offset)
    assert await store.append("traces", [rec(KB)]) == [8]  # caught up: accepted again

    await store.append("traces", [rec(KB)])
    with pytest.raises(StoreFull):
        await store.append("traces", [rec(KB)])
    store.reconfigure(make_store.config(limits={"max_backlog_bytes": 100_000}))
    assert await store.append("traces", [rec(KB)]) == [10]


async def test_shutdown_is_idempotent_and_readiness_reports(make_store: StoreFactory) -> None:
    store = await make_store()
    assert (await store.readiness()).ready
    await store.shutdown()
    await store.shutdown()
    readiness = await store.readiness()
    assert not readiness.ready and readiness.reason


async def test_store_full_while_too_many_bytes_are_pending(make_store: StoreFactory) -> None:
    store = await make_store(limits={"max_pending_bytes": 1500})
    results: list[list[int] | BaseException] = await asyncio.gather(
        store.append("logs", [rec(KB)]),
        store.append("logs", [rec(KB)]),  # starts while the first one is pending
        return_exceptions=True,
    )
    assert results[0] == [1]
    assert isinstance(results[1], StoreFull)
    assert await store.append("logs", [rec(KB)]) == [2]  # nothing pending any more
    assert await store.append("logs", [rec(KB)] * 3) == [3, 4, 5]  # one batch may exceed it
