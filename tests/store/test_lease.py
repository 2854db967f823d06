"""Lease (leader election over KeyValue.swap) over both backends (see conftest.py)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from keiko.store.base import Store
from keiko.store.lease import Lease

TTL = 0.6  # short for speed; production leases use >= 10 s (see keiko/store/lease.py)


async def test_acquire_renew_release(store: Store) -> None:
    kv = await store.kv("leases")
    lease = Lease(kv, "alert", "a", TTL, info={"url": "http://a:9093"})
    assert not lease.held
    assert await lease.current() is None
    assert await lease.acquire() is True
    assert lease.held
    record = await lease.current()
    assert record is not None
    assert record["holder"] == "a" and record["info"] == {"url": "http://a:9093"}
    assert time.time() < record["expires"] <= time.time() + TTL
    assert await lease.acquire() is True  # already ours: idempotent
    before = record["expires"]
    await asyncio.sleep(0.05)
    assert await lease.renew() is True
    renewed = await lease.current()
    assert renewed is not None and renewed["expires"] > before
    await lease.release()
    assert not lease.held
    assert await lease.current() is None
    assert await lease.renew() is False  # released: renewing must not resurrect it
    assert json.loads(await kv.get("alert") or b"")["holder"] == ""


async def test_second_holder_waits_for_expiry_then_takes_over(store: Store) -> None:
    kv = await store.kv("leases")
    first, second = Lease(kv, "alert", "a", TTL), Lease(kv, "alert", "b", TTL)
    assert await first.acquire() is True
    assert await second.acquire() is False
    assert not second.held
    assert await second.renew() is False
    current = await second.current()
    assert current is not None and current["holder"] == "a"

    await asyncio.sleep(TTL + 0.1)  # first stops renewing
    assert not first.held
    assert await second.current() is None
    assert await second.acquire() is True
    assert second.held
    assert await first.renew() is False  # the old holder learns it lost the lease
    assert not first.held
    current = await first.current()
    assert current is not None and current["holder"] == "b"


async def test_release_lets_a_standby_in_at_once(store: Store) -> None:
    kv = await store.kv("leases")
    first, second = Lease(kv, "alert", "a", 30.0), Lease(kv, "alert", "b", 30.0)
    assert await first.acquire() is True
    assert await second.acquire() is False
    await second.release()  # not ours: must not free it
    assert await second.acquire() is False
    await first.release()
    assert await second.acquire() is True


async def test_concurrent_acquires_exactly_one_wins(store: Store) -> None:
    kv = await store.kv("leases")
    for round_ in range(2):  # round 1 contends for an expired record, not an absent one
        leases = [Lease(kv, "alert", f"h{i}-{round_}", TTL) for i in range(20)]
        results = await asyncio.gather(*(lease.acquire() for lease in leases))
        assert results.count(True) == 1, round_
        winner = leases[results.index(True)]
        assert [lease.held for lease in leases].count(True) == 1
        current = await winner.current()
        assert current is not None and current["holder"] == winner.holder
        await asyncio.sleep(TTL + 0.1)


async def test_garbled_record_counts_as_free(store: Store) -> None:
    kv = await store.kv("leases")
    await kv.put("alert", b"not json")
    lease = Lease(kv, "alert", "a", TTL)
    assert await lease.current() is None
    assert await lease.acquire() is True


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="ttl"):
        Lease(None, "alert", "a", 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="holder"):
        Lease(None, "alert", "", 10)  # type: ignore[arg-type]
