"""Checkpoints in the store's key-value space: chunked, compressed, manifest last, on both
backends (an embedded store and a real nats-server)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures.nats import nats_store_config

from keiko.store import open_store
from keiko.store.base import KeyValue, Store
from keiko.store.config import StoreConfig
from keiko.stream.checkpoint import CheckpointError, CheckpointStore

Body = Callable[[KeyValue], Awaitable[None]]


@pytest.fixture(params=["embedded", "nats"])
def run_with_kv(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Body], None]:
    """Runs ``body(kv)`` in a fresh event loop with a bucket of a started store."""
    config: dict[str, Any]
    if request.param == "nats":
        config = nats_store_config(request.getfixturevalue("nats_server"))
    else:
        config = {"backend": "embedded", "embedded": {"path": str(tmp_path / "data")}}

    def run(body: Body) -> None:
        async def main() -> None:
            store: Store = open_store(StoreConfig.model_validate(config))
            await store.start()
            try:
                await body(await store.kv("anomaly"))
            finally:
                await store.shutdown()

        asyncio.run(main())

    return run


def test_round_trip_over_many_chunks(run_with_kv: Callable[[Body], None]) -> None:
    # Random bytes do not compress: 2.5 MB in 600 KB chunks needs 5 values, each under
    # NATS's 1 MiB message limit.
    parts = {"table": os.urandom(1_500_000), "bank": os.urandom(1_000_000), "empty": b""}

    async def body(kv: KeyValue) -> None:
        cp = CheckpointStore(kv, "detector", 600_000)
        assert await cp.load() is None
        saved = await cp.save(parts, offset=42)
        assert saved.chunks == 5 and saved.raw_bytes == 2_500_000
        loaded = await CheckpointStore(kv, "detector", 600_000).load()
        assert loaded is not None
        assert loaded.parts == parts and loaded.offset == 42
        assert list(loaded.parts) == ["table", "bank", "empty"]

    run_with_kv(body)


def test_a_new_save_replaces_the_old_chunks(run_with_kv: Callable[[Body], None]) -> None:
    async def body(kv: KeyValue) -> None:
        cp = CheckpointStore(kv, "detector", 1000)
        await cp.save({"a": os.urandom(5000)}, offset=1)
        await cp.save({"a": b"small" * 10}, offset=2)
        keys = await kv.keys()
        assert sorted(keys) == ["detector/2/0", "detector/manifest"]
        loaded = await CheckpointStore(kv, "detector", 1000).load()
        assert loaded is not None and loaded.parts == {"a": b"small" * 10}
        assert loaded.offset == 2 and loaded.generation == 2

    run_with_kv(body)


def test_a_crash_before_the_manifest_keeps_the_old_checkpoint(
    run_with_kv: Callable[[Body], None],
) -> None:
    async def body(kv: KeyValue) -> None:
        cp = CheckpointStore(kv, "detector", 1000)
        await cp.save({"a": b"old"}, offset=7)
        # A save that died after writing chunks of generation 2, before its manifest:
        await kv.put("detector/2/0", b"partial")
        fresh = CheckpointStore(kv, "detector", 1000)
        loaded = await fresh.load()
        assert loaded is not None and loaded.parts == {"a": b"old"} and loaded.offset == 7
        await fresh.save({"a": b"new"}, offset=9)  # overwrites generation 2, then cleans up
        assert sorted(await kv.keys()) == ["detector/2/0", "detector/manifest"]
        again = await CheckpointStore(kv, "detector", 1000).load()
        assert again is not None and again.parts == {"a": b"new"}

    run_with_kv(body)


def test_a_damaged_checkpoint_is_refused(run_with_kv: Callable[[Body], None]) -> None:
    async def body(kv: KeyValue) -> None:
        cp = CheckpointStore(kv, "detector", 100)
        await cp.save({"a": os.urandom(300)}, offset=3)
        await kv.put("detector/1/1", b"x" * 100)
        with pytest.raises(CheckpointError, match="checksum"):
            await cp.load()
        await kv.delete("detector/1/2")
        with pytest.raises(CheckpointError, match="missing"):
            await cp.load()
        await kv.put("detector/manifest", b"{not json")
        with pytest.raises(CheckpointError, match="manifest"):
            await cp.load()

    run_with_kv(body)
