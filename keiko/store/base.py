"""The store interface every backend implements and every stage uses.

A store holds named streams of records. Appends are durable when they return (per the
backend's durability policy). Consumers belong to a named group and read from the group's
committed offset, so a restarted consumer resumes where it left off and sees every record
at least once. A small key-value space holds shared state (checkpoints, dedup keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from keiko.records import NewRecord, Record
from keiko.store.config import StoreConfig


def partition_group(group: str, partition: int) -> str:
    """The consumer group a store keeps for one partition of ``group`` (stats show it)."""
    return f"{group}_p{partition}"


@dataclass(frozen=True, slots=True)
class GroupStats:
    """A consumer group's position on one stream."""

    group: str
    committed: int  # last committed offset (0: nothing yet)
    lag_records: int  # records after the committed offset that still exist
    lag_bytes: int | None = None  # payload bytes of those records, where the backend knows


@dataclass(frozen=True, slots=True)
class StreamStats:
    """What `keiko store stats` shows for one stream."""

    name: str
    records: int  # records held now (after retention)
    items: int | None  # sum of record counts (spans, points ...), where the backend knows
    bytes: int  # payload bytes held (embedded) or the backend's own size figure
    first_offset: int  # 0 when empty
    last_offset: int  # 0 when nothing was ever appended
    oldest_time_ns: int | None
    newest_time_ns: int | None
    groups: list[GroupStats] = field(default_factory=list)
    expired_unconsumed: int = 0  # records retention removed before some group read them


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Stats of every stream, plus the backend's name and where it keeps data."""

    backend: str
    location: str
    streams: list[StreamStats]
    disk_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class Readiness:
    """Whether the store can take writes now, and if not, why."""

    ready: bool
    reason: str = ""


@runtime_checkable
class Consumer(Protocol):
    """A member of a consumer group reading one stream."""

    stream: str
    group: str

    async def fetch(self, max_records: int = 100, timeout: float = 1.0) -> list[Record]:
        """Records after this consumer's position, oldest first; [] after ``timeout`` seconds.

        A new consumer starts after the group's committed offset. Records that were
        fetched but not committed are delivered again after a restart.
        """
        ...

    async def commit(self, offset: int) -> None:
        """Mark every record up to and including ``offset`` as processed by the group."""
        ...

    async def close(self) -> None:
        """Release the consumer (uncommitted records stay pending for the group)."""
        ...


@runtime_checkable
class KeyValue(Protocol):
    """A small shared key-value bucket (checkpoints, dedup keys, silences)."""

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def keys(self) -> list[str]: ...

    async def swap(self, key: str, expected: bytes | None, value: bytes) -> bool:
        """Atomically set ``key`` to ``value`` iff its current value equals ``expected``.

        ``expected=None`` means "the key is absent (or deleted)". True if the value was
        set; False if the current value differed (never an error for that), so callers
        re-read and decide again. The building block of leases (``keiko.store.lease``).
        """
        ...


@runtime_checkable
class Store(Protocol):
    """A durable streaming store. Implementations: ``embedded`` (SQLite) and ``nats``."""

    backend: str

    async def start(self) -> None:
        """Open files or connections and create the well-known streams."""
        ...

    async def shutdown(self, deadline: float | None = None) -> None:
        """Flush pending appends and close. Idempotent. ``deadline`` is a monotonic time."""
        ...

    async def append(self, stream: str, records: Sequence[NewRecord]) -> list[int]:
        """Append records; return their offsets once they are durable.

        Raises StoreFull when a bound is exceeded and StoreUnavailable when the backend
        cannot write; in both cases nothing of ``records`` was stored.
        """
        ...

    async def read(self, stream: str, start: int, limit: int = 100) -> list[Record]:
        """Records with offset >= ``start``, oldest first, at most ``limit`` (no group)."""
        ...

    async def offset_at(self, stream: str, time_ns: int) -> int:
        """The first offset appended at or after ``time_ns`` (last offset + 1 if none)."""
        ...

    async def wait(self, stream: str, after: int, timeout: float) -> bool:
        """Wait until the stream holds an offset > ``after``; False after ``timeout`` s."""
        ...

    async def consumer(
        self, stream: str, group: str, *, partition: int | None = None, start: int | None = None
    ) -> Consumer:
        """A consumer in ``group`` (created on first use, starting at the stream's start).

        ``partition``: read only that partition of a partitioned stream (``traces`` and
        ``metrics`` when ``store.nats.partitions`` > 1; see ``keiko.partitioning``); None
        reads every record. ``start``: move the group's position so that the next fetch
        begins at that offset (records before it count as committed, records after it as
        not yet delivered). Only for a group with one member at a time (a stage that holds
        the group's lease or is alone): a stage restoring a checkpoint rewinds to just after
        it, so records a dead predecessor fetched but never committed come at once and in
        order, not after the redelivery timeout and after newer ones.
        """
        ...

    async def kv(self, bucket: str) -> KeyValue:
        """The key-value bucket ``bucket`` (created on first use)."""
        ...

    async def streams(self) -> list[str]:
        """Names of the streams that exist."""
        ...

    async def stats(self) -> StoreStats:
        """Records, bytes, oldest/newest and consumer lag per stream."""
        ...

    async def readiness(self) -> Readiness:
        """Whether appends can succeed now (disk writable, NATS reachable)."""
        ...

    def reconfigure(self, config: StoreConfig) -> None:
        """Apply what is safe to change at run time: limits and retention."""
        ...
