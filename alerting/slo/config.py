"""Config of the `alerting.slo` stage: objectives, burn-rate windows, threshold rules.

Objectives, windows and rules are mappings keyed by their name (names are unique by
construction, and the config reference can describe a mapping of models). An empty
``windows`` mapping means the SRE workbook's multiwindow, multi-burn-rate table
(:data:`WORKBOOK_WINDOWS`).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from keiko.store.config import Strict
from keiko.stream.config import BUCKET_DESCRIPTION, CheckpointConfig, StreamStageConfig
from keiko.units import Duration

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
NAME_RULE = "use 1-128 characters A-Z, a-z, 0-9, '_', '.', ':' or '-'"
Severity = Literal["page", "ticket"]


def check_names(names: list[str], what: str) -> None:
    """Raise ValueError naming the first bad name of a mapping key."""
    for name in names:
        if not _NAME.match(name):
            raise ValueError(f"{what} name {name!r}: {NAME_RULE}")


class BurnWindowConfig(Strict):
    """One row of the burn-rate table: alert when both windows burn at least ``factor``."""

    severity: Severity = Field(default="page", description="What the alert asks for.")
    long: Duration = Field(
        default=3600.0, gt=0, description="The long window: the burn has lasted this long."
    )
    short: Duration = Field(
        default=300.0,
        gt=0,
        description="The short window: the burn is still going on (it also resets the alert "
        "soon after the burn stops). The workbook uses 1/12 of the long window.",
    )
    factor: float = Field(
        default=14.4,
        gt=0,
        description="Burn rate (error ratio / (1 - target)) both windows must reach; 1 "
        "spends the whole budget in exactly one period.",
    )

    @model_validator(mode="after")
    def _short_in_long(self) -> BurnWindowConfig:
        if self.short > self.long:
            raise ValueError("short must not be longer than long")
        return self


# The SRE workbook, chapter 5 (alerting on SLOs), for a 30-day period: 2% of the budget
# in 1h, 5% in 6h page; 10% in 3d ... ticket.
WORKBOOK_WINDOWS: dict[str, BurnWindowConfig] = {
    "page-1h": BurnWindowConfig(severity="page", long=3600, short=300, factor=14.4),
    "page-6h": BurnWindowConfig(severity="page", long=6 * 3600, short=1800, factor=6),
    "ticket-1d": BurnWindowConfig(severity="ticket", long=86400, short=7200, factor=3),
    "ticket-3d": BurnWindowConfig(severity="ticket", long=3 * 86400, short=6 * 3600, factor=1),
}


class ObjectiveConfig(Strict):
    """One service level objective over the span metrics of one service."""

    service: str = Field(min_length=1, description="The service (resource `service.name`).")
    kind: Literal["availability", "latency"] = Field(
        default="availability",
        description="availability: good calls are those whose status is not ERROR; "
        "latency: good calls are those that took at most `threshold` (any status).",
    )
    target: float = Field(
        default=0.999,
        gt=0,
        lt=1,
        description="The share of good calls promised over `period` (0.999 = 99.9%); the "
        "error budget is 1 - target.",
    )
    threshold: Duration | None = Field(
        default=None,
        gt=0,
        description="Latency objectives: the duration a good call stays within (e.g. 300ms). "
        "Exact when it is a bound of the duration histogram; otherwise the calls of the "
        "bucket it falls in are shared out linearly over that bucket.",
    )
    span_kind: str = Field(
        default="SERVER",
        validate_default=True,
        description="Only spans of this kind (SERVER, CLIENT, CONSUMER, PRODUCER, INTERNAL, "
        "with or without the SPAN_KIND_ prefix); empty for every kind.",
    )
    span_name: str = Field(
        default="", description="Only spans of this name (e.g. one endpoint); empty for all."
    )
    period: Duration = Field(
        default=30 * 86400,
        gt=0,
        description="The period the target and the error budget are over.",
    )
    labels: dict[str, str] = Field(
        default_factory=dict, description="Extra labels of this objective's alerts."
    )

    @field_validator("span_kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        text = value.strip().upper().removeprefix("SPAN_KIND_")
        allowed = {"", "SERVER", "CLIENT", "CONSUMER", "PRODUCER", "INTERNAL", "UNSPECIFIED"}
        if text not in allowed:
            raise ValueError(f"{value!r} is not a span kind: use SERVER, CLIENT, CONSUMER, ...")
        return text and f"SPAN_KIND_{text}"

    @model_validator(mode="after")
    def _latency_threshold(self) -> ObjectiveConfig:
        if self.kind == "latency" and self.threshold is None:
            raise ValueError("a latency objective needs a threshold (e.g. threshold: 300ms)")
        return self


class ThresholdRuleConfig(Strict):
    """Alert while a metric's value (or per-second rate) crosses a threshold."""

    metric: str = Field(min_length=1, description="The OTLP metric name (a gauge or a sum).")
    matchers: dict[str, str] = Field(
        default_factory=dict,
        description="Only series whose point or resource attributes equal these values.",
    )
    op: Literal[">", ">=", "<", "<="] = Field(
        default=">", description="How the value compares with `threshold` while alerting."
    )
    threshold: float = Field(description="The value compared with.")
    for_duration: Duration = Field(
        default=0.0,
        description="Prometheus' `for`: the condition must hold this long (in data time) "
        "before the alert fires; until then it is pending.",
    )
    rate: bool = Field(
        default=False,
        description="Compare the per-second rate of a sum instead of its value (cumulative "
        "sums: between consecutive points, a drop being a restart; delta sums: over each "
        "point's own interval).",
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Extra alert labels.")
    annotations: dict[str, str] = Field(
        default_factory=dict, description="Alert annotations (summary, runbook_url ...)."
    )


class SloCheckpointConfig(CheckpointConfig):
    """Where the counts, the rules' series and the alert states are saved."""

    bucket: str = Field(default="slo", description=BUCKET_DESCRIPTION)


class SloConfig(StreamStageConfig):
    """SLO burn-rate alerts and threshold rules over the `metrics` stream; writes events."""

    objectives: dict[str, ObjectiveConfig] = Field(
        default_factory=dict, description="Service level objectives by name."
    )
    windows: dict[str, BurnWindowConfig] = Field(
        default_factory=dict,
        description="Burn-rate alert windows by name; empty: the SRE workbook's table "
        "(page-1h: 1h/5m at 14.4, page-6h: 6h/30m at 6, ticket-1d: 1d/2h at 3, "
        "ticket-3d: 3d/6h at 1).",
    )
    min_events: int = Field(
        default=20,
        ge=1,
        description="A window with fewer calls than this gives no verdict, and no verdict "
        "is never firing: the alert does not fire, or resolves (reason insufficient_data).",
    )
    bucket_seconds: Duration = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="Time resolution of the burn-rate counts (windows are whole buckets).",
    )
    budget_bucket: Duration = Field(
        default=3600.0,
        ge=1,
        description="Time resolution of the counts the error budget is computed over.",
    )
    rules: dict[str, ThresholdRuleConfig] = Field(
        default_factory=dict, description="Threshold rules by name."
    )
    stale_after: Duration = Field(
        default=300.0,
        gt=0,
        description="A rule's series without a point for this long (data time) is resolved "
        "and forgotten.",
    )
    idle_after: Duration = Field(
        default=60.0,
        ge=0,
        description="Alerts are judged at data time (the newest point time seen). When no "
        "metrics it reads have come for this long, data time follows the wall clock minus this "
        "instead, so that alerts on services that went silent resolve; 0: never.",
    )
    max_series_per_rule: int = Field(
        default=1000, gt=0, description="Series a rule tracks; more are dropped (counted)."
    )
    max_counters: int = Field(
        default=100_000,
        gt=0,
        description="Cumulative series whose last value is kept to compute deltas; more are "
        "dropped (counted).",
    )
    checkpoint: SloCheckpointConfig = Field(default_factory=SloCheckpointConfig)

    @model_validator(mode="after")
    def _names_and_windows(self) -> SloConfig:
        check_names(list(self.objectives), "objective")
        check_names(list(self.windows), "window")
        check_names(list(self.rules), "rule")
        for name, window in self.burn_windows().items():
            if window.short < self.bucket_seconds:
                raise ValueError(
                    f"window {name}: short ({window.short:g}s) is shorter than "
                    f"bucket_seconds ({self.bucket_seconds:g}s): lower bucket_seconds"
                )
        return self

    def burn_windows(self) -> dict[str, BurnWindowConfig]:
        """The configured windows, or the workbook's."""
        return self.windows or WORKBOOK_WINDOWS
