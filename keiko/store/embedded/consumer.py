"""Consumer groups and key-value buckets of the embedded backend."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keiko.records import Record

if TYPE_CHECKING:
    from keiko.store.embedded.store import EmbeddedStore


class EmbeddedConsumer:
    """Reads a stream after its group's committed offset; at-least-once across restarts."""

    def __init__(self, store: EmbeddedStore, stream: str, group: str, committed: int) -> None:
        self.stream, self.group = stream, group
        self._store = store
        self._position = committed  # last offset handed out by fetch()

    async def fetch(self, max_records: int = 100, timeout: float = 1.0) -> list[Record]:
        records = await self._store.read(self.stream, self._position + 1, max_records)
        if not records and await self._store.wait(self.stream, self._position, timeout):
            records = await self._store.read(self.stream, self._position + 1, max_records)
        if records:
            self._position = records[-1].offset
        return records

    async def commit(self, offset: int) -> None:
        await self._store._commit(self.stream, self.group, offset)

    async def close(self) -> None:
        """Nothing to release: uncommitted records are delivered again to the next consumer."""


class EmbeddedKV:
    """A key-value bucket in meta.db; writes go through the writer thread."""

    def __init__(self, store: EmbeddedStore, bucket: str) -> None:
        self._store, self.bucket = store, bucket

    async def get(self, key: str) -> bytes | None:
        meta_path = self._store.path / "meta.db"
        if not meta_path.exists():
            return None

        def read() -> bytes | None:
            row = (
                self._store._cache.get(meta_path)
                .execute("SELECT value FROM kv WHERE bucket = ? AND key = ?", (self.bucket, key))
                .fetchone()
            )
            return None if row is None else bytes(row[0])

        return await self._store._in_reader(read)

    async def put(self, key: str, value: bytes) -> None:
        meta = self._store._meta
        assert meta is not None or self._store.read_only
        await self._store._run_on_writer(lambda: meta.kv_put(self.bucket, key, bytes(value)))  # type: ignore[union-attr]

    async def swap(self, key: str, expected: bytes | None, value: bytes) -> bool:
        meta = self._store._meta
        # Read, compare and write in ONE writer-thread call: no other write can interleave.
        expect = None if expected is None else bytes(expected)
        return await self._store._run_on_writer(
            lambda: meta.kv_swap(self.bucket, key, expect, bytes(value))  # type: ignore[union-attr]
        )

    async def delete(self, key: str) -> None:
        meta = self._store._meta
        await self._store._run_on_writer(lambda: meta.kv_delete(self.bucket, key))  # type: ignore[union-attr]

    async def keys(self) -> list[str]:
        meta_path = self._store.path / "meta.db"
        if not meta_path.exists():
            return []

        def read() -> list[str]:
            return [
                r[0]
                for r in self._store._cache.get(meta_path).execute(
                    "SELECT key FROM kv WHERE bucket = ? ORDER BY key", (self.bucket,)
                )
            ]

        return await self._store._in_reader(read)
