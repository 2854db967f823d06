"""The `analytics.incidents` stage: anomaly events in, incident events out.

A task reads the ``events`` stream as consumer group ``incidents``. Each anomaly joins
the open incident that is near it in time and in the call graph, or opens one. Once an
incident has settled (``settle`` after it opened) the stage reads the signals around it
back from the store (metrics decoded as the detectors see them, spans, the call graph
they show), ranks root causes with the same RCA as ``keiko rca``, links each anomaly to
example traces, and writes an ``incident`` event; a new version when more anomalies join,
and a ``closed`` one when the incident has been quiet for a ``window``. Open incidents are
checkpointed with the offset they cover.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from analytics.anomaly.events import encode_event
from analytics.incidents.api import route
from analytics.incidents.config import IncidentsConfig
from analytics.incidents.grouping import Incident, IncidentBook
from analytics.incidents.report import anomaly_of, incident_event
from analytics.rca.fromstore import read_window
from analytics.rca.graph import CallGraph
from analytics.rca.rank import rank
from analytics.traces.analysis import summarise
from analytics.traces.profile import exemplars
from keiko.components import ComponentSpec, Context
from keiko.records import Kind, NewRecord, Record, Stream
from keiko.stream.export import gauge, worker_metrics
from keiko.stream.worker import StreamWorker, WorkerStats

log = logging.getLogger(__name__)
GROUP = "incidents"
PREFIX = "keiko_incidents"


@dataclass
class Stats(WorkerStats):
    """Worker counters plus incidents by what happened to them."""

    incidents: Counter[str] = field(default_factory=Counter)  # opened, analysed, closed ...
    analysis_seconds: float = 0.0  # the last analysis
    analysis_failures: int = 0


class IncidentStage(StreamWorker):
    """Groups anomalies into incidents and ranks their root causes."""

    stats: Stats

    def __init__(self, config: IncidentsConfig, ctx: Context) -> None:
        super().__init__(
            ctx,
            name="incidents",
            stream=Stream.EVENTS,
            group=GROUP,
            checkpoint=config.checkpoint,
            fetch_batch=config.fetch_batch,
            fetch_timeout=config.fetch_timeout,
            checkpoint_name="incidents",
            stats=Stats(),
        )
        self.config = config
        self.book = IncidentBook(config.window, config.hops, config.max_open)
        self.graph = CallGraph()  # grows with every analysis: the neighbourhood of grouping
        self.recent: list[dict[str, Any]] = []  # the latest version of recent incidents (API)
        self.prom = IncidentExport(self)
        ctx.telemetry.registry.register(self.prom)
        ctx.routes.append(route(lambda: list(self.recent)))

    # -- StreamWorker hooks -------------------------------------------------------------------

    def process(self, records: list[Record]) -> list[NewRecord]:
        """File the anomaly events of one fetch into incidents."""
        for record in records:
            if record.kind != Kind.EVENT_JSON:
                self.stats.skipped_records["kind"] += 1
                continue
            try:
                event = json.loads(record.payload)
                if event.get("type") != "anomaly":
                    continue
                anomaly = anomaly_of(event)
            except (ValueError, KeyError, TypeError) as exc:
                self.stats.skipped_records["undecodable"] += 1
                log.debug("incidents: event %d not read: %s", record.offset, exc)
                continue
            filed = self.book.add(anomaly, self.graph)
            if filed is not None and filed[1]:
                self.stats.incidents["opened"] += 1
                log.info("incidents: %s opened by %s", filed[0].id, anomaly["series"])
        return []

    async def tick(self) -> list[NewRecord]:
        """Analyse the incidents that are due; close the quiet ones."""
        now = time.time()
        c = self.config
        out = []
        for incident in self.book.due(now, c.settle, c.reanalyse):
            event = await self._analyse(incident, now)
            if event is not None:
                out.append(self._record(event))
        for incident in self.book.expire(now):
            self.stats.incidents["closed"] += 1
            incident.version += 1
            event = incident_event(incident, "closed", now, {})
            self._remember(event)
            out.append(self._record(event))
        return out

    async def _analyse(self, incident: Incident, now: float) -> dict[str, Any] | None:
        c = self.config
        began = time.perf_counter()
        try:
            window = await read_window(
                self.ctx.store, incident.onset - c.lookback, now, c.max_metric_records, c.max_spans
            )
            causes = await asyncio.to_thread(
                rank, window.case, incident.onset, c.top, incident.symptom
            )
        except Exception:
            self.stats.analysis_failures += 1
            log.exception("incidents: analysis of %s failed (retried later)", incident.id)
            incident.analysed_at = now  # due again after `reanalyse`, as if it had grown
            incident.analysed_anomalies = 0
            return None
        spans = window.case.spans
        if spans is not None:
            self.graph.add_spans(spans)
            summaries = await asyncio.to_thread(summarise, spans)
            for a in incident.anomalies:  # the traces of the anomaly's service since its onset
                found = exemplars(summaries, a["service"], a["onset"], None, c.exemplars)
                a["exemplars"] = [e.to_json() for e in found]
        incident.root_causes = [cand.to_json() for cand in causes]
        incident.version += 1
        incident.analysed_at = now
        incident.analysed_anomalies = len(incident.anomalies)
        self.stats.analysis_seconds = time.perf_counter() - began
        self.stats.incidents["analysed"] += 1
        info = {
            "start": incident.onset - c.lookback,
            "end": now,
            "series": window.series,
            "spans": window.spans,
            "truncated": window.truncated,
            "analysis_seconds": round(self.stats.analysis_seconds, 3),
        }
        event = incident_event(incident, "open", now, info)
        self._remember(event)
        log.info("incidents: %s v%d: %s", incident.id, incident.version, event["summary"])
        return event

    def _record(self, event: dict[str, Any]) -> NewRecord:
        return NewRecord(Kind.EVENT_JSON, encode_event(event), 1, event["id"])

    def _remember(self, event: dict[str, Any]) -> None:
        self.recent = [*[e for e in self.recent if e["id"] != event["id"]][-99:], event]

    def snapshot_parts(self) -> dict[str, bytes]:
        """The open incidents and the call graph grouping uses."""
        edges = [[a, b] for a, callees in self.graph.callees.items() for b in sorted(callees)]
        return {"book": self.book.snapshot(), "graph": json.dumps(edges).encode()}

    def restore_parts(self, parts: dict[str, bytes]) -> str:
        """Rebuild the open incidents and the graph."""
        book = IncidentBook(self.config.window, self.config.hops, self.config.max_open)
        book.restore(parts["book"])
        graph = CallGraph((a, b) for a, b in json.loads(parts["graph"]))
        self.book, self.graph = book, graph
        return self.summary()

    def summary(self) -> str:
        """Open incidents, for the checkpoint line."""
        return f"{len(self.book.open)} open incidents, {len(self.graph)} call edges"

    def close(self) -> None:
        """Unregister the collector."""
        with contextlib.suppress(KeyError):
            self.ctx.telemetry.registry.unregister(self.prom)


class IncidentExport(Collector):
    """keiko_incidents_*: open incidents, their ranked causes, and the worker's progress."""

    def __init__(self, stage: IncidentStage) -> None:
        self.stage = stage

    def collect(self) -> Iterator[Metric]:
        """Read at scrape time."""
        stage, s = self.stage, self.stage.stats
        yield gauge(f"{PREFIX}_open", "Incidents open now.", len(stage.book.open))
        family = CounterMetricFamily(
            f"{PREFIX}_total",
            "Incidents by what happened: opened, analysed (each version), closed.",
            labels=["event"],
        )
        for what, n in sorted(dict(s.incidents).items()):
            family.add_metric([what], n)
        yield family
        yield CounterMetricFamily(
            f"{PREFIX}_analysis_failures", "Analyses that failed.", value=s.analysis_failures
        )
        yield gauge(
            f"{PREFIX}_analysis_duration_seconds",
            "Time the last analysis took.",
            s.analysis_seconds,
        )
        causes = GaugeMetricFamily(
            "keiko_incident_root_cause_score",
            "Root-cause candidates of the open incidents, by rank (1 = most likely); the value "
            "is the candidate's score.",
            labels=["incident", "service", "rank"],
        )
        for incident in list(stage.book.open.values()):
            for k, cause in enumerate(incident.root_causes, 1):
                causes.add_metric([incident.id, cause["service"], str(k)], cause["score"])
        yield causes
        yield from worker_metrics(PREFIX, stage.stream, s, stage.stream_end)


def build(config: IncidentsConfig, ctx: Context) -> IncidentStage:
    """The factory of `analytics.incidents`."""
    return IncidentStage(config, ctx)


SPEC = ComponentSpec(
    section="analytics",
    name="incidents",
    config_model=IncidentsConfig,
    factory=build,
    description="Groups anomaly events into incidents (time window and call-graph "
    "neighbourhood), ranks their root causes with evidence from metrics, traces and the "
    "service graph, and writes incident events.",
    partitioned_stream=Stream.EVENTS,
)
