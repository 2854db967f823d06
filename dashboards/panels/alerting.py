"""Alerting: alerts received, grouped, silenced; notifications through the outbox;
remediation outcomes."""

from __future__ import annotations

from dashboards.panels.promql import increase, quantile
from dashboards.spec import Board, Panel, Query, Row

NO_REMEDIATION = "no route has a remediation action, or none was triggered"

ALERTS = Row(
    "Alerts",
    (
        Panel(
            "timeseries",
            "Alerts by state",
            "keiko_alerts (firing alerts: active or suppressed by silence/inhibition) and "
            "keiko_alerts_acknowledged.",
            (
                Query("sum by (state) (keiko_alerts)", "{{state}}"),
                Query("keiko_alerts_acknowledged", "acknowledged"),
            ),
            width=8,
        ),
        Panel(
            "timeseries",
            "Alert updates received",
            "keiko_alerts_received_total by event (received, firing, resolved, acknowledged, "
            "refused, invalid_requests) per rate window.",
            (Query(increase("keiko_alerts_received_total", "", "event"), "{{event}}"),),
            width=8,
        ),
        Panel(
            "timeseries",
            "Groups and silences",
            "keiko_alert_groups (aggregation groups held) and keiko_silences by state.",
            (
                Query("keiko_alert_groups", "groups"),
                Query("sum by (state) (keiko_silences)", "silences {{state}}"),
            ),
            width=8,
        ),
    ),
)

NOTIFICATIONS = Row(
    "Notifications (outbox)",
    (
        Panel(
            "timeseries",
            "Notifications queued by receiver",
            "keiko_notifications_queued_total: notifications put in the outbox, per rate window.",
            (Query(increase("keiko_notifications_queued_total", "", "receiver"), "{{receiver}}"),),
            width=8,
        ),
        Panel(
            "timeseries",
            "Deliveries by outcome",
            "keiko_outbox_deliveries_total by target and outcome: delivered, failed (permanent "
            "error), gave_up (max_age passed), deduplicated, retried.",
            (
                Query(
                    increase("keiko_outbox_deliveries_total", "", "target, kind, outcome"),
                    "{{target}} {{kind}} {{outcome}}",
                ),
            ),
            width=8,
        ),
        Panel(
            "timeseries",
            "Failed deliveries",
            "keiko_outbox_deliveries_total with outcome failed or gave_up: notifications that "
            "did not reach their receiver.",
            (
                Query(
                    increase(
                        "keiko_outbox_deliveries_total", 'outcome=~"failed|gave_up"', "target"
                    ),
                    "{{target}}",
                    may_be_empty="no delivery failed",
                ),
            ),
            width=8,
            thresholds=(1,),
        ),
        Panel(
            "timeseries",
            "Outbox backlog",
            "keiko_outbox_pending (records not committed by the target's group), "
            "keiko_outbox_unsent (decided, not yet in the outbox stream) and "
            "keiko_outbox_oldest_pending_age_seconds.",
            (
                Query("keiko_outbox_pending", "pending {{target}}"),
                Query("keiko_outbox_unsent", "unsent"),
                Query("keiko_outbox_oldest_pending_age_seconds", "oldest age (s) {{target}}"),
            ),
            width=8,
        ),
        Panel(
            "timeseries",
            "Delivery time p99 and circuit state",
            "keiko_outbox_delivery_duration_seconds (one attempt) and keiko_outbox_circuit_state "
            "(0 closed, 1 half-open, 2 open) per target.",
            (
                Query(
                    quantile(0.99, "keiko_outbox_delivery_duration_seconds", "", "target"),
                    "p99 {{target}}",
                ),
                Query("keiko_outbox_circuit_state", "circuit {{target}}"),
            ),
            width=8,
        ),
        Panel(
            "timeseries",
            "Outbox records skipped",
            "keiko_outbox_skipped_records_total by reason (unknown_target, undecodable, kind).",
            (
                Query(
                    increase("keiko_outbox_skipped_records_total", "", "reason"),
                    "{{reason}}",
                    may_be_empty="no outbox record was skipped",
                ),
            ),
            width=8,
        ),
    ),
)

REMEDIATION = Row(
    "Remediation",
    (
        Panel(
            "timeseries",
            "Remediation requests and actions",
            "keiko_remediations_requested_total (put in the outbox) and "
            "keiko_remediation_actions_total by action and status (dry_run, ran, failed, "
            "rate-limited ...): the audit trail's counts.",
            (
                Query(
                    "sum(increase(keiko_remediations_requested_total[$__rate_interval]))",
                    "requested",
                    may_be_empty=NO_REMEDIATION,
                ),
                Query(
                    increase("keiko_remediation_actions_total", "", "action, status"),
                    "{{action}} {{status}}",
                    may_be_empty=NO_REMEDIATION,
                ),
            ),
            width=12,
        ),
        Panel(
            "timeseries",
            "Remediation outcomes and approvals",
            "keiko_remediation_verified_total by action and resolved (true: the alerts "
            "resolved after verify_after) and keiko_remediation_pending_approvals.",
            (
                Query(
                    increase("keiko_remediation_verified_total", "", "action, resolved"),
                    "{{action}} resolved={{resolved}}",
                    may_be_empty=NO_REMEDIATION + " (or verify_after has not passed)",
                ),
                Query("keiko_remediation_pending_approvals", "waiting for approval"),
            ),
            width=12,
        ),
    ),
)

BOARD = Board(
    uid="keiko-alerting",
    title="keiko / Alerting",
    description="keiko's Alertmanager-compatible router: alerts received, grouped and "
    "silenced (keiko_alerts*, keiko_silences), notifications through the persistent outbox "
    "(keiko_notifications_*, keiko_outbox_*), remediation outcomes (keiko_remediation*).",
    rows=(ALERTS, NOTIFICATIONS, REMEDIATION),
    tags=("keiko", "alerting"),
)
