"""Config of the scaling advisor stage (the `analytics.scaling` section)."""

from __future__ import annotations

from pydantic import Field

from analytics.forecast.config import AdvisorConfig
from analytics.series.workloads import (
    DEFAULT_CPU_METRICS,
    DEFAULT_LATENCY_METRICS,
    DEFAULT_RATE_METRICS,
)
from keiko.stream.config import BUCKET_DESCRIPTION, CheckpointConfig, StreamStageConfig
from keiko.units import Duration


class ScalingCheckpointConfig(CheckpointConfig):
    """Where and how often the advisor's state (series, forecasters) is saved."""

    bucket: str = Field(default="scaling", description=BUCKET_DESCRIPTION)


class ScalingConfig(StreamStageConfig):
    """Forecast each workload's request rate and advise replicas ahead of the load."""

    enabled: bool = Field(
        default=False,
        description="Run the scaling advisor (off by default: set a capacity per replica, "
        "or let it learn one from latency, before anything scales on its advice).",
    )
    checkpoint: ScalingCheckpointConfig = Field(default_factory=ScalingCheckpointConfig)
    max_series: int = Field(
        default=100_000,
        gt=0,
        description="Metric series tracked at most (only request-rate and latency series "
        "are used; the others are decoded and dropped).",
    )
    rate_metrics: list[str] = Field(
        default_factory=lambda: list(DEFAULT_RATE_METRICS),
        description="Glob patterns of the series that count a workload's requests (per "
        "second); a workload's rate is the sum over its series.",
    )
    latency_metrics: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LATENCY_METRICS),
        description="Glob patterns of latency series (seconds); the highest fresh one is the "
        "workload's latency, from which capacity per replica is learnt when not configured.",
    )
    cpu_metrics: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CPU_METRICS),
        description="Globs of CPU time counters (their rate is cores); a workload's CPU is the "
        "sum over its series, forecast like its request rate.",
    )
    workload_labels: list[str] = Field(
        default_factory=lambda: ["k8s.namespace.name", "service.name"],
        description="Labels that name a workload, joined with '/' (e.g. 'shop/checkout'); "
        "the service name when none is set.",
    )
    freshness: Duration = Field(
        default=120.0,
        gt=0,
        description="A series counts towards its workload's rate and replicas while its "
        "latest point is at most this old.",
    )
    advisor: AdvisorConfig = Field(
        default_factory=AdvisorConfig,
        description="Forecast step, per-workload capacity, headroom, horizon, start-up "
        "delay, scale-in stabilisation and replica bounds.",
    )
