"""EmbeddedStore: the default backend, a directory of SQLite (WAL) files on local disk."""

from __future__ import annotations

import asyncio
import bisect
import fcntl
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from keiko.errors import StoreFull, StoreUnavailable
from keiko.records import NewRecord, Record, Stream, check_stream_name
from keiko.store.base import GroupStats, Readiness, StoreStats
from keiko.store.config import Durability, StoreConfig
from keiko.store.embedded.checkpoint import Checkpointer
from keiko.store.embedded.codec import Compressor
from keiko.store.embedded.consumer import EmbeddedConsumer, EmbeddedKV
from keiko.store.embedded.log import StreamLog
from keiko.store.embedded.meta import Meta
from keiko.store.embedded.segments import ReaderCache, Segment, edges, list_segments, read_rows
from keiko.store.embedded.stats import group_rows, stream_stats
from keiko.store.embedded.writer import Append, Task, Writer

log = logging.getLogger(__name__)
T = TypeVar("T")
MIN_FREE_BYTES = 64 * 1024 * 1024
HOUSEKEEPING_INTERVAL = 5.0


class EmbeddedStore:
    """Streams as segment files under ``<path>/streams/<name>/``, offsets and KV in ``meta.db``.

    One process owns a data directory for writing (a lock file says which); another process
    (``keiko store stats``) may open it at the same time and gets a read-only store.
    """

    backend = "embedded"

    def __init__(self, config: StoreConfig, *, read_only: bool | None = None) -> None:
        self.config = config
        # Absolute now: bcc's compiler changes the process's working directory while it
        # builds an eBPF probe (on another thread), and a relative path would then open
        # files under the kernel headers.
        self.path = Path(config.embedded.path).absolute()
        self.read_only = read_only
        self._sync = "FULL" if config.embedded.durability is Durability.POWER else "NORMAL"
        self._logs: dict[str, StreamLog] = {}
        self._groups: dict[str, dict[str, tuple[int, int]]] = {}  # stream -> group -> (off, cum)
        self._pending = 0
        self._waiters: dict[str, asyncio.Event] = {}
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="keiko-store-read")
        self._cache = ReaderCache()
        self._writer: Writer | None = None
        self._checkpointer: Checkpointer | None = None
        emb = config.embedded
        self._compressor = Compressor(emb.compression == "zstd", emb.compression_level)
        self._meta: Meta | None = None
        self._lock_fd: int | None = None
        self._last_housekeeping = 0.0
        self._closed = False

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.read_only is not True:
            owner = self._take_lock()
            if owner and self.read_only is False:
                raise StoreUnavailable(
                    f"data directory {self.path} is in use by another keiko "
                    f"process ({owner}); stop it or set store.embedded.path"
                )
            self.read_only = bool(owner)
        if self.read_only:
            return
        self._meta = Meta(self.path / "meta.db", self._sync)
        for stream, group, committed, cum in self._meta.groups():
            self._groups.setdefault(stream, {})[group] = (committed, cum)
        streams_dir = self.path / "streams"
        streams_dir.mkdir(parents=True, exist_ok=True)
        names = {s.value for s in Stream} | {p.name for p in streams_dir.iterdir() if p.is_dir()}
        self._checkpointer = Checkpointer()
        self._checkpointer.start()
        for name in sorted(names):
            self._open_log(name)
        self._writer = Writer(
            loop, self._append_batch, self._after_batch, self._notify, self._written
        )
        self._writer.start()
        log.info(
            "embedded store at %s (%s durability), streams: %s",
            self.path,
            self.config.embedded.durability.value,
            ", ".join(sorted(self._logs)),
        )

    def _take_lock(self) -> str:
        """Lock the data directory; return a description of the owner if another has it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            return f"pid {owner}" if owner else "unknown pid"
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd
        return ""

    async def shutdown(self, deadline: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        if self._writer is not None:
            await asyncio.to_thread(self._writer.stop, timeout)
        if self._checkpointer is not None:
            self._checkpointer.stop()
        for stream_log in self._logs.values():
            stream_log.close()
        if self._meta is not None:
            self._meta.close()
        self._readers.shutdown(wait=False, cancel_futures=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def reconfigure(self, config: StoreConfig) -> None:
        """Limits and retention apply at once; path and durability need a restart."""
        self.config = self.config.model_copy(
            update={"limits": config.limits, "retention": config.retention}
        )

    # -- writes -----------------------------------------------------------------------------

    async def append(self, stream: str, records: Sequence[NewRecord]) -> list[int]:
        writer = self._require_writer()
        if not records:
            return []
        nbytes = sum(len(r.payload) for r in records)
        limits = self.config.limits
        if self._pending + nbytes > limits.max_pending_bytes and self._pending:
            raise StoreFull(
                f"{self._pending} bytes wait to be written "
                f"(store.limits.max_pending_bytes={limits.max_pending_bytes})",
                limits.retry_after,
            )
        stream_log = self._logs.get(stream) or self._open_log(check_stream_name(stream))
        self._check_backlog(stream_log, nbytes)
        fut: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending += nbytes
        writer.submit(Append(stream, records, nbytes, fut))
        return await fut

    def _check_backlog(self, stream_log: StreamLog, nbytes: int) -> None:
        limit = self.config.limits.max_backlog_bytes
        groups = self._groups.get(stream_log.name)
        if not limit or not groups:
            return
        slowest = min(cum for _, cum in groups.values())
        behind = stream_log.cum_bytes - max(slowest, stream_log.cum_before_first())
        if behind + nbytes > limit:
            raise StoreFull(
                f"stream {stream_log.name!r}: the slowest consumer group is {behind} bytes behind "
                f"(store.limits.max_backlog_bytes={limit})",
                self.config.limits.retry_after,
            )

    def _require_writer(self) -> Writer:
        if self._writer is None or self._closed:
            why = "it is read-only (another process owns it)" if self.read_only else "it is closed"
            raise StoreUnavailable(f"the store at {self.path} cannot take writes: {why}")
        return self._writer

    async def _run_on_writer(self, fn: Callable[[], T]) -> T:
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._require_writer().submit(Task(fn, fut))
        return await fut

    def _open_log(self, name: str) -> StreamLog:
        retire = self._checkpointer.retire if self._checkpointer else sqlite3.Connection.close
        stream_log = StreamLog(
            name, self.path / "streams" / name, self._sync, retire, self._compressor
        )
        stream_log.open()
        self._logs[name] = stream_log
        return stream_log

    # Called on the writer thread.
    def _append_batch(self, stream: str, batch: list[Sequence[NewRecord]]) -> list[list[int]]:
        return self._logs[stream].append(batch)

    def _written(self, nbytes: int) -> None:
        self._pending -= nbytes  # int ops on one attribute are atomic under the GIL

    def _after_batch(self, touched: set[str]) -> None:
        emb = self.config.embedded
        for name in touched:
            self._logs[name].maybe_roll(emb.segment_bytes, emb.segment_age)
        now = time.monotonic()
        if now - self._last_housekeeping < HOUSEKEEPING_INTERVAL:
            return
        self._last_housekeeping = now
        ret = self.config.retention
        for name, stream_log in list(self._logs.items()):
            stream_log.maybe_roll(emb.segment_bytes, emb.segment_age)
            for seg in stream_log.expire(ret.max_age, ret.max_bytes):
                self._count_expired(name, seg)

    def _count_expired(self, stream: str, seg: Segment) -> None:
        lost = max(
            (
                seg.last - max(committed, seg.base - 1)
                for committed, _ in self._groups.get(stream, {}).values()
            ),
            default=0,
        )
        if lost > 0 and self._meta is not None:
            self._meta.add_expired(stream, lost)
            log.warning(
                "retention removed %d records of stream %r that a consumer group had not "
                "read (raise store.retention or store.limits.max_backlog_bytes)",
                lost,
                stream,
            )

    def _notify(self, streams: set[str]) -> None:
        for name in streams:
            event = self._waiters.pop(name, None)
            if event is not None:
                event.set()

    # -- reads ------------------------------------------------------------------------------

    async def _in_reader(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._readers, fn)

    def _segments(self, stream: str) -> list[Segment]:
        stream_log = self._logs.get(stream)
        if stream_log is not None:
            return stream_log.snapshot()
        directory = self.path / "streams" / check_stream_name(stream)
        return list_segments(directory) if directory.is_dir() else []

    async def read(self, stream: str, start: int, limit: int = 100) -> list[Record]:
        return await self._in_reader(lambda: self._read(stream, max(1, start), limit))

    def _read(self, stream: str, start: int, limit: int) -> list[Record]:
        for attempt in range(3):
            segments = self._segments(stream)
            i = max(0, bisect.bisect_right([s.base for s in segments], start) - 1)
            out: list[Record] = []
            try:
                for seg in segments[i:]:
                    out += read_rows(self._cache.get(seg.path), start, limit - len(out))
                    if len(out) >= limit:
                        break
                    start = max(start, out[-1].offset + 1 if out else start)
                return out
            except Exception:
                # retention removed a segment under us: forget it and look again
                self._cache.forget_missing()
                if attempt == 2:
                    raise
        return []

    async def offset_at(self, stream: str, time_ns: int) -> int:
        def find() -> int:
            segments = self._segments(stream)
            for seg in segments:
                row = (
                    self._cache.get(seg.path)
                    .execute("SELECT min(offset) FROM records WHERE time_ns >= ?", (time_ns,))
                    .fetchone()
                )
                if row and row[0] is not None:
                    return int(row[0])
            return self._last_offset(stream, segments) + 1

        return await self._in_reader(find)

    def _last_offset(self, stream: str, segments: list[Segment]) -> int:
        stream_log = self._logs.get(stream)
        if stream_log is not None:
            return stream_log.next_offset - 1
        for seg in reversed(segments):
            _, last = edges(self._cache.get(seg.path))
            if last:
                return last.offset
        return segments[-1].base - 1 if segments else 0

    async def wait(self, stream: str, after: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            stream_log = self._logs.get(stream)
            if stream_log is not None and stream_log.next_offset - 1 > after:
                return True
            if stream_log is None and self.read_only:
                last = await self._in_reader(
                    lambda: self._last_offset(stream, self._segments(stream))
                )
                if last > after:
                    return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self.read_only:  # no writer in this process: poll
                await asyncio.sleep(min(0.5, remaining))
                continue
            event = self._waiters.setdefault(stream, asyncio.Event())
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                return False

    # -- groups and kv ----------------------------------------------------------------------

    async def consumer(
        self, stream: str, group: str, *, partition: int | None = None, start: int | None = None
    ) -> EmbeddedConsumer:
        check_stream_name(stream)
        if not group or len(group) > 128:
            raise ValueError("a consumer group name must be 1-128 characters")
        if partition not in (None, 0):  # one process owns the directory: nothing to share
            raise ValueError("the embedded store's streams have one partition (0)")
        if stream not in self._logs and not self.read_only:
            self._open_log(stream)
        if not self.read_only and group not in self._groups.get(stream, {}):
            assert self._meta is not None
            meta = self._meta
            await self._run_on_writer(lambda: meta.ensure_group(stream, group, time.time_ns()))
            self._groups.setdefault(stream, {})[group] = (0, 0)
        committed = self._groups.get(stream, {}).get(group, (0, 0))[0]
        position = committed if start is None else max(start - 1, 0)
        return EmbeddedConsumer(self, stream, group, position)

    async def _commit(self, stream: str, group: str, offset: int) -> None:
        assert self._meta is not None
        meta, stream_log = self._meta, self._logs[stream]

        def write() -> int:
            cum = stream_log.cum_at(offset)
            meta.commit(stream, group, offset, cum, time.time_ns())
            return cum

        cum = await self._run_on_writer(write)
        current = self._groups.setdefault(stream, {}).get(group, (0, 0))
        if offset > current[0]:
            self._groups[stream][group] = (offset, cum)

    async def kv(self, bucket: str) -> EmbeddedKV:
        if not bucket or len(bucket) > 128:
            raise ValueError("a bucket name must be 1-128 characters")
        return EmbeddedKV(self, bucket)

    async def streams(self) -> list[str]:
        if not self.read_only:
            return sorted(self._logs)
        directory = self.path / "streams"
        return (
            sorted(p.name for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []
        )

    # -- stats and health -------------------------------------------------------------------

    async def stats(self) -> StoreStats:
        names = await self.streams()
        return await self._in_reader(lambda: self._stats(names))

    def _stats(self, names: list[str]) -> StoreStats:
        groups, expired = group_rows(self)
        out = [
            stream_stats(self, name, groups.get(name, []), expired.get(name, 0)) for name in names
        ]
        disk = sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())
        return StoreStats(self.backend, str(self.path.resolve()), out, disk)

    async def readiness(self) -> Readiness:
        if self.read_only:
            return Readiness(False, "read-only: another process owns the data directory")
        if self._writer is None or self._closed:
            return Readiness(False, "the store is not running")
        if self._writer.thread is not None and not self._writer.thread.is_alive():
            return Readiness(False, "the store's writer thread has stopped")
        if self._writer.error:
            return Readiness(False, self._writer.error)
        if not os.access(self.path, os.W_OK):
            return Readiness(False, f"data directory {self.path} is not writable")
        free = shutil.disk_usage(self.path).free
        if free < MIN_FREE_BYTES:
            return Readiness(False, f"only {free} bytes free on the disk of {self.path}")
        return Readiness(True)

    # used by stats.py / consumer.py
    def group_stats(
        self,
        stream: str,
        rows: list[tuple[str, int, int]],
        first: int,
        last: int,
        cum_first: int,
        cum_last: int,
    ) -> list[GroupStats]:
        out = []
        for group, committed, cum in rows:
            lag = max(0, last - max(committed, first - 1))
            out.append(GroupStats(group, committed, lag, max(0, cum_last - max(cum, cum_first))))
        return out
