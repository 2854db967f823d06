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
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from analytics.anomaly.bank import DetectorBank
from analytics.anomaly.config import AnomalyConfig, MetricFilter
from analytics.anomaly.events import ExcursionTracker, anomaly_event, encode_event
from analytics.anomaly.export import AnomalyExport, ScoreBoard, Stats
from analytics.anomaly.services import ERRORS_METRIC, ServiceModels, error_ratio
from analytics.anomaly.services import METRIC as SERVICE_METRIC
from analytics.series.decode import MetricsDecoder
from analytics.series.table import SeriesTable
from analytics.series.types import PointBatch, SeriesInfo, SeriesKind
from analytics.series.workloads import WorkloadRates
from keiko.components import ComponentSpec, Context
from keiko.records import Kind, NewRecord, Record, Stream
from keiko.stream.worker import StreamWorker

if TYPE_CHECKING:
    from keiko.config.model import KeikoConfig

log = logging.getLogger(__name__)
GROUP = "anomaly"
CHECKPOINT_NAME = "detector"


@dataclass
class _State:
    """Everything a checkpoint holds, rebuilt together on restore."""

    table: SeriesTable
    decoder: MetricsDecoder
    bank: DetectorBank
    tracker: ExcursionTracker
    services: ServiceModels
    newest: float = -np.inf  # latest point time seen (unix s): the clock of idle eviction


