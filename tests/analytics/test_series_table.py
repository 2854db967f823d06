"""SeriesTable: dense ids, the cap, idle eviction with id reuse, snapshot/restore."""

from __future__ import annotations

import numpy as np
import pytest

from analytics.series.table import SeriesTable
from analytics.series.types import SeriesKind


def add(table: SeriesTable, key: str, now: float = 0.0) -> int:
    return table.intern(key, key, "svc", SeriesKind.GAUGE, "ms", {"k": key}, now=now)


def test_ids_are_dense_and_stable() -> None:
    table = SeriesTable(10)
    assert [add(table, k) for k in "abc"] == [0, 1, 2]
    assert add(table, "b") == 1
    assert table.lookup("c") == 2 and table.lookup("zz") == -1
    info = table.info(1)
    assert info is not None and info.key == "b" and info.unit == "ms" and info.labels == {"k": "b"}
    assert len(table) == 3 and table.high_water == 3


def test_cap_refuses_and_counts_points() -> None:
    table = SeriesTable(2)
    add(table, "a")
    add(table, "b")
    assert add(table, "c") == -1
    assert add(table, "c") == -1  # counted again: refused counts points, not keys
    assert add(table, "a") == 0  # known keys still resolve
    table.refuse(3)
    assert table.refused == 5


def test_evict_idle_frees_and_reuses_lowest_ids() -> None:
    table = SeriesTable(3)
    for k in "abc":
        add(table, k)
    table.touch(np.array([0, 1, 2]), np.array([100.0, 50.0, 40.0]))
    told: list[list[int]] = []
    table.on_evict(lambda ids: told.append(ids.tolist()))
    freed = table.evict_idle(older_than=60.0)
    assert freed.tolist() == [1, 2] and told == [[1, 2]]
    assert table.lookup("b") == -1 and table.info(1) is None and len(table) == 1
    assert table.last_seen[1] == -np.inf
    assert add(table, "d") == 1 and add(table, "e") == 2
    assert add(table, "f") == -1  # the cap counts live series
    assert table.evict_idle(older_than=0.0).tolist() == []


def test_touch_keeps_the_latest_time() -> None:
    table = SeriesTable(4)
    add(table, "a")
    table.touch(np.array([0, 0]), np.array([5.0, 3.0]))
    table.touch(np.array([0]), np.array([4.0]))
    assert table.last_seen[0] == 5.0
    with pytest.raises(ValueError):
        table.last_seen[0] = 1.0  # read-only view


def test_grows_past_the_initial_array() -> None:
    table = SeriesTable(5000)
    ids = [add(table, f"k{i}", now=float(i)) for i in range(3000)]
    assert ids == list(range(3000))
    assert table.last_seen[2999] == 2999.0


def test_snapshot_restore_keeps_ids_and_holes() -> None:
    table = SeriesTable(10)
    for k in "abcd":
        add(table, k, now=10.0)
    table.touch(np.array([0, 2, 3]), np.array([20.0, 20.0, 20.0]))
    table.evict_idle(15.0)  # frees "b" (id 1)
    data = table.snapshot()
    assert len(data) < 300
    other = SeriesTable(10)
    add(other, "zzz")
    told: list[list[int]] = []
    other.on_evict(lambda ids: told.append(ids.tolist()))
    other.restore(data)
    assert told == [[0]]  # the old id 0 meant "zzz": listeners must drop it
    assert [other.lookup(k) for k in "abcd"] == [0, -1, 2, 3]
    assert other.last_seen.tolist() == [20.0, -np.inf, 20.0, 20.0]
    assert add(other, "e") == 1  # the hole is reused first
    assert add(other, "f") == 4
    info = other.info(3)
    assert info is not None and info.kind is SeriesKind.GAUGE and info.service == "svc"


def test_restore_into_a_smaller_cap_drops_high_ids() -> None:
    table = SeriesTable(10)
    for k in "abcd":
        add(table, k)
    small = SeriesTable(2)
    small.restore(table.snapshot())
    assert [small.lookup(k) for k in "abcd"] == [0, 1, -1, -1]


@pytest.mark.parametrize("data", [b"", b"junk", __import__("zlib").compress(b'{"v": 9}')])
def test_restore_refuses_garbage_and_keeps_state(data: bytes) -> None:
    table = SeriesTable(4)
    add(table, "a")
    with pytest.raises(ValueError, match="not a series table snapshot"):
        table.restore(data)
    assert table.lookup("a") == 0
