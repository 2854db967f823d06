"""KeyValue.swap (compare-and-set) over both backends (see conftest.py)."""

from __future__ import annotations

import asyncio

from keiko.store.base import Store


async def test_swap_on_absent_key(store: Store) -> None:
    kv = await store.kv("swap")
    assert await kv.swap("k", b"something", b"v") is False  # absent is not b"something"
    assert await kv.get("k") is None
    assert await kv.swap("k", None, b"v1") is True
    assert await kv.get("k") == b"v1"
    assert await kv.swap("k", None, b"v2") is False  # now present: create must fail
    assert await kv.get("k") == b"v1"


async def test_swap_on_present_key(store: Store) -> None:
    kv = await store.kv("swap")
    await kv.put("k", b"one")
    assert await kv.swap("k", b"two", b"three") is False
    assert await kv.get("k") == b"one"
    assert await kv.swap("k", b"one", b"two") is True
    assert await kv.get("k") == b"two"
    assert await kv.swap("k", b"one", b"again") is False  # the old value is stale now
    assert await kv.get("k") == b"two"
    # The empty value is a value, distinct from "absent".
    assert await kv.swap("k", b"two", b"") is True
    assert await kv.swap("k", None, b"x") is False
    assert await kv.swap("k", b"", b"\x00bin") is True
    assert await kv.get("k") == b"\x00bin"
    assert await kv.keys() == ["k"]


async def test_swap_on_deleted_key(store: Store) -> None:
    kv = await store.kv("swap")
    await kv.put("k", b"old")
    await kv.delete("k")
    assert await kv.swap("k", b"old", b"new") is False  # deleted is not the old value
    assert await kv.get("k") is None
    assert await kv.swap("k", None, b"new") is True
    assert await kv.get("k") == b"new"
    assert await kv.keys() == ["k"]
    # Delete and re-create once more: the delete marker's revision moved on.
    await kv.delete("k")
    assert await kv.swap("k", None, b"newer") is True
    assert await kv.get("k") == b"newer"


async def test_swap_leaves_other_keys_and_buckets_alone(store: Store) -> None:
    kv, other = await store.kv("swap"), await store.kv("swap-other")
    await kv.put("a", b"1")
    await other.put("k", b"1")
    assert await kv.swap("k", None, b"2") is True
    assert await kv.get("a") == b"1"
    assert await other.get("k") == b"1"


async def test_concurrent_swaps_from_one_value_exactly_one_wins(store: Store) -> None:
    kv = await store.kv("swap")
    await kv.put("k", b"start")
    results = await asyncio.gather(*(kv.swap("k", b"start", b"w%d" % i) for i in range(20)))
    assert results.count(True) == 1
    assert await kv.get("k") == b"w%d" % results.index(True)


async def test_concurrent_creates_exactly_one_wins(store: Store) -> None:
    kv = await store.kv("swap")
    for round_ in range(2):  # round 1 re-creates over a delete marker
        results = await asyncio.gather(*(kv.swap("k", None, b"w%d" % i) for i in range(20)))
        assert results.count(True) == 1, round_
        assert await kv.get("k") == b"w%d" % results.index(True)
        await kv.delete("k")
