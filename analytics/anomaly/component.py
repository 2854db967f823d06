"""Online anomaly detection under `keiko run` (`analytics.anomaly`): consume, score, report.

A task reads the ``metrics`` stream as consumer group ``anomaly``, decodes each OTLP
metrics record into numbered series (counters as rates, histograms as rate + p50/p99),
scores every point before learning from it (one DetectorBank call per fetch), writes an
event when a series enters an excursion, and exports the scores to Prometheus.

Offsets and state agree: the state (series table, decoder, detectors, excursions) is
checkpointed to the store's key-value space with the last offset it includes, and only
then is that offset committed. After a crash the group replays from its committed offset;
records the restored state already includes are skipped, so nothing is learnt twice and
nothing is missed. The NATS backend redelivers records left uncommitted for 30 s within
the same run; they are skipped the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from analytics.anomaly.bank import DetectorBank
from analytics.anomaly.checkpoint import CheckpointError, CheckpointStore
from analytics.anomaly.config import AnomalyConfig, MetricFilter
from analytics.anomaly.events import ExcursionTracker, anomaly_event, encode_event
from analytics.anomaly.export import AnomalyExport, ScoreBoard, Stats
from analytics.series.decode import MetricsDecoder
from analytics.series.table import SeriesTable
from analytics.series.types import PointBatch, SeriesInfo
from keiko.components import ComponentSpec, Context
from keiko.errors import KeikoError
from keiko.records import Kind, NewRecord, Record, Stream
from keiko.store.base import Consumer

if TYPE_CHECKING:
    from keiko.config.model import KeikoConfig

log = logging.getLogger(__name__)
GROUP = "anomaly"
CHECKPOINT_NAME = "detector"
RETRY_PAUSE = 2.0  # after a store error, before trying again
EVENT_APPEND_TRIES = 3


@dataclass
class _State:
    """Everything a checkpoint holds, rebuilt together on restore."""

    table: SeriesTable
    decoder: MetricsDecoder
    bank: DetectorBank
    tracker: ExcursionTracker
    newest: float = -np.inf  # latest point time seen (unix s): the clock of idle eviction


class AnomalyDetector:
    """The `analytics.anomaly` component."""

    name = "anomaly"

    def __init__(
        self,
        config: AnomalyConfig,
        ctx: Context,
        bank_type: type[DetectorBank] = DetectorBank,
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.bank_type = bank_type  # tests inject a subclass; restore() goes through it
        self.accept = MetricFilter(config.include, config.exclude)
        self.stats = Stats()
        export = config.score_export
        self.board = ScoreBoard(config.threshold, export.max_series, export.hold)
        self.state = self._fresh()
        self.prom = AnomalyExport(
            self.stats,
            self.board,
            lambda: len(self.state.table),
            lambda: self.state.decoder.skipped,
            self._stream_end,
        )
        ctx.telemetry.registry.register(self.prom)
        ctx.reloaders.append(self.reload)
        self.checkpoints: CheckpointStore | None = None
        self._accepted = np.zeros(0, np.int8)  # per id: 0 unknown, 1 scored, 2 excluded
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._consumer: Consumer | None = None
        self._closed = False
        self._since_checkpoint = 0  # records consumed since the last checkpoint
        self._refused_logged = 0

    def _stream_end(self) -> int | None:
        """The metrics stream's last offset from the stats keiko refreshes for /metrics."""
        stats = self.ctx.telemetry.store_snapshot.stats
        if stats is None:
            return None
        return next((s.last_offset for s in stats.streams if s.name == Stream.METRICS), None)

    def _fresh(self) -> _State:
        table = SeriesTable(self.config.max_series)
        state = _State(
            table,
            MetricsDecoder(table, resource_keys=self.config.resource_keys),
            self.bank_type(min(self.config.max_series, 1024)),
            ExcursionTracker(self.config.threshold, self.config.cooldown),
        )
        table.on_evict(self._forget)
        return state

    def _forget(self, ids: np.ndarray) -> None:
        """Series freed by the table (evicted, or replaced by a restore)."""
        self.state.bank.forget(ids)
        self.state.tracker.forget(ids)
        self.board.forget(ids)
        known = ids[ids < len(self._accepted)]
        self._accepted[known] = 0

    def reload(self, config: KeikoConfig) -> None:
        """SIGHUP: take threshold, cooldown, include/exclude and score_export.hold at once;
        the other keys need a restart (they size or locate state)."""
        new = config.component("analytics", "anomaly")
        if not isinstance(new, AnomalyConfig) or new == self.config:
            return
        live = {"threshold", "cooldown", "include", "exclude", "score_export"}
        update = {k: getattr(new, k) for k in live}
        update["score_export"] = self.config.score_export.model_copy(
            update={"hold": new.score_export.hold}
        )
        self.config = self.config.model_copy(update=update)
        tracker = self.state.tracker
        tracker.threshold, tracker.cooldown = new.threshold, new.cooldown
        self.board.threshold, self.board.hold = new.threshold, new.score_export.hold
        self.accept = MetricFilter(new.include, new.exclude)
        self._accepted = np.zeros(0, np.int8)  # decide every series again
        if self.config != new:
            log.warning(
                "anomaly: config reloaded; max_series, idle_expiry, fetch_*, checkpoint.* and "
                "score_export.max_series take effect at the next restart"
            )

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the consume-score-checkpoint task; returns at once."""
        self._task = asyncio.create_task(self._run(), name="anomaly-detector")

    async def shutdown(self, deadline: float) -> None:
        """Stop consuming, save a last checkpoint (by ``deadline``), close. Idempotent."""
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
                    "anomaly: still processing at the shutdown deadline: no final "
                    "checkpoint (the next start replays from the last one)"
                )
                finished = False
            except Exception:
                log.exception("anomaly: the detector task failed")
        if finished and self._consumer is not None and self.checkpoints is not None:
            try:
                left = max(0.1, deadline - time.monotonic())
                await asyncio.wait_for(self._checkpoint(), left)
            except Exception:
                log.exception("anomaly: final checkpoint failed (the next start replays more)")
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.close()
        with contextlib.suppress(KeyError):
            self.ctx.telemetry.registry.unregister(self.prom)
        with contextlib.suppress(ValueError):
            self.ctx.reloaders.remove(self.reload)

    # -- the loop -----------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._open()
                break
            except KeikoError as exc:
                log.warning("anomaly: store not usable yet (%s); retrying", exc)
                await self._pause(RETRY_PAUSE)
        cfg = self.config.checkpoint
        next_checkpoint = time.monotonic() + cfg.interval
        while not self._stop.is_set():
            try:
                await self._step()
                due = time.monotonic() >= next_checkpoint
                if due or self._since_checkpoint >= cfg.max_records:
                    next_checkpoint = time.monotonic() + cfg.interval
                    await self._maintain()
                    await self._checkpoint()
            except KeikoError as exc:
                log.warning("anomaly: store error (%s); retrying in %.0fs", exc, RETRY_PAUSE)
                await self._pause(RETRY_PAUSE)
            except Exception:  # never crash after start: count on the next fetch
                log.exception("anomaly: processing failed")
                await self._pause(RETRY_PAUSE)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _open(self) -> None:
        store, cfg = self.ctx.store, self.config.checkpoint
        self.checkpoints = CheckpointStore(
            await store.kv(cfg.bucket), CHECKPOINT_NAME, cfg.chunk_bytes
        )
        await self._restore()
        self._consumer = await store.consumer(Stream.METRICS, GROUP)
        c = self.config
        log.info(
            "anomaly: scoring the %s stream as group %r (threshold %g, max_series %d: "
            "detector state up to %.0f MiB; checkpoint every %gs or %d records to bucket %r)",
            Stream.METRICS.value,
            GROUP,
            c.threshold,
            c.max_series,
            self.state.bank.bytes_per_series * c.max_series / 2**20,
            c.checkpoint.interval,
            c.checkpoint.max_records,
            c.checkpoint.bucket,
        )

    async def _step(self) -> None:
        assert self._consumer is not None
        records = await self._consumer.fetch(self.config.fetch_batch, self.config.fetch_timeout)
        if not records:
            return
        events = await asyncio.to_thread(self._process, records)
        if events:
            await self._append(events)
        self._since_checkpoint += len(records)

    def _process(self, records: list[Record]) -> list[NewRecord]:
        """Decode, score and learn one fetch (on a worker thread); the events it raised."""
        batches = []
        for record in records:
            if record.offset <= self.stats.offset:  # already in the state (replay)
                self.stats.skipped_records["replayed"] += 1
                continue
            self.stats.records += 1
            if record.kind != Kind.OTLP_METRICS:
                self.stats.skipped_records["kind"] += 1
                continue
            try:
                batches.append(self.state.decoder.decode(record.payload))
            except Exception as exc:  # the receiver validated it: a decoder gap, say so
                self.stats.skipped_records["undecodable"] += 1
                log.debug("anomaly: record %d not decoded: %s", record.offset, exc)
        self.stats.offset = max(self.stats.offset, records[-1].offset)
        batch = self._scored_points(batches)
        if not len(batch):
            return []
        return self._score(batch)

    def _scored_points(self, batches: list[PointBatch]) -> PointBatch:
        batches = [b for b in batches if len(b)]
        if not batches:
            return PointBatch.empty()
        series = np.concatenate([b.series for b in batches])
        times = np.concatenate([b.times for b in batches])
        values = np.concatenate([b.values for b in batches])
        keep = self._wanted(series)
        if not keep.all():
            self.stats.skipped_points["excluded"] += int((~keep).sum())
            series, times, values = series[keep], times[keep], values[keep]
        return PointBatch(series, times, values)

    def _wanted(self, series: np.ndarray) -> np.ndarray:
        """Per point: is its metric included (decided once per series id)."""
        table = self.state.table
        if table.high_water > len(self._accepted):
            grown = np.zeros(max(table.high_water, 2 * len(self._accepted)), np.int8)
            grown[: len(self._accepted)] = self._accepted
            self._accepted = grown
        for sid in np.unique(series[self._accepted[series] == 0]).tolist():
            info = table.info(sid)
            ok = info is not None and self.accept(info.metric)
            self._accepted[sid] = 1 if ok else 2
        return self._accepted[series] == 1

    def _score(self, batch: PointBatch) -> list[NewRecord]:
        state = self.state
        scores = state.bank.score_learn(batch.series, batch.times, batch.values)
        self.stats.points += len(batch)
        high = scores.probability >= self.config.threshold
        self.stats.anomalous_points += int(high.sum())
        state.newest = max(state.newest, float(batch.times.max()))
        self.board.update(batch.series, batch.times, scores.probability, self._info)
        events = []
        for entry in state.tracker.update(batch.series, batch.times, scores.probability):
            i = entry.index
            info = self._info(entry.series)
            event = anomaly_event(
                info,
                float(batch.times[i]),
                float(batch.values[i]),
                scores,
                i,
                self.config.threshold,
            )
            events.append(NewRecord(Kind.EVENT_JSON, encode_event(event), 1, info.key))
        return events

    def _info(self, sid: int) -> SeriesInfo:
        info = self.state.table.info(sid)
        assert info is not None, f"series {sid} scored but not in the table"
        return info

    async def _append(self, events: list[NewRecord]) -> None:
        """One append per fetch; retried briefly when the store pushes back, else counted."""
        for attempt in range(EVENT_APPEND_TRIES):
            try:
                await self.ctx.store.append(Stream.EVENTS, events)
            except KeikoError as exc:
                if attempt + 1 == EVENT_APPEND_TRIES:
                    self.stats.events_dropped += len(events)
                    log.warning("anomaly: %d events not stored: %s", len(events), exc)
                    return
                await self._pause(RETRY_PAUSE * (attempt + 1))
            else:
                self.stats.events += len(events)
                return

    # -- eviction, checkpoints ----------------------------------------------------------------

    async def _maintain(self) -> None:
        """Evict idle series; say (once per interval) when the series cap refused points."""
        state = self.state
        if np.isfinite(state.newest):
            older = state.newest - self.config.idle_expiry
            freed = await asyncio.to_thread(state.table.evict_idle, older)
            self.stats.evicted += len(freed)
        # This process's count (the table's persists across restarts; Prometheus counters
        # start from zero with the process).
        refused = state.decoder.skipped["series_cap"]
        self.stats.refused_points = refused
        if refused > self._refused_logged:
            log.warning(
                "anomaly: series cap hit: %d points of new series refused since the last "
                "check (%d series held, analytics.anomaly.max_series = %d)",
                refused - self._refused_logged,
                len(state.table),
                self.config.max_series,
            )
            self._refused_logged = refused

    def _parts(self) -> dict[str, bytes]:
        state = self.state
        meta = {"newest": state.newest if np.isfinite(state.newest) else None}
        return {
            "meta": json.dumps(meta).encode(),
            "table": state.table.snapshot(),
            "decoder": state.decoder.snapshot(),
            "bank": state.bank.snapshot(),
            "excursions": state.tracker.snapshot(),
        }

    async def _checkpoint(self) -> None:
        """Save the state with the offset it covers, then commit that offset."""
        assert self.checkpoints is not None and self._consumer is not None
        offset = self.stats.offset
        if offset == self.stats.checkpoint_offset:  # nothing new since: no save, but
            await self._consumer.commit(offset)  # ack replays the saved state covers (NATS)
            self._since_checkpoint = 0
            return
        began = time.perf_counter()
        try:
            parts = await asyncio.to_thread(self._parts)
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
            "anomaly: checkpoint saved: %d series, metrics offset %d, %d bytes in %d chunks "
            "(%d raw), %.3fs",
            len(self.state.table),
            offset,
            saved.stored_bytes,
            saved.chunks,
            saved.raw_bytes,
            seconds,
        )

    async def _restore(self) -> None:
        assert self.checkpoints is not None
        bucket = self.config.checkpoint.bucket
        try:
            found = await self.checkpoints.load()
        except CheckpointError as exc:
            log.error("anomaly: checkpoint in bucket %r unusable (%s): starting fresh", bucket, exc)
            return
        if found is None:
            log.info("anomaly: no checkpoint in bucket %r: starting fresh", bucket)
            return
        try:
            state = await asyncio.to_thread(self._rebuild, found.parts)
        except Exception as exc:
            log.error("anomaly: checkpoint in bucket %r unusable (%s): starting fresh", bucket, exc)
            return
        self.state = state
        offset = await self._resume_offset(found.offset)
        self.stats.offset = self.stats.checkpoint_offset = offset
        self.stats.restored_series = len(state.table)
        self._refused_logged = 0  # a new decoder counts from zero
        log.info(
            "anomaly: restored %d series from the checkpoint of %s; resuming after metrics "
            "offset %d",
            len(state.table),
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(found.saved_at)),
            offset,
        )

    async def _resume_offset(self, covered: int) -> int:
        """The checkpoint's offset, unless the stream ends before it (deleted and made
        again while the bucket survived): then every record would look replayed."""
        stats = await self.ctx.store.stats()
        last = next((s.last_offset for s in stats.streams if s.name == Stream.METRICS), 0)
        if covered <= last:
            return covered
        log.warning(
            "anomaly: the checkpoint covers metrics offset %d but the stream ends at %d (was "
            "it recreated?): keeping the detectors' state, reading the stream from its start",
            covered,
            last,
        )
        return 0

    def _rebuild(self, parts: dict[str, bytes]) -> _State:
        table = SeriesTable(self.config.max_series)
        table.restore(parts["table"])
        decoder = MetricsDecoder(table, resource_keys=self.config.resource_keys)
        decoder.restore(parts["decoder"])
        tracker = ExcursionTracker(self.config.threshold, self.config.cooldown)
        tracker.restore(parts["excursions"])
        newest = json.loads(parts["meta"]).get("newest")
        bank = self.bank_type.restore(parts["bank"])
        state = _State(table, decoder, bank, tracker, -np.inf if newest is None else newest)
        table.on_evict(self._forget)
        return state


def build(config: AnomalyConfig, ctx: Context) -> AnomalyDetector:
    """The factory of `analytics.anomaly`."""
    return AnomalyDetector(config, ctx)


SPEC = ComponentSpec(
    section="analytics",
    name="anomaly",
    config_model=AnomalyConfig,
    factory=build,
    description="Online anomaly detection: scores every point of every metric series as it "
    "arrives (score, then learn), writes an event per excursion, exports scores to "
    "Prometheus; state checkpointed to the store.",
)
