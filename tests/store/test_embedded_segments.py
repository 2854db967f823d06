"""Embedded-backend specifics the shared contract suite does not cover: segments,
retention, the data-directory lock and read-only access from a second process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from keiko.errors import StoreUnavailable
from keiko.records import NewRecord
from keiko.store.config import StoreConfig
from keiko.store.embedded import EmbeddedStore


def config(path: Path, **embedded: Any) -> StoreConfig:
    # Uncompressed unless a test says otherwise, so that segment sizes follow payload sizes.
    embedded.setdefault("compression", "none")
    return StoreConfig.model_validate({"embedded": {"path": str(path), **embedded}})


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_rolls_segments_and_reads_across_them(tmp_path: Path) -> None:
    async def go() -> None:
        store = EmbeddedStore(config(tmp_path, segment_bytes="10KiB"))
        await store.start()
        for i in range(50):
            await store.append("traces", [NewRecord("k", bytes([i % 256]) * 1000, 3)])
        files = list((tmp_path / "streams" / "traces").glob("*.seg.db"))
        assert len(files) >= 4  # 50 KB in 10 KB segments
        got = await store.read("traces", 1, 1000)
        assert [r.offset for r in got] == list(range(1, 51))
        assert all(r.payload == bytes([(r.offset - 1) % 256]) * 1000 for r in got)
        assert [r.offset for r in await store.read("traces", 27, 5)] == [27, 28, 29, 30, 31]
        stats = {s.name: s for s in (await store.stats()).streams}
        assert (stats["traces"].records, stats["traces"].items) == (50, 150)
        assert stats["traces"].bytes == 50_000
        await store.shutdown()

    run(go())


def test_retention_by_size_removes_oldest_segments_and_counts_unread(tmp_path: Path) -> None:
    async def go() -> None:
        cfg = config(tmp_path, segment_bytes="10KiB")
        cfg.retention.max_bytes = 30_000
        cfg.limits.max_backlog_bytes = 0  # let retention, not backpressure, act here
        store = EmbeddedStore(cfg)
        await store.start()
        reader = await store.consumer("traces", "slow")
        for _ in range(60):
            await store.append("traces", [NewRecord("k", b"x" * 1000)])
        store._last_housekeeping = 0  # run retention now rather than in 5 s
        await store.append("traces", [NewRecord("k", b"x" * 1000)])
        await asyncio.sleep(0.2)
        s = next(x for x in (await store.stats()).streams if x.name == "traces")
        assert s.bytes <= 30_000 + 11_000  # at most one segment over the bound
        assert s.first_offset > 1 and s.last_offset == 61
        assert s.expired_unconsumed == s.first_offset - 1  # the slow group lost exactly these
        first = await reader.fetch(5, 0.1)
        assert first[0].offset == s.first_offset  # reading resumes at what is still held
        await store.shutdown()

    run(go())


def test_retention_by_age(tmp_path: Path) -> None:
    async def go() -> None:
        cfg = config(tmp_path, segment_bytes="4KiB")
        cfg.retention.max_age = 0.5
        store = EmbeddedStore(cfg)
        await store.start()
        for _ in range(10):
            await store.append("logs", [NewRecord("k", b"y" * 1000)])
        await asyncio.sleep(0.8)
        store._last_housekeeping = 0
        await store.append("logs", [NewRecord("k", b"new")])
        await asyncio.sleep(0.2)
        s = next(x for x in (await store.stats()).streams if x.name == "logs")
        assert s.records < 11 and s.last_offset == 11
        await store.shutdown()

    run(go())


def test_offsets_resume_after_restart(tmp_path: Path) -> None:
    async def go() -> None:
        store = EmbeddedStore(config(tmp_path))
        await store.start()
        assert await store.append("events", [NewRecord("e", b"1"), NewRecord("e", b"2")]) == [1, 2]
        await store.shutdown()
        store = EmbeddedStore(config(tmp_path))
        await store.start()
        assert await store.append("events", [NewRecord("e", b"3")]) == [3]
        await store.shutdown()

    run(go())


def test_second_process_gets_read_only_access(tmp_path: Path) -> None:
    async def go() -> None:
        owner = EmbeddedStore(config(tmp_path))
        await owner.start()
        await owner.append("traces", [NewRecord("k", b"abc", 7)])
        code = (
            "import asyncio, sys\n"
            "from keiko.store.config import StoreConfig\n"
            "from keiko.store.embedded import EmbeddedStore\n"
            "from keiko.records import NewRecord\n"
            "async def main():\n"
            f"    cfg = {{'embedded': {{'path': {str(tmp_path)!r}}}}}\n"
            "    s = EmbeddedStore(StoreConfig.model_validate(cfg))\n"
            "    await s.start()\n"
            "    st = {x.name: x for x in (await s.stats()).streams}\n"
            "    print(s.read_only, st['traces'].records, st['traces'].items)\n"
            "    try:\n"
            "        await s.append('traces', [NewRecord('k', b'x')])\n"
            "    except Exception as e:\n"
            "        print(type(e).__name__)\n"
            "    await s.shutdown()\n"
            "asyncio.run(main())\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["True", "1", "7", "StoreUnavailable"]
        strict = EmbeddedStore(config(tmp_path), read_only=False)
        with pytest.raises(StoreUnavailable, match="in use by another keiko process"):
            await strict.start()
        await owner.shutdown()

    run(go())


def test_power_durability_uses_full_sync(tmp_path: Path) -> None:
    async def go() -> None:
        store = EmbeddedStore(config(tmp_path, durability="power"))
        await store.start()
        await store.append("traces", [NewRecord("k", b"x")])
        conn = store._logs["traces"].active
        assert conn is not None
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        await store.shutdown()

    run(go())


def test_wait_wakes_on_append(tmp_path: Path) -> None:
    async def go() -> None:
        store = EmbeddedStore(config(tmp_path))
        await store.start()
        waiter = asyncio.create_task(store.wait("events", 0, 5.0))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await store.append("events", [NewRecord("e", b"{}")])
        assert await waiter is True
        assert time.monotonic() - started < 1.0
        assert await store.wait("events", 1, 0.1) is False
        await store.shutdown()

    run(go())


def test_zstd_compression_shrinks_the_disk_and_reads_back_exact_bytes(tmp_path: Path) -> None:
    async def go() -> None:
        store = EmbeddedStore(config(tmp_path / "z", compression="zstd"))
        plain = EmbeddedStore(config(tmp_path / "p", compression="none"))
        payloads = [(b"service.name=checkout span=%d " % i) * 400 for i in range(20)]
        payloads.append(b"tiny")  # under the threshold: stored raw
        for s in (store, plain):
            await s.start()
            for p in payloads:
                await s.append("traces", [NewRecord("k", p, 1)])
        got = await store.read("traces", 1, 100)
        assert [r.payload for r in got] == payloads
        z = next(x for x in (await store.stats()).streams if x.name == "traces")
        p = next(x for x in (await plain.stats()).streams if x.name == "traces")
        assert z.bytes == p.bytes == sum(map(len, payloads))  # stats count bytes as appended
        stored_z = store._logs["traces"].segments[-1].stored
        assert stored_z * 5 < plain._logs["traces"].segments[-1].stored
        for s in (store, plain):
            await s.shutdown()

    run(go())
