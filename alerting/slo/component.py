"""The `alerting.slo` stage: metrics in, SLO burn-rate and threshold events out.

A :class:`~keiko.stream.worker.StreamWorker` reads the ``metrics`` stream as consumer
group ``slo``, decodes the metrics the objectives and rules need, counts calls into the
objectives' time buckets, tests the rules, and judges every alert whenever data time (the
newest point time seen) enters a new bucket and after each fetch. An alert that starts or
stops firing becomes one event on the ``events`` stream (``slo_burn`` or ``threshold``);
nothing else is written. When no metrics have come for ``idle_after``, data time follows
the wall clock (minus that), so alerts on services that went silent resolve.

The worker's contract holds: the state (counts, counter baselines, rule series, alert
states, data time) is checkpointed with the last offset it includes and only then is the
offset committed; after a restart records at or before it are skipped, so nothing is
counted twice. Store errors are retried; the task never crashes after start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from alerting.slo.burn import CALLS, DURATION, BurnBook, slo_event
from alerting.slo.config import SloConfig
from alerting.slo.decode import DeltaTracker, decode
from alerting.slo.export import SloExport
from alerting.slo.rules import RuleBook, threshold_event
from keiko.components import ComponentSpec, Context
from keiko.records import Kind, NewRecord, Record, Stream
from keiko.stream.worker import StreamWorker, WorkerStats

log = logging.getLogger(__name__)
GROUP = "slo"
FORMAT = 1
MAX_FUTURE_NS = 300 * 10**9  # a point this far after its record's append time is refused
EVICT_AFTER_S = 3600.0  # cumulative series without a point this long are forgotten


@dataclass
class Stats(WorkerStats):
    """Worker counters plus points and evaluations."""

    points: int = 0
    dropped_points: Counter[str] = field(default_factory=Counter)  # future, no_time
    evaluations: int = 0
    evaluation_seconds: float = 0.0  # the last evaluation


class SloStage(StreamWorker):
    """Burn-rate alerts on objectives and threshold rules over the metrics stream."""

    stats: Stats

    def __init__(self, config: SloConfig, ctx: Context) -> None:
        super().__init__(
            ctx,
            name="slo",
            stream=Stream.METRICS,
            group=GROUP,
            checkpoint=config.checkpoint,
            fetch_batch=config.fetch_batch,
            fetch_timeout=config.fetch_timeout,
            checkpoint_name="slo",
            stats=Stats(),
        )
        self.config = config
        self.rule_counts: dict[str, tuple[int, int]] = {}  # pending, firing (export)
        self._fresh_state()
        self.export = SloExport(self)
        ctx.telemetry.registry.register(self.export)

    def _fresh_state(self) -> None:
        c = self.config
        self.burn = BurnBook.build(
            c.objectives, c.burn_windows(), c.min_events, c.bucket_seconds, c.budget_bucket
        )
        self.rules = RuleBook(c.rules, c.stale_after, c.max_series_per_rule)
        self.tracker = DeltaTracker(c.stale_after, c.max_counters)
        self.clock_ns = 0  # data time: the newest point time seen
        self._judged = -1  # the bucket of the last evaluation
        self._last_data = time.monotonic()  # when points it reads last came (monotonic)
        self._rule_metrics = self.rules.metrics()
        self._services = {m: self.burn.services(m) for m in (CALLS, DURATION)}
        self.names = self._rule_metrics | {m for m, s in self._services.items() if s}

    # -- processing (pure, a worker thread) ---------------------------------------------------

    def process(self, records: list[Record]) -> list[NewRecord]:
        """Fold records into the state; the events of the alerts that changed."""
        events: list[dict[str, Any]] = []
        bucket_s = self.config.bucket_seconds
        for record in records:
            if record.kind != Kind.OTLP_METRICS:
                self.stats.skipped_records["kind"] += 1
                continue
            self._fold(record)
            if math.floor(self.clock_ns / 1e9 / bucket_s) > self._judged:
                events += self.evaluate()
        if self.clock_ns:
            events += self.evaluate()
        return _records(events)

    async def tick(self) -> list[NewRecord]:
        """After every fetch: when no metrics came for ``idle_after``, let data time follow
        the wall clock (minus that) and judge the alerts at it."""
        idle = self.config.idle_after
        if not idle or not self.clock_ns or time.monotonic() - self._last_data < idle:
            return []
        wall_ns = time.time_ns() - int(idle * 1e9)
        if math.floor(wall_ns / 1e9 / self.config.bucket_seconds) <= self._judged:
            return []
        self.clock_ns = max(self.clock_ns, wall_ns)
        return _records(self.evaluate())

    def _fold(self, record: Record) -> None:
        try:
            points = decode(record.payload, self.names, self._keep)
        except ValueError as exc:
            self.stats.skipped_records["undecodable"] += 1
            log.debug("slo: metrics record %d not read: %s", record.offset, exc)
            return
        if points:  # metrics nobody reads (probes') do not keep the stage from idling
            self._last_data = time.monotonic()
        limit = record.time_ns + MAX_FUTURE_NS
        for point in points:
            self.stats.points += 1
            if point.time_ns <= 0 or point.time_ns > limit:
                self.stats.dropped_points["no_time" if point.time_ns <= 0 else "future"] += 1
                continue
            self.clock_ns = max(self.clock_ns, point.time_ns)
            objectives = self.burn.wanted(point)
            rules = self.rules.matching(point)
            if not objectives and not rules:
                continue
            delta = None
            if point.kind != "gauge" and (objectives or self.rules.wants_delta(rules)):
                delta = self.tracker.update(point)
            if delta is not None:
                for objective in objectives:
                    objective.count(point, delta.counts)
            if rules:
                self.rules.observe(point, delta, rules)

    def _keep(self, metric: str, resource: dict[str, str]) -> bool:
        """Decode a metric of a resource only when a rule or an objective may read it."""
        if metric in self._rule_metrics:
            return True
        return resource.get("service.name", "") in self._services.get(metric, ())

    def evaluate(self) -> list[dict[str, Any]]:
        """Judge every alert at the current data time; events of the changes."""
        began = time.perf_counter()
        now_ns = self.clock_ns
        self._judged = math.floor(now_ns / 1e9 / self.config.bucket_seconds)
        events = [slo_event(self.burn, c, now_ns) for c in self.burn.evaluate(now_ns / 1e9)]
        events += [threshold_event(self.rules, c) for c in self.rules.evaluate(now_ns)]
        self.rule_counts = self.rules.counts()
        self.stats.evaluations += 1
        self.stats.evaluation_seconds = time.perf_counter() - began
        for event in events:
            log.info("slo: %s %s %s", event["type"], event["id"], event["status"])
        return events

    async def maintain(self) -> None:
        """Forget cumulative series long without points (before each checkpoint)."""
        self.tracker.evict(self.clock_ns - int(EVICT_AFTER_S * 1e9))

    def snapshot_parts(self) -> dict[str, bytes]:
        """The whole state as one JSON part."""
        doc = {
            "format": FORMAT,
            "clock_ns": self.clock_ns,
            "burn": self.burn.to_json(),
            "rules": self.rules.to_json(),
            "tracker": self.tracker.to_json(),
        }
        return {"state": json.dumps(doc, separators=(",", ":")).encode()}

    def restore_parts(self, parts: dict[str, bytes]) -> str:
        """Rebuild the state from ``snapshot_parts``' output. Objectives whose definition
        or bucket sizes changed start with empty counts."""
        doc = json.loads(parts["state"])
        if doc.get("format") != FORMAT:
            raise ValueError(f"unknown state format {doc.get('format')!r}")
        old = (self.burn, self.rules, self.tracker)
        self._fresh_state()
        try:
            objectives = self.burn.restore(doc["burn"])
            series = self.rules.restore(doc["rules"])
            self.tracker.restore(doc["tracker"])
        except Exception:
            self.burn, self.rules, self.tracker = old
            raise
        self.clock_ns = int(doc["clock_ns"])
        return f"{objectives} objectives' counts, {series} rule series"

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the consume-evaluate-checkpoint task; idle when nothing is configured."""
        if not self.names:
            log.info("slo: no objectives and no rules configured: idle")
            return
        await super().start()

    def describe(self) -> str:
        """Details for the start log line."""
        return (
            f"{len(self.burn.objectives)} objectives x {len(self.burn.windows)} windows, "
            f"{len(self.rules.rules)} rules"
        )

    def summary(self) -> str:
        """What the state holds, for the checkpoint log line."""
        series = sum(len(h) for h in self.rules.series.values())
        return (
            f"{len(self.burn.objectives)} objectives, {len(self.burn.firing)} burn alerts "
            f"firing, {series} rule series, {len(self.tracker.last)} counters"
        )

    def close(self) -> None:
        """Unregister the collector."""
        with contextlib.suppress(KeyError):
            self.ctx.telemetry.registry.unregister(self.export)


def _records(events: list[dict[str, Any]]) -> list[NewRecord]:
    return [
        NewRecord(Kind.EVENT_JSON, json.dumps(e, separators=(",", ":")).encode(), 1, e["id"])
        for e in events
    ]


def build(config: SloConfig, ctx: Context) -> SloStage:
    """The factory of `alerting.slo`."""
    return SloStage(config, ctx)


SPEC = ComponentSpec(
    section="alerting",
    name="slo",
    config_model=SloConfig,
    factory=build,
    description="SLOs over the span metrics with multiwindow, multi-burn-rate alerts (the "
    "SRE workbook's), and threshold rules over any metric; writes slo_burn and threshold "
    "events when an alert starts or stops firing.",
)
