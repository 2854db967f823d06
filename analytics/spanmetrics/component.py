"""Span metrics and the service graph under `keiko run` (`analytics.spanmetrics`).

Consumer group ``spanmetrics`` reads the ``traces`` stream; each fetch is decoded into
span columns and folded into span metrics and the service graph on a worker thread.
Every ``flush_interval`` the cumulative span metrics go to the ``metrics`` stream as one
OTLP request (so the anomaly detectors see each operation's rate and p99), stamped with
the newest span end seen. After every fetch the eBPF agent's ``edges`` stream is read
from the stage's own offset (no consumer group: the offset is in the checkpoint).
Prometheus reads the state at scrape time; ``GET /api/v1/servicegraph`` serves the graph.

Checkpoint parts: span metric series (keys, bucket counts, starts), graph edges, graph
counters and peer links, the edges-stream offset and the last flush time. Spans waiting
for their pair are not saved (see graph.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING

from analytics.spanmetrics import shared
from analytics.spanmetrics.api import route
from analytics.spanmetrics.config import SpanMetricsConfig
from analytics.spanmetrics.edges import EdgeView
from analytics.spanmetrics.export import SpanMetricsExport, Stats
from analytics.spanmetrics.otlp import encode
from analytics.spanmetrics.stage import SpanStage
from keiko.components import ComponentSpec, Context
from keiko.errors import KeikoError
from keiko.records import Kind, NewRecord, Record, Stream
from keiko.stream.worker import StreamWorker

if TYPE_CHECKING:
    from keiko.config.model import KeikoConfig

log = logging.getLogger(__name__)
GROUP = "spanmetrics"
CHECKPOINT_NAME = "spanmetrics"
EDGES_STREAM = "edges"  # written by the eBPF agent (ebpf/component.py)
EDGES_READ = 100  # records per read of the edges stream
EDGES_READS_PER_TICK = 10


class SpanMetricsStage(StreamWorker):
    """The `analytics.spanmetrics` component."""

    output_stream = Stream.METRICS
    serves_all_partitions = True  # edges() merges every partition's published edges
    stats: Stats

    def __init__(self, config: SpanMetricsConfig, ctx: Context) -> None:
        super().__init__(
            ctx,
            name="spanmetrics",
            stream=Stream.TRACES,
            group=GROUP,
            checkpoint=config.checkpoint,
            fetch_batch=config.fetch_batch,
            fetch_timeout=config.fetch_timeout,
            checkpoint_name=CHECKPOINT_NAME,
            stats=Stats(),
        )
        self.config = config
        self.state = SpanStage(config)
        self.flushed_ns = 0  # span time of the last flush
        self._next_flush = time.monotonic() + config.flush_interval
        self._refused_logged = 0
        self._merged: list[EdgeView] | None = None  # every partition's edges, when partitioned
        self.prom = SpanMetricsExport(self.stats, lambda: self.state, self.stream_end)
        ctx.telemetry.registry.register(self.prom)
        ctx.routes.append(route(self.edges))
        ctx.reloaders.append(self.reload)

    def edges(self) -> list[EdgeView]:
        """The current graph's edges (for the HTTP API): with several trace partitions,
        every partition's as of the last flush (analytics.spanmetrics.shared)."""
        if self.partition is None:
            return self.state.edges.views()
        return self._merged if self._merged is not None else self.state.edges.views()

    def reload(self, config: KeikoConfig) -> None:
        """SIGHUP: flush_interval, idle_expiry, graph.edge_ttl, graph.wait and
        graph.max_pending at once; the other keys need a restart (they size state)."""
        new = config.component("analytics", "spanmetrics")
        if not isinstance(new, SpanMetricsConfig) or new == self.config:
            return
        graph = self.config.graph.model_copy(
            update={k: getattr(new.graph, k) for k in ("edge_ttl", "wait", "max_pending")}
        )
        live = {"flush_interval": new.flush_interval, "idle_expiry": new.idle_expiry}
        self.config = self.config.model_copy(update={**live, "graph": graph})
        self.state.config = self.config
        g = self.state.graph
        g.wait_ns, g.max_pending = int(graph.wait * 1e9), graph.max_pending
        self._next_flush = min(self._next_flush, time.monotonic() + new.flush_interval)
        if self.config != new:
            log.warning(
                "spanmetrics: config reloaded; buckets, max_series, graph.buckets, "
                "graph.max_edges, fetch_* and checkpoint.* take effect at the next restart"
            )

    # -- StreamWorker hooks -------------------------------------------------------------------

    def process(self, records: list[Record]) -> list[NewRecord]:
        """Fold one fetch of trace requests in (worker thread); nothing to append."""
        payloads = []
        for record in records:
            if record.kind != Kind.OTLP_TRACES:
                self.stats.skipped_records["kind"] += 1
            else:
                payloads.append(record.payload)
        self.stats.spans += self.state.observe_payloads(payloads, self.stats.skipped_records)
        return []

    async def tick(self) -> list[NewRecord]:
        """Merge new eBPF edges; every flush_interval, the span metrics as one request."""
        # Edges are not split by trace: one partition merges them all (none twice).
        if self.config.graph.enabled and self.config.graph.ebpf_edges and not self.partition:
            await self._read_edges()
        if time.monotonic() < self._next_flush:
            return []
        self._next_flush = time.monotonic() + self.config.flush_interval
        flushed = await asyncio.to_thread(self._flush)
        if self.partition is not None and self.config.graph.enabled:
            await self._share_edges()
        return flushed

    async def _share_edges(self) -> None:
        """Publish this partition's edges, then merge every partition's (a store error
        leaves the last merge; the next flush tries again)."""
        try:
            kv = await self.ctx.store.kv(self.config.checkpoint.bucket)
            await kv.put(shared.KEY.format(self.partition), shared.encode_views(self.edges_own()))
            count = self.ctx.config.store.nats.partitions
            raws = [await kv.get(shared.KEY.format(p)) for p in range(count)]
        except KeikoError as exc:
            log.warning("spanmetrics: sharing the service graph failed: %s", exc)
            return
        parts = []
        for p, raw in enumerate(raws):
            try:
                parts.append(shared.decode_views(raw) if raw else [])
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("spanmetrics: published edges of partition %d unusable: %s", p, exc)
        self._merged = shared.merge(parts)

    def edges_own(self) -> list[EdgeView]:
        """This worker's own edges (its trace partition only)."""
        return self.state.edges.views()

    def _flush(self) -> list[NewRecord]:
        metrics = self.state.metrics
        newest = metrics.newest_ns
        self.state.edges.mark(max(newest, self.state.graph.newest_ns))
        if newest <= self.flushed_ns or not len(metrics):
            return []  # no new spans: a point at the same time would be out of order
        with metrics.lock:
            request = encode(metrics.series(), metrics.bounds_s, newest, self._partial())
            points = 2 * len(metrics)
        self.flushed_ns = newest
        self.stats.flushes += 1
        return [NewRecord(Kind.OTLP_METRICS, request.SerializeToString(), points)]

    def _partial(self) -> dict[str, str]:
        """Resource attributes that keep the series of one trace partition apart: with
        several partitions each counts only its own spans, so each writes its own
        cumulative series (summed over ``keiko.partition`` they are the service's)."""
        return {} if self.partition is None else {"keiko.partition": str(self.partition)}

    async def _read_edges(self) -> None:
        for _ in range(EDGES_READS_PER_TICK):
            try:
                records = await self.ctx.store.read(
                    EDGES_STREAM, self.stats.edges_offset + 1, EDGES_READ
                )
            except Exception as exc:  # no such stream yet (no eBPF agent), or unavailable
                log.debug("spanmetrics: edges stream not read: %s", exc)
                return
            for record in records:
                self.stats.edges_offset = record.offset
                self.stats.edges_records += 1
                if record.kind != Kind.EDGES_JSON:
                    self.stats.skipped_records["edges_kind"] += 1
                    continue
                try:
                    self.state.observe_edges(record.payload)
                except (ValueError, TypeError, AttributeError):
                    self.stats.skipped_records["edges_undecodable"] += 1
            if len(records) < EDGES_READ:
                return

    async def _check_edges_offset(self) -> None:
        """Read the edges stream from its start again if it was recreated (it now ends
        before the offset already read). Fresh stats: a stale view would re-read edges."""
        try:
            stats = await self.ctx.store.stats()
        except Exception as exc:
            log.debug("spanmetrics: store stats not read: %s", exc)
            return
        last = next((s.last_offset for s in stats.streams if s.name == EDGES_STREAM), None)
        if last is not None and last < self.stats.edges_offset:
            log.warning(
                "spanmetrics: the edges stream ends at %d, before offset %d already read "
                "(was it recreated?): reading it from its start",
                last,
                self.stats.edges_offset,
            )
            self.stats.edges_offset = 0

    async def maintain(self) -> None:
        """Drop idle series and edges; say (once per interval) when caps refused spans."""
        if self.stats.edges_offset:
            await self._check_edges_offset()
        series, edges = await asyncio.to_thread(self.state.evict)
        self.stats.evicted_series += series
        self.stats.evicted_edges += edges
        refused = self.state.metrics.refused
        if refused > self._refused_logged:
            log.warning(
                "spanmetrics: series cap hit: %d spans of new series not counted since the "
                "last check (analytics.spanmetrics.max_series = %d)",
                refused - self._refused_logged,
                self.config.max_series,
            )
            self._refused_logged = refused

    def snapshot_parts(self) -> dict[str, bytes]:
        """Span metrics, edges, graph counters, edges-stream offset, last flush."""
        meta = {"edges_offset": self.stats.edges_offset, "flushed_ns": self.flushed_ns}
        return {"meta": json.dumps(meta).encode(), **self.state.snapshot_parts()}

    def restore_parts(self, parts: dict[str, bytes]) -> str:
        """Rebuild the state from a checkpoint."""
        state = SpanStage(self.config)
        summary = state.restore_parts(parts)
        meta = json.loads(parts["meta"])
        self.state = state
        self.stats.edges_offset = int(meta["edges_offset"])
        self.flushed_ns = int(meta["flushed_ns"])
        self._refused_logged = state.metrics.refused
        return summary

    def describe(self) -> str:
        """The start line's details."""
        c = self.config
        return (
            f"flush every {c.flush_interval:g}s to the metrics stream, max_series "
            f"{c.max_series}, graph {'on' if c.graph.enabled else 'off'}"
        )

    def summary(self) -> str:
        """The checkpoint line's details."""
        return self.state.summary()

    def close(self) -> None:
        """Unregister the Prometheus collector and the reloader."""
        with contextlib.suppress(KeyError):
            self.ctx.telemetry.registry.unregister(self.prom)
        with contextlib.suppress(ValueError):
            self.ctx.reloaders.remove(self.reload)


def build(config: SpanMetricsConfig, ctx: Context) -> SpanMetricsStage:
    """The factory of `analytics.spanmetrics`."""
    return SpanMetricsStage(config, ctx)


SPEC = ComponentSpec(
    section="analytics",
    name="spanmetrics",
    config_model=SpanMetricsConfig,
    factory=build,
    description="Span metrics (calls and duration histograms per service and operation, "
    "written to the metrics stream and exported to Prometheus) and the service graph "
    "(client -> server edges from spans and eBPF TCP edges; Prometheus and "
    "GET /api/v1/servicegraph); state checkpointed to the store.",
    partitioned_stream=Stream.TRACES,
)
