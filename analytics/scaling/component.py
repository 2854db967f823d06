"""The scaling advisor under `keiko run` (`analytics.scaling`): metrics in, replica advice out.

Consumer group ``scaling`` reads the ``metrics`` stream, decodes it into series, sums each
workload's request rate (and counts its replicas, takes its p99 latency), and feeds the
online forecaster of :class:`ScalingAdvisor`. Advice is served as the Prometheus gauge
``keiko_scaling_desired_replicas{workload,mode}`` (for a KEDA ``prometheus`` trigger or an
HPA external metric) and written to the ``events`` stream whenever a workload's advised
replicas or mode change. State (series, decoder, forecasters) is checkpointed with the
offset it covers, like every stream worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import TYPE_CHECKING

import numpy as np

from analytics.forecast.advisor import Advice, AdvisorCollector, ScalingAdvisor
from analytics.scaling.config import ScalingConfig
from analytics.scaling.forecasts import ForecastCollector, WorkloadForecasts
from analytics.series.decode import MetricsDecoder
from analytics.series.table import SeriesTable
from analytics.series.workloads import Observation, WorkloadRates
from keiko.components import ComponentSpec, Context
from keiko.humanize import rfc3339
from keiko.records import Kind, NewRecord, Record, Stream
from keiko.stream.export import WorkerExport
from keiko.stream.worker import StreamWorker

if TYPE_CHECKING:
    from analytics.series.types import PointBatch

log = logging.getLogger(__name__)


class ScalingStage(StreamWorker):
    """The `analytics.scaling` component."""

    def __init__(self, config: ScalingConfig, ctx: Context) -> None:
        super().__init__(
            ctx,
            name="scaling",
            stream=Stream.METRICS,
            group="scaling",
            checkpoint=config.checkpoint,
            fetch_batch=config.fetch_batch,
            fetch_timeout=config.fetch_timeout,
            checkpoint_name="advisor",
        )
        self.config = config
        self._fresh()
        self.collector = AdvisorCollector(self.advisor)
        self.forecast_gauge = ForecastCollector(self.forecasts)
        self.progress = WorkerExport("keiko_scaling", Stream.METRICS, self.stats, self.stream_end)
        for collector in (self.collector, self.forecast_gauge, self.progress):
            ctx.telemetry.registry.register(collector)

    def _fresh(self) -> None:
        c = self.config
        self.table = SeriesTable(c.max_series)
        self.decoder = MetricsDecoder(self.table)
        self.rates = WorkloadRates(
            c.rate_metrics, c.latency_metrics, c.workload_labels, c.freshness, c.cpu_metrics
        )
        self.table.on_evict(self.rates.forget)
        self.advisor = ScalingAdvisor(c.advisor)
        forecaster = c.advisor.forecaster.model_copy(update={"step_s": c.advisor.step_s})
        self.forecasts = WorkloadForecasts(forecaster, c.advisor.max_workloads)
        self._said: dict[str, tuple[int, str]] = {}  # workload -> (replicas, mode) last written
        self._newest = -np.inf

    # -- StreamWorker hooks ---------------------------------------------------------------

    def process(self, records: list[Record]) -> list[NewRecord]:
        """Decode, aggregate per workload, advise; events for changed advice."""
        events: list[NewRecord] = []
        for record in records:
            if record.kind != Kind.OTLP_METRICS:
                self.stats.skipped_records["kind"] += 1
                continue
            try:
                batch = self.decoder.decode(record.payload)
            except ValueError:
                self.stats.skipped_records["undecodable"] += 1
                continue
            events += self._advise(batch)
        return events

    def snapshot_parts(self) -> dict[str, bytes]:
        """Series table, decoder, advisor, and what was last said per workload."""
        meta = {"said": self._said, "newest": self._newest if np.isfinite(self._newest) else None}
        return {
            "meta": json.dumps(meta).encode(),
            "table": self.table.snapshot(),
            "decoder": self.decoder.snapshot(),
            "advisor": self.advisor.snapshot(),
            "forecasts": self.forecasts.snapshot(),
        }

    def restore_parts(self, parts: dict[str, bytes]) -> str:
        """Rebuild from a checkpoint."""
        self._fresh()
        self.table.restore(parts["table"])
        self.decoder.restore(parts["decoder"])
        self.advisor.restore(parts["advisor"])
        if "forecasts" in parts:
            self.forecasts.restore(parts["forecasts"])
        meta = json.loads(parts["meta"])
        self._said = {w: (int(r), str(m)) for w, (r, m) in meta.get("said", {}).items()}
        self._newest = -np.inf if meta.get("newest") is None else float(meta["newest"])
        self.collector.advisor = self.advisor
        self.forecast_gauge.forecasts = self.forecasts
        return f"{len(self.advisor.workloads())} workloads, {len(self.table)} series"

    async def maintain(self) -> None:
        """Forget series idle for longer than the advisor could use them."""
        if np.isfinite(self._newest):
            self.table.evict_idle(self._newest - max(self.config.freshness * 10, 3600.0))

    def close(self) -> None:
        """Stop serving the advice gauge and the stage's progress."""
        for collector in (self.collector, self.forecast_gauge, self.progress):
            with contextlib.suppress(KeyError):
                self.ctx.telemetry.registry.unregister(collector)

    def summary(self) -> str:
        """The checkpoint line's details."""
        return f"{len(self.advisor.workloads())} workloads, {len(self.table)} series"

    def describe(self) -> str:
        """The start line's details."""
        c = self.config
        return f"rate metrics {', '.join(c.rate_metrics)}; step {c.advisor.step_s:g}s"

    # -- advice -----------------------------------------------------------------------------

    def _advise(self, batch: PointBatch) -> list[NewRecord]:
        if not len(batch):
            return []
        self._newest = max(self._newest, float(batch.times.max()))
        events = []
        for obs in self.rates.observe(batch, self.table):
            advice = self._observe(obs)
            if advice is not None and self._changed(advice):
                events.append(advice_record(advice))
        return events

    def _observe(self, obs: Observation) -> Advice | None:
        self.forecasts.observe(obs.workload, "rate", obs.time, obs.rate)
        self.forecasts.observe(obs.workload, "cpu", obs.time, obs.cpu)
        return self.advisor.observe(obs.workload, obs.time, obs.rate, obs.replicas, obs.latency)

    def _changed(self, advice: Advice) -> bool:
        now = (advice.replicas, advice.mode)
        if self._said.get(advice.workload) == now:
            return False
        if self._said.get(advice.workload, (None, ""))[1] != advice.mode:
            log.info("scaling: %s: %s advice (%s)", advice.workload, advice.mode, advice.reason)
        self._said[advice.workload] = now
        return True


def advice_record(advice: Advice) -> NewRecord:
    """The event of one piece of advice (keyed by workload)."""
    body = {"type": "scaling_advice", **advice.as_event()}
    body["time_rfc3339"] = rfc3339(round(advice.time * 1e9))
    payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    return NewRecord(Kind.EVENT_JSON, payload, 1, advice.workload)


def build(config: ScalingConfig, ctx: Context) -> ScalingStage:
    """The factory of `analytics.scaling`."""
    return ScalingStage(config, ctx)


SPEC = ComponentSpec(
    section="analytics",
    name="scaling",
    config_model=ScalingConfig,
    factory=build,
    description="Predictive scaling advice per workload from the metrics stream.",
    partitioned_stream=Stream.METRICS,
)
