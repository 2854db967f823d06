"""SLOs and error budgets: keiko's burn-rate alerting (alerting.slo) and threshold rules."""

from __future__ import annotations

from dashboards.panels.promql import WINDOW, rate
from dashboards.spec import Board, Panel, Query, Row, Variable

SERVICE = 'service=~"$service"'

VARIABLES = (
    Variable(
        "service",
        "Service",
        "label_values(keiko_slo_sli, service)",
        "The `service` label of keiko_slo_sli: services with an objective in "
        "alerting.slo.objectives.",
    ),
)

BUDGETS = Row(
    "Error budgets",
    (
        Panel(
            "stat",
            "Error budget remaining",
            "keiko_slo_error_budget_remaining: share of the budget left over the objective's "
            "period (1 untouched, 0 spent, below 0 overspent).",
            (Query(f"keiko_slo_error_budget_remaining{{{SERVICE}}}", "{{objective}}"),),
            unit="percentunit",
            width=8,
        ),
        Panel(
            "timeseries",
            "Error budget remaining over time",
            "keiko_slo_error_budget_remaining per objective.",
            (Query(f"keiko_slo_error_budget_remaining{{{SERVICE}}}", "{{objective}}"),),
            unit="percentunit",
            width=16,
        ),
        Panel(
            "timeseries",
            "Burn rate by window",
            "keiko_slo_burn_rate: error ratio over the window / error budget. The SRE "
            "workbook's pages fire at 14.4x (1 h and 5 min) and 6x (6 h and 30 min), tickets "
            "at 3x and 1x.",
            (
                Query(
                    f"keiko_slo_burn_rate{{{SERVICE}}}",
                    "{{objective}} {{window}}",
                ),
            ),
            width=12,
            thresholds=(1, 6, 14.4),
        ),
        Panel(
            "timeseries",
            "SLI by window",
            "keiko_slo_sli: share of good calls over each window.",
            (Query(f"keiko_slo_sli{{{SERVICE}}}", "{{objective}} {{window}}"),),
            unit="percentunit",
            width=12,
        ),
    ),
)

ALERTS = Row(
    "Alerts and evaluation",
    (
        Panel(
            "timeseries",
            "Burn-rate alerts firing",
            "keiko_slo_alerts_firing by objective and severity (page, ticket).",
            (
                Query(
                    "sum by (objective, severity) (keiko_slo_alerts_firing)",
                    "{{objective}} {{severity}}",
                ),
            ),
            width=8,
        ),
        Panel(
            "timeseries",
            "Calls counted per window",
            "keiko_slo_window_calls: under alerting.slo.min_events a window gives no verdict.",
            (Query(f"keiko_slo_window_calls{{{SERVICE}}}", "{{objective}} {{window}}"),),
            width=8,
        ),
        Panel(
            "timeseries",
            "Threshold rules firing / pending",
            "keiko_rule_firing and keiko_rule_pending: series of each alerting.slo.rules rule "
            "firing now, or whose condition holds but not yet for its for_duration.",
            (
                Query(
                    "sum by (rule) (keiko_rule_firing)",
                    "firing {{rule}}",
                    may_be_empty="no threshold rule is configured",
                ),
                Query(
                    "sum by (rule) (keiko_rule_pending)",
                    "pending {{rule}}",
                    may_be_empty="no threshold rule is configured",
                ),
            ),
            width=8,
        ),
        Panel(
            "timeseries",
            "Evaluation: data delay and time taken",
            "time() - keiko_slo_data_time_seconds (alerts are judged at the newest point's "
            "time) and keiko_slo_evaluation_duration_seconds (the last evaluation).",
            (
                Query("time() - keiko_slo_data_time_seconds", "data delay"),
                Query("keiko_slo_evaluation_duration_seconds", "evaluation"),
            ),
            unit="s",
            width=12,
        ),
        Panel(
            "timeseries",
            "Points read and dropped",
            "keiko_slo_points_total and keiko_slo_dropped_points_total by reason (future, "
            "no_time, max_counters, late) per second.",
            (
                Query(rate("keiko_slo_points_total"), "read"),
                Query(
                    f"sum by (reason) (rate(keiko_slo_dropped_points_total[{WINDOW}]))",
                    "dropped {{reason}}",
                ),
            ),
            unit="ops",
            width=12,
        ),
    ),
)

BOARD = Board(
    uid="keiko-slo",
    title="keiko / SLOs and error budgets",
    description="Objectives from alerting.slo.objectives (computed from keiko's span metrics): "
    "error budgets, multiwindow burn rates, SLIs, burn-rate alerts, threshold rules "
    "(keiko_slo_*, keiko_rule_*). Variable: service = `service` of keiko_slo_sli.",
    rows=(BUDGETS, ALERTS),
    variables=VARIABLES,
    tags=("keiko", "slo"),
)