class AnomalyDetector(StreamWorker):
    """The `analytics.anomaly` component."""

    stats: Stats

    def __init__(
        self,
        config: AnomalyConfig,
        ctx: Context,
        bank_type: type[DetectorBank] = DetectorBank,
    ) -> None:
        super().__init__(
            ctx,
            name="anomaly",
            stream=Stream.METRICS,
            group=GROUP,
            checkpoint=config.checkpoint,
            fetch_batch=config.fetch_batch,
            fetch_timeout=config.fetch_timeout,
            checkpoint_name=CHECKPOINT_NAME,
            stats=Stats(),
        )
        self.config = config
        self.bank_type = bank_type  # tests inject a subclass; restore() goes through it
        self.accept = MetricFilter(config.include, config.exclude)
        svc = config.services
        self.rates = WorkloadRates(svc.rate_metrics, svc.latency_metrics, [], 120.0)
        export = config.score_export
        self.board = ScoreBoard(config.threshold, export.max_series, export.hold)
        self.state = self._fresh()
        self.prom = AnomalyExport(
            self.stats,
            self.board,
            lambda: len(self.state.table),
            lambda: self.state.decoder.skipped,
            self.stream_end,
        )
        ctx.telemetry.registry.register(self.prom)
        ctx.reloaders.append(self.reload)
        self._accepted = np.zeros(0, np.int8)  # per id: 0 unknown, 1 scored, 2 excluded
        self._refused_logged = 0

    def _fresh(self) -> _State:
        table = SeriesTable(self.config.max_series)
        state = _State(
            table,
            MetricsDecoder(table, resource_keys=self.config.resource_keys),
            self.bank_type(min(self.config.max_series, 1024)),
            ExcursionTracker(self.config.threshold, self.config.cooldown),
            ServiceModels(self.config.services.max_services),
        )
        table.on_evict(self._forget)
        return state

    def _forget(self, ids: np.ndarray) -> None:
        """Series freed by the table (evicted, or replaced by a restore)."""
        self.state.bank.forget(ids)
        self.state.tracker.forget(ids)
        self.board.forget(ids)
        self.rates.forget(ids)
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

    # -- StreamWorker hooks -------------------------------------------------------------------

    def describe(self) -> str:
        """Threshold and the detectors' memory bound, for the start line."""
        c = self.config
        mib = self.state.bank.bytes_per_series * c.max_series / 2**20
        return (
            f"threshold {c.threshold:g}, max_series {c.max_series}: "
            f"detector state up to {mib:.0f} MiB"
        )

    def summary(self) -> str:
        """Series held, for the checkpoint line."""
        return f"{len(self.state.table)} series"

    def close(self) -> None:
        """Unregister the Prometheus collector and the reloader."""
        with contextlib.suppress(KeyError):
            self.ctx.telemetry.registry.unregister(self.prom)
        with contextlib.suppress(ValueError):
            self.ctx.reloaders.remove(self.reload)

    def process(self, records: list[Record]) -> list[NewRecord]:
        """Decode, score and learn one fetch (on a worker thread); the events it raised."""
        batches = []
        for record in records:
            if record.kind != Kind.OTLP_METRICS:
                self.stats.skipped_records["kind"] += 1
                continue
            try:
                batches.append(self.state.decoder.decode(record.payload))
            except Exception as exc:  # the receiver validated it: a decoder gap, say so
                self.stats.skipped_records["undecodable"] += 1
                log.debug("anomaly: record %d not decoded: %s", record.offset, exc)
        batch = self._scored_points(batches)
        if not len(batch):
            return []
        return self._score(batch)

    def _scored_points(self, batches: list[PointBatch]) -> PointBatch:
        if self.config.services.enabled:
            batches = [*batches, *(self._service_points(b) for b in batches if len(b))]
        batches = [b for b in batches if len(b)]
        if not batches:
            return PointBatch.empty()
        series = np.concatenate([b.series for b in batches])
        times = np.concatenate([b.times for b in batches])
        values = np.concatenate([b.values for b in batches])
        quanta = np.concatenate([b.quanta() for b in batches])
        keep = self._wanted(series)
        if not keep.all():
            self.stats.skipped_points["excluded"] += int((~keep).sum())
            series, times, values, quanta = series[keep], times[keep], values[keep], quanta[keep]
        return PointBatch(series, times, values, quanta)

    def _service_points(self, batch: PointBatch) -> PointBatch:
        """Each touched service's multivariate raw score and error ratio, as points of its
        synthetic series."""
        state = self.state
        observations = self.rates.observe(batch, state.table)
        points = [
            (SERVICE_METRIC, p.workload, p.time, p.raw)
            for p in state.services.observe(observations)
        ]
        for obs in observations:
            ratio = error_ratio(obs)
            if ratio is not None:
                points.append((ERRORS_METRIC, obs.workload, obs.time, ratio))
        ids = [self._service_series(metric, service, t) for metric, service, t, _ in points]
        kept = [(sid, t, v) for sid, (_, _, t, v) in zip(ids, points, strict=True) if sid >= 0]
        if not kept:
            return PointBatch.empty()
        columns = list(zip(*kept, strict=True))
        return PointBatch(
            np.array(columns[0], np.int64), np.array(columns[1]), np.array(columns[2])
        )

    def _service_series(self, metric: str, service: str, time: float) -> int:
        table = self.state.table
        key = f"{metric}{{service.name={service}}}"
        sid = table.intern(key, metric, service, SeriesKind.GAUGE, labels={"service.name": service})
        if sid >= 0:
            table.touch(np.array([sid]), np.array([time]))
        return sid

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
        scores = state.bank.score_learn(batch.series, batch.times, batch.values, batch.quanta())
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
            # The event id as the record id: a replay after a takeover is stored once.
            events.append(
                NewRecord(Kind.EVENT_JSON, encode_event(event), 1, info.key, id=event["id"])
            )
        return events

    def _info(self, sid: int) -> SeriesInfo:
        info = self.state.table.info(sid)
        assert info is not None, f"series {sid} scored but not in the table"
        return info

    async def maintain(self) -> None:
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

    def snapshot_parts(self) -> dict[str, bytes]:
        """Series table, decoder, detectors, excursions and the newest point time."""
        state = self.state
        meta = {"newest": state.newest if np.isfinite(state.newest) else None}
        return {
            "meta": json.dumps(meta).encode(),
            "table": state.table.snapshot(),
            "decoder": state.decoder.snapshot(),
            "bank": state.bank.snapshot(),
            "excursions": state.tracker.snapshot(),
            "services": state.services.snapshot(),
        }

    def restore_parts(self, parts: dict[str, bytes]) -> str:
        """Rebuild the whole state, then replace the current one with it."""
        state = self._rebuild(parts)
        self.state = state
        self.stats.restored_series = len(state.table)
        self._refused_logged = 0  # a new decoder counts from zero
        return f"{len(state.table)} series"

    def _rebuild(self, parts: dict[str, bytes]) -> _State:
        table = SeriesTable(self.config.max_series)
        table.restore(parts["table"])
        decoder = MetricsDecoder(table, resource_keys=self.config.resource_keys)
        decoder.restore(parts["decoder"])
        tracker = ExcursionTracker(self.config.threshold, self.config.cooldown)
        tracker.restore(parts["excursions"])
        newest = json.loads(parts["meta"]).get("newest")
        bank = self.bank_type.restore(parts["bank"])
        services = ServiceModels(self.config.services.max_services)
        if "services" in parts:  # checkpoints before per-service detection have none
            services.restore(parts["services"])
        newest = -np.inf if newest is None else newest
        state = _State(table, decoder, bank, tracker, services, newest)
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
    partitioned_stream=Stream.METRICS,
)
