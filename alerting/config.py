"""Config of the `alerting.router` component: Alertmanager's routing configuration (inline
or from an Alertmanager file) plus keiko's escalation, sources, outbox and remediation.

The keys ``route``, ``receivers``, ``inhibit_rules`` and ``time_intervals`` are
Alertmanager's; an Alertmanager file can be named with ``alertmanager_config`` instead
(its ``global`` and ``templates`` are ignored, with a warning, and receiver kinds keiko
does not map must become ``apprise_configs``: see docs/alerting.md).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from alerting.notify.config import NotifyOptions, ReceiverConfig
from alerting.outbox.config import OutboxConfig
from alerting.remediation.config import RemediationConfig
from alerting.routing.config import InhibitRuleConfig, RouteConfig, TimeIntervalConfig
from alerting.sources import SourcesConfig
from keiko.store.config import Strict
from keiko.stream.config import BUCKET_DESCRIPTION, CheckpointConfig
from keiko.units import ByteSize, Duration

DEFAULT_RECEIVER = "default"


class EscalationLevelConfig(Strict):
    """Receivers added while a group's firing alerts stay unacknowledged."""

    after: Duration = Field(description="How long after the group's first notification (e.g. 15m).")
    receivers: list[str] = Field(min_length=1, description="Receiver names to add.")


class EscalationPolicyConfig(Strict):
    """A named escalation policy; routes name it with `escalation: NAME`."""

    name: str = Field(description="The policy's name.")
    levels: list[EscalationLevelConfig] = Field(
        min_length=1, description="Levels in order of `after`."
    )


class EngineCheckpointConfig(CheckpointConfig):
    """Where alert state (alerts, groups, notification log) is saved."""

    bucket: str = Field(default="alerting", description=BUCKET_DESCRIPTION)
    interval: Duration = Field(
        default=10.0,
        gt=0,
        description="Save the alert state this often (a crash replays at most this much "
        "of the alerts stream; replayed notifications are not sent twice).",
    )


class AlertingConfig(Strict):
    """Alert intake (Alertmanager API v2 and keiko's events), routing, notification,
    escalation and remediation."""

    enabled: bool = Field(default=True, description="Run alerting in this process.")
    alertmanager_config: Path | None = Field(
        default=None,
        description="An Alertmanager configuration file to take route, receivers, "
        "inhibit_rules and time_intervals from (instead of giving them here).",
    )
    route: RouteConfig | None = Field(
        default=None,
        description="The routing tree (Alertmanager's `route`). Default: everything to "
        "receiver `default`, grouped by incident and alertname.",
    )
    receivers: list[ReceiverConfig] = Field(
        default_factory=list,
        description="Receivers (Alertmanager's, notified through apprise or as webhook, "
        "Slack, PagerDuty or e-mail). A receiver with no configs records notifications "
        "as events only.",
    )
    inhibit_rules: list[InhibitRuleConfig] = Field(
        default_factory=list, description="Alertmanager inhibit rules."
    )
    time_intervals: list[TimeIntervalConfig] = Field(
        default_factory=list, description="Named time intervals for muting routes."
    )
    escalation_policies: list[EscalationPolicyConfig] = Field(
        default_factory=list, description="Escalation policies routes may name."
    )
    sources: SourcesConfig = Field(default_factory=SourcesConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    remediation: RemediationConfig = Field(default_factory=RemediationConfig)
    resolve_timeout: Duration = Field(
        default=300.0,
        gt=0,
        description="An alert sent without endsAt resolves this long after it was last "
        "received (Alertmanager's resolve_timeout).",
    )
    retention: Duration = Field(
        default=7200.0,
        gt=0,
        description="Resolved alerts and expired silences stay visible in the API this long "
        "(their history stays in the events stream).",
    )
    max_alerts: int = Field(
        default=200_000, gt=0, description="Alerts held at once; more are refused (counted)."
    )
    max_alerts_per_notification: int = Field(
        default=100,
        ge=0,
        description="Alerts listed in one notification (0: all); the rest are counted as "
        "truncatedAlerts.",
    )
    max_request_bytes: ByteSize = Field(
        default=4 * 1024 * 1024,
        gt=0,
        description="Largest POST /api/v2/alerts body accepted (413 above).",
    )
    notify: NotifyOptions = Field(default_factory=NotifyOptions)
    leader_lease: Duration = Field(
        default=15.0,
        ge=3,
        description="Replicas sharing one store (NATS JetStream) elect a leader with a lease "
        "this long: only the leader routes, notifies and remediates (no notification twice); "
        "every replica takes alerts, acknowledgements and silences; a standby takes over "
        "within this time when the leader dies.",
    )
    fetch_batch: int = Field(default=200, gt=0, description="Alerts records per fetch.")
    checkpoint: EngineCheckpointConfig = Field(default_factory=EngineCheckpointConfig)
    silences_bucket: str = Field(
        default="silences", description="Key-value bucket of the silences."
    )

    @model_validator(mode="after")
    def _one_source_of_routing(self) -> AlertingConfig:
        inline = self.route is not None or self.receivers or self.inhibit_rules
        if self.alertmanager_config is not None and (inline or self.time_intervals):
            raise ValueError(
                "alerting.router: give either alertmanager_config or route/receivers/"
                "inhibit_rules/time_intervals, not both"
            )
        return self
