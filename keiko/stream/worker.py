"""A stage that consumes one stream as a consumer group and keeps checkpointed state.

The loop: fetch from the stream as the group, process the fetch on a worker thread,
append the events it raised to the ``events`` stream (retried briefly, else counted),
and every ``checkpoint.interval`` or ``checkpoint.max_records`` records save the state
with the last offset it includes to a key-value bucket, and only then commit that
offset. Store errors are retried; the task never crashes after start.

Offsets and state agree: at start the state is restored from the checkpoint and records
at or before the offset it covers are skipped (counted as replayed), so nothing is
processed twice and nothing is missed after a crash, and NATS redeliveries within a run
(records left uncommitted for 30 s) are skipped the same way. A checkpoint that covers
more than the stream holds (the stream was recreated, the bucket survived) keeps the
state but reads the stream from its start. Opening the consumer rewinds it to just after
the restored checkpoint, so records a crashed predecessor fetched but never committed
come first, not after JetStream's redelivery timeout behind newer ones (which would then
be skipped as replays: lost). That rewind is why a worker must be its group's only member:
one process, or the holder of the partition's lease (``keiko.stream.partitions``). Without
a usable checkpoint the state starts empty and the stream is read from its start.

A subclass implements :meth:`StreamWorker.process`, :meth:`~StreamWorker.snapshot_parts`
and :meth:`~StreamWorker.restore_parts`, optionally :meth:`~StreamWorker.tick`,
:meth:`~StreamWorker.maintain`,
:meth:`~StreamWorker.describe`, :meth:`~StreamWorker.summary` and
:meth:`~StreamWorker.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field

from keiko.components import Context
from keiko.errors import KeikoError
from keiko.records import NewRecord, Record, Stream
from keiko.store.base import Consumer, partition_group
from keiko.stream.checkpoint import CheckpointError, CheckpointStore
from keiko.stream.config import CheckpointConfig
from keiko.stream.fetch import fetch_until_stopped

log = logging.getLogger(__name__)
RETRY_PAUSE = 2.0  # after a store error, before trying again
EVENT_APPEND_TRIES = 3


@dataclass
class WorkerStats:
    """Running totals since start (counters) and the latest figures (gauges) of the loop.

    A stage with more counters subclasses it and passes an instance to the worker."""

    records: int = 0  # consumed and handed to process (replays not included)
    offset: int = 0  # last offset processed
    checkpoint_offset: int = 0  # last offset a saved checkpoint covers
    events: int = 0
    events_dropped: int = 0  # events the store refused (lost)
    skipped_records: Tally[str] = field(default_factory=Tally)  # by reason
    checkpoints: Tally[str] = field(default_factory=Tally)  # by outcome
    checkpoint_seconds: float = 0.0
    checkpoint_bytes: int = 0
    checkpoint_time: float = 0.0  # unix time of the last saved checkpoint


class StreamWorker(ABC):
    """Base of a stage that consumes one stream as a group with checkpointed state."""

    # Where the records that process() returns are appended: events by default; a stage
    # that derives records of another kind (span metrics -> metric points) names its stream.
    output_stream: str = Stream.EVENTS
    # True when the stage's HTTP routes show every partition's data although the worker
    # runs one (it merges what the others publish), so any holder may answer them.
    serves_all_partitions: bool = False

    def __init__(
        self,
        ctx: Context,
        *,
        name: str,
        stream: str,
        group: str,
        checkpoint: CheckpointConfig,
        fetch_batch: int,
        fetch_timeout: float,
        checkpoint_name: str = "state",
        stats: WorkerStats | None = None,
    ) -> None:
        self.ctx = ctx
        self.name = name  # the prefix of every log line
        self.stream = stream
        self.group = group
        self.checkpoint_config = checkpoint
        self.fetch_batch = fetch_batch
        self.fetch_timeout = fetch_timeout
        self.checkpoint_name = checkpoint_name  # key prefix in the bucket
        self.stats = stats if stats is not None else WorkerStats()
        self.checkpoints: CheckpointStore | None = None
        self._consumer: Consumer | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._since_checkpoint = 0  # records consumed since the last checkpoint
        self._rewind: int | None = None  # where the consumer starts: after the checkpoint
        # Set by keiko.stream.partitions when the worker runs one partition of its stream.
        self.partition: int | None = None
        # False once this worker may no longer write its checkpoint (its lease was lost).
        self.owns: Callable[[], bool] = lambda: True
        # The partition workers of one stage share one: their threads would only contend
        # for the GIL (one analyzer ran 4 partitions with ~20% more CPU than two did).
        self.process_lock: contextlib.AbstractContextManager[object] = contextlib.nullcontext()

    # -- hooks --------------------------------------------------------------------------------

    @abstractmethod
    def process(self, records: list[Record]) -> list[NewRecord]:
        """Fold one fetch into the state (worker thread); the records to append to
        ``output_stream`` (events, unless the stage says otherwise).

        ``records`` are in offset order and not yet in the state (replays are filtered
        out); ``stats.records`` and ``stats.offset`` already count them. Raising loses
        them (they count as processed): catch per-record problems and count them in
        ``stats.skipped_records``."""

    @abstractmethod
    def snapshot_parts(self) -> dict[str, bytes]:
        """The state as named byte strings (worker thread; never concurrent with process)."""

    @abstractmethod
    def restore_parts(self, parts: dict[str, bytes]) -> str:
        """Rebuild the state from ``snapshot_parts``' output (worker thread, before the
        first fetch); a short description for the log (e.g. "12 series"). On an exception
        the checkpoint is reported unusable and the stage starts fresh, so replace the
        state only once it is fully rebuilt."""

    async def maintain(self) -> None:  # noqa: B027 (optional hook)
        """Called on the event loop before each checkpoint (eviction, periodic warnings)."""

    async def tick(self) -> list[NewRecord]:
        """Called on the event loop after every fetch, also an empty one: work that reads
        the store or waits on time (e.g. analysing an incident once it settled); the
        records to append to ``output_stream``."""
        return []

    def describe(self) -> str:
        """Details for the start log line."""
        return ""

    def summary(self) -> str:
        """What the state holds, for the checkpoint log line (e.g. "12 series")."""
        return "state"

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Called once at the end of shutdown (event loop): unregister collectors etc."""

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the consume-process-checkpoint task; returns at once."""
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-stream-worker")

    async def shutdown(self, deadline: float, *, checkpoint: bool = True) -> None:
        """Stop consuming, save a last checkpoint (by ``deadline``; not with
        ``checkpoint=False``: the partition moved on), close. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        finished = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                # A worker thread may still be changing the state: no snapshot of it.
                log.warning(
                    "%s: still processing at the shutdown deadline: no final checkpoint "
                    "(the next start replays from the last one)",
                    self.name,
                )
                finished = False
            except Exception:
                log.exception("%s: the worker task failed", self.name)
        if checkpoint and finished and self._consumer is not None and self.checkpoints is not None:
            try:
                left = max(0.1, deadline - time.monotonic())
                await asyncio.wait_for(self._checkpoint(), left)
            except Exception:
                log.exception(
                    "%s: final checkpoint failed (the next start replays more)", self.name
                )
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.close()
        try:
            self.close()
        except Exception:
            log.exception("%s: close failed", self.name)

    def stream_end(self) -> int | None:
        """The stream's last offset from the store stats keiko refreshes for /metrics.

        For one partition of a partitioned stream the stream's end says nothing (the
        other partitions' records are in between): then the offset processed plus what
        JetStream counts as pending for the partition's group, so end - offset is its lag.
        """
        stats = self.ctx.telemetry.store_snapshot.stats
        if stats is None:
            return None
        stream = next((s for s in stats.streams if s.name == self.stream), None)
        if stream is None:
            return None
        if self.partition is None:
            return stream.last_offset
        group = partition_group(self.group, self.partition)
        lag = next((g.lag_records for g in stream.groups if g.group == group), None)
        return None if lag is None else self.stats.offset + lag

    # -- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._open()
                break
            except KeikoError as exc:
                log.warning("%s: store not usable yet (%s); retrying", self.name, exc)
                await self._pause(RETRY_PAUSE)
        cfg = self.checkpoint_config
        next_checkpoint = time.monotonic() + cfg.interval
        while not self._stop.is_set():
            try:
                await self._step()
                due = time.monotonic() >= next_checkpoint
                if due or self._since_checkpoint >= cfg.max_records:
                    next_checkpoint = time.monotonic() + cfg.interval
                    await self.maintain()
                    await self._checkpoint()
            except KeikoError as exc:
                log.warning("%s: store error (%s); retrying in %.0fs", self.name, exc, RETRY_PAUSE)
                await self._pause(RETRY_PAUSE)
            except Exception:  # never crash after start: count on the next fetch
                log.exception("%s: processing failed", self.name)
                await self._pause(RETRY_PAUSE)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _open(self) -> None:
        store, cfg = self.ctx.store, self.checkpoint_config
        self.checkpoints = CheckpointStore(
            await store.kv(cfg.bucket), self.checkpoint_name, cfg.chunk_bytes
        )
        await self._restore()
        self._consumer = await store.consumer(
            self.stream, self.group, partition=self.partition, start=self._rewind
        )
        details = self.describe()
        log.info(
            "%s: reading the %s stream as group %r (%scheckpoint every %gs or %d records to "
            "bucket %r)",
            self.name,
            self.stream,
            self.group,
            f"{details}; " if details else "",
            cfg.interval,
            cfg.max_records,
            cfg.bucket,
        )

    async def _step(self) -> None:
        assert self._consumer is not None
        records = await self._fetch()
        if records:
            events = await asyncio.to_thread(self._process, records)
            if events:
                await self._append(events)
            self._since_checkpoint += len(records)
        ticked = await self.tick()
        if ticked:
            await self._append(ticked)

    async def _fetch(self) -> list[Record]:
        """One fetch, abandoned when shutdown begins (see fetch_until_stopped)."""
        assert self._consumer is not None
        return await fetch_until_stopped(
            self._consumer, self.fetch_batch, self.fetch_wait(), self._stop
        )

    def fetch_wait(self) -> float:
        """How long the next fetch may wait for records: ``fetch_timeout``, or less for a
        stage whose tick() has work due sooner (e.g. a notification timer)."""
        return self.fetch_timeout

    def _process(self, records: list[Record]) -> list[NewRecord]:
        """Skip what the state already includes, hand the rest to process (worker thread)."""
        done = self.stats.offset
        new = [r for r in records if r.offset > done]
        if len(new) < len(records):  # replayed after a restart, or redelivered
            self.stats.skipped_records["replayed"] += len(records) - len(new)
        self.stats.records += len(new)
        self.stats.offset = max(done, records[-1].offset)
        if not new:
            return []
        with self.process_lock:
            return self.process(new)

    async def _append(self, events: list[NewRecord]) -> None:
        """One append per fetch; retried briefly when the store pushes back, else counted."""
        for attempt in range(EVENT_APPEND_TRIES):
            try:
                await self.ctx.store.append(self.output_stream, events)
            except KeikoError as exc:
                if attempt + 1 == EVENT_APPEND_TRIES:
                    self.stats.events_dropped += len(events)
                    log.warning("%s: %d events not stored: %s", self.name, len(events), exc)
                    return
                await self._pause(RETRY_PAUSE * (attempt + 1))
            else:
                self.stats.events += len(events)
                return

    # -- checkpoints --------------------------------------------------------------------------

    async def _checkpoint(self) -> None:
        """Save the state with the offset it covers, then commit that offset."""
        assert self.checkpoints is not None and self._consumer is not None
        if not self.owns():
            log.warning("%s: no longer owns its partition: checkpoint not saved", self.name)
            return
        offset = self.stats.offset
        if offset == self.stats.checkpoint_offset:  # nothing new since: no save, but
            await self._consumer.commit(offset)  # ack replays the saved state covers (NATS)
            self._since_checkpoint = 0
            return
        began = time.perf_counter()
        try:
            parts = await asyncio.to_thread(self.snapshot_parts)
            saved = await self.checkpoints.save(parts, offset)
        except Exception:
            self.stats.checkpoints["failed"] += 1
            raise
        await self._consumer.commit(offset)
        seconds = time.perf_counter() - began
        s = self.stats
        s.checkpoints["ok"] += 1
        s.checkpoint_offset, s.checkpoint_seconds = offset, seconds
        s.checkpoint_bytes, s.checkpoint_time = saved.stored_bytes, time.time()
        self._since_checkpoint = 0
        log.info(
            "%s: checkpoint saved: %s, %s offset %d, %d bytes in %d chunks (%d raw), %.3fs",
            self.name,
            self.summary(),
            self.stream,
            offset,
            saved.stored_bytes,
            saved.chunks,
            saved.raw_bytes,
            seconds,
        )

    async def _restore(self) -> None:
        assert self.checkpoints is not None
        # Without a usable checkpoint the state starts empty, so the stream is read from
        # its start: what a predecessor fetched, never checkpointed and so never committed
        # must come now, not after JetStream's redelivery timeout behind newer records.
        self._rewind = 1
        bucket = self.checkpoint_config.bucket
        try:
            found = await self.checkpoints.load()
        except CheckpointError as exc:
            log.error(
                "%s: checkpoint in bucket %r unusable (%s): starting fresh", self.name, bucket, exc
            )
            return
        if found is None:
            log.info("%s: no checkpoint in bucket %r: starting fresh", self.name, bucket)
            return
        last = await self._stream_last()
        offset = found.offset if found.offset <= last else 0
        # Set before the state is rebuilt: whoever sees the restored state sees its offset.
        self.stats.offset = self.stats.checkpoint_offset = offset
        try:
            restored = await asyncio.to_thread(self.restore_parts, found.parts)
        except Exception as exc:
            self.stats.offset = self.stats.checkpoint_offset = 0
            log.error(
                "%s: checkpoint in bucket %r unusable (%s): starting fresh", self.name, bucket, exc
            )
            return
        self._rewind = offset + 1
        if offset != found.offset:
            log.warning(
                "%s: the checkpoint covers %s offset %d but the stream ends at %d (was it "
                "recreated?): keeping the restored state, reading the stream from its start",
                self.name,
                self.stream,
                found.offset,
                last,
            )
        log.info(
            "%s: restored %s from the checkpoint of %s; resuming after %s offset %d",
            self.name,
            restored,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(found.saved_at)),
            self.stream,
            offset,
        )

    async def _stream_last(self) -> int:
        stats = await self.ctx.store.stats()
        return next((s.last_offset for s in stats.streams if s.name == self.stream), 0)
