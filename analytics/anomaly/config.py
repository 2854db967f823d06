"""Config of online anomaly detection (the `analytics.anomaly` section)."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase

from pydantic import Field, field_validator

from analytics.series.workloads import DEFAULT_LATENCY_METRICS, DEFAULT_RATE_METRICS
from keiko.store.config import Strict
from keiko.stream.config import BUCKET_DESCRIPTION, CheckpointConfig, StreamStageConfig
from keiko.units import Duration

REGEX_PREFIX = "re:"


class AnomalyCheckpointConfig(CheckpointConfig):
    """Where and how often the detectors' state is saved (restored at start)."""

    bucket: str = Field(default="anomaly", description=BUCKET_DESCRIPTION)


class ScoreExportConfig(Strict):
    """Bounds of the `keiko_anomaly_score` gauge (one labelled series per tracked series)."""

    max_series: int = Field(
        default=100,
        ge=0,
        description="Series shown at most; when full, a higher score replaces the lowest.",
    )
    hold: Duration = Field(
        default=300.0,
        ge=0,
        description="A series stays shown this long after its last score at or above the "
        "threshold (by point time).",
    )


class ServicesConfig(Strict):
    """Per-service multivariate detection (river HalfSpaceTrees over rate, errors, latency)."""

    enabled: bool = Field(
        default=True,
        description="Also score each service's (rate, error ratio, p99 latency) vector and "
        "its error ratio; their anomalies are events of the series 'keiko.service.red:hst' "
        "and 'keiko.service.errors:ratio' of the service.",
    )
    max_services: int = Field(
        default=200,
        gt=0,
        description="Services modelled at most (about 300 KiB each); the least recently "
        "seen is dropped.",
    )
    rate_metrics: list[str] = Field(
        default_factory=lambda: list(DEFAULT_RATE_METRICS),
        description="Globs of the series that count a service's requests (summed).",
    )
    latency_metrics: list[str] = Field(
        default_factory=lambda: list(DEFAULT_LATENCY_METRICS),
        description="Globs of a service's latency series in seconds (the highest is used).",
    )


class AnomalyConfig(StreamStageConfig):
    """Online anomaly detection on every metric series of the `metrics` stream."""

    enabled: bool = Field(default=True, description="Run the anomaly detector.")
    threshold: float = Field(
        default=0.79,
        gt=0,
        le=1,
        description="Anomaly probability at or above which a point is anomalous. 0.79 is "
        "where the detector scores best on the NAB benchmark; higher values flag fewer "
        "points of noisy series and find fewer anomalies (see the README).",
    )
    max_series: int = Field(
        default=100_000,
        gt=0,
        description="Series scored at most; points of further series are refused and "
        "counted (keiko_anomaly_series_refused_total) until idle series are evicted.",
    )
    idle_expiry: Duration = Field(
        default=3600.0,
        gt=0,
        description="A series without points for this long (by point time) is forgotten "
        "and its slot reused.",
    )
    cooldown: Duration = Field(
        default=900.0,
        ge=0,
        description="At most one event per series within this time (by point time), even "
        "when it leaves an excursion and enters a new one.",
    )
    include: list[str] = Field(
        default_factory=list,
        description="Metric names to score (globs, or regexes prefixed 're:'); empty: all. "
        "A derived series such as 'http.server.duration:p99' matches by its base name.",
    )
    exclude: list[str] = Field(
        default_factory=lambda: ["keiko_*"],
        description="Metric names never scored (globs or 're:' regexes); wins over include. "
        "The default leaves out keiko's own Prometheus self-metrics if they are scraped "
        "back into the stream (the eBPF node metrics, keiko.ebpf.*, are kept).",
    )
    resource_keys: list[str] = Field(
        default_factory=list,
        description="Resource attributes that identify a series besides service.name, "
        "service.namespace, host.name, container.id and k8s.* (e.g. service.instance.id "
        "when several processes of a service share a host). Changing it renames series.",
    )
    checkpoint: AnomalyCheckpointConfig = Field(default_factory=AnomalyCheckpointConfig)
    score_export: ScoreExportConfig = Field(default_factory=ScoreExportConfig)
    services: ServicesConfig = Field(default_factory=ServicesConfig)

    @field_validator("include", "exclude")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if pattern.startswith(REGEX_PREFIX):
                try:
                    re.compile(pattern[len(REGEX_PREFIX) :])
                except re.error as exc:
                    raise ValueError(
                        f"{pattern!r} is not a valid regex ({exc}); fix it or drop the "
                        f"'{REGEX_PREFIX}' prefix to use a glob"
                    ) from exc
        return patterns


class MetricFilter:
    """Which metric names are scored, from the include and exclude patterns."""

    def __init__(self, include: list[str], exclude: list[str]) -> None:
        self._include = [_matcher(p) for p in include]
        self._exclude = [_matcher(p) for p in exclude]

    def __call__(self, metric: str) -> bool:
        """True when ``metric`` (or its base name, before ':') is scored."""
        names = {metric, metric.split(":", 1)[0]}
        if any(m(n) for m in self._exclude for n in names):
            return False
        return not self._include or any(m(n) for m in self._include for n in names)


def _matcher(pattern: str) -> _Glob:
    if pattern.startswith(REGEX_PREFIX):
        return _Regex(pattern[len(REGEX_PREFIX) :])
    return _Glob(pattern)


class _Glob:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern

    def __call__(self, name: str) -> bool:
        return fnmatchcase(name, self.pattern)


class _Regex(_Glob):
    def __init__(self, pattern: str) -> None:
        super().__init__(pattern)
        self._re = re.compile(pattern)

    def __call__(self, name: str) -> bool:
        return self._re.fullmatch(name) is not None
