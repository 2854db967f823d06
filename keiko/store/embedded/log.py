"""One stream's log on disk: its segments, the active one, and appends (writer thread only)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from keiko.records import NewRecord
from keiko.store.embedded.codec import Compressor
from keiko.store.embedded.segments import (
    SCHEMA,
    Segment,
    connect,
    edges,
    list_segments,
    segment_path,
)


class StreamLog:
    """The segments of one stream. Appends, rolls and retention run on the writer thread;
    other threads read ``snapshot()`` and the counters, which are swapped atomically."""

    def __init__(
        self,
        name: str,
        directory: Path,
        synchronous: str,
        retire: Callable[[sqlite3.Connection], None] = sqlite3.Connection.close,
        compressor: Compressor | None = None,
    ) -> None:
        self.name = name
        self.retire = retire  # closes a connection the writer is done with, off its thread
        self.compressor = compressor or Compressor(enabled=False, level=0)
        self.dir = directory
        self.synchronous = synchronous
        self.lock = threading.Lock()
        self.segments: list[Segment] = []
        self.active: sqlite3.Connection | None = None
        self.next_offset = 1
        self.cum_bytes = 0  # payload bytes ever appended to the stream
        self.cum_items = 0
        self.last_time_ns = 0

    def open(self) -> None:
        """Find the segments on disk and resume after the last durable record."""
        self.dir.mkdir(parents=True, exist_ok=True)
        segments = list_segments(self.dir)
        for seg in segments:
            conn = connect(seg.path, synchronous=self.synchronous)
            conn.executescript(SCHEMA)
            first, last = edges(conn)
            if first and last:
                seg.last, seg.first_time_ns, seg.last_time_ns = (
                    last.offset,
                    first.time_ns,
                    last.time_ns,
                )
                seg.nbytes = last.cum_bytes - first.cum_bytes + first.size
                self.cum_bytes, self.cum_items = last.cum_bytes, last.cum_items
                self.last_time_ns = last.time_ns
                self.next_offset = last.offset + 1
            else:
                seg.last = seg.base - 1
                self.next_offset = max(self.next_offset, seg.base)
            seg.stored = _disk_size(seg.path)
            if seg is segments[-1]:
                self.active = conn
            else:
                conn.close()
        self.segments = segments
        if not segments:
            self._new_segment()

    def snapshot(self) -> list[Segment]:
        """A copy of the segment list, safe to use from any thread."""
        with self.lock:
            return list(self.segments)

    def append(self, batch: Sequence[Sequence[NewRecord]]) -> list[list[int]]:
        """Append several requests' records in ONE transaction (group commit); offsets per request.

        On failure nothing is appended and the counters are unchanged.
        """
        assert self.active is not None
        seg = self.segments[-1]
        now = max(time.time_ns(), self.last_time_ns)
        off, cum_b, cum_i = self.next_offset, self.cum_bytes, self.cum_items
        rows, result, stored = [], [], 0
        encode = self.compressor.encode
        for records in batch:
            offsets = []
            for r in records:
                size = len(r.payload)
                cum_b += size
                cum_i += r.count
                enc, data = encode(r.payload)
                stored += len(data)
                rows.append((off, now, r.kind, r.count, r.key, size, cum_b, cum_i, enc, data))
                offsets.append(off)
                off += 1
            result.append(offsets)
        conn = self.active
        conn.execute("BEGIN")
        try:
            conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        with self.lock:
            if seg.empty:
                seg.first_time_ns = now
            seg.last, seg.last_time_ns = off - 1, now
            seg.nbytes += cum_b - self.cum_bytes
            seg.stored += stored
            self.next_offset, self.cum_bytes, self.cum_items, self.last_time_ns = (
                off,
                cum_b,
                cum_i,
                now,
            )
        return result

    def cum_at(self, offset: int) -> int:
        """The stream's cum_bytes just after ``offset`` (for a group's lag in bytes)."""
        if offset >= self.next_offset - 1:
            return self.cum_bytes
        for seg in reversed(self.snapshot()):
            if seg.base <= offset:
                conn = self.active if seg is self.segments[-1] else connect(seg.path, readonly=True)
                assert conn is not None
                row = conn.execute(
                    "SELECT cum_bytes FROM records WHERE offset <= ? ORDER BY offset DESC LIMIT 1",
                    (offset,),
                ).fetchone()
                if conn is not self.active:
                    conn.close()
                if row:
                    return int(row[0])
        return self.cum_before_first()

    def cum_before_first(self) -> int:
        """cum_bytes before the oldest record still held."""
        return self.cum_bytes - sum(s.nbytes for s in self.snapshot())

    def maybe_roll(self, segment_bytes: int, segment_age: float) -> None:
        """Start a new segment when the active one is big or old enough."""
        seg = self.segments[-1]
        if seg.empty:
            return
        too_old = time.time_ns() - seg.first_time_ns >= segment_age * 1e9
        if seg.stored >= segment_bytes or too_old:
            self._new_segment()

    def _new_segment(self) -> None:
        if self.active is not None:
            self.retire(self.active)
        seg = Segment(
            self.next_offset, segment_path(self.dir, self.next_offset), last=self.next_offset - 1
        )
        conn = connect(seg.path, synchronous=self.synchronous)
        conn.executescript(SCHEMA)
        # Make the new file durable before anything refers to it.
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.active = conn
        with self.lock:
            self.segments.append(seg)

    def expire(self, max_age: float, max_bytes: int) -> list[Segment]:
        """Remove the oldest closed segments beyond retention; return what was removed."""
        removed = []
        cutoff = time.time_ns() - int(max_age * 1e9)
        while len(self.segments) > 1:
            oldest = self.segments[0]
            total = sum(s.stored for s in self.segments)
            if oldest.last_time_ns >= cutoff and total <= max_bytes and not oldest.empty:
                break
            with self.lock:
                self.segments.pop(0)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{oldest.path}{suffix}").unlink(missing_ok=True)
            removed.append(oldest)
        return removed

    def close(self) -> None:
        if self.active is not None:
            self.active.close()
            self.active = None


def _disk_size(path: Path) -> int:
    """Bytes a segment takes on disk, its WAL included."""
    total = 0
    for suffix in ("", "-wal"):
        with contextlib.suppress(FileNotFoundError):
            total += os.stat(f"{path}{suffix}").st_size
    return total
