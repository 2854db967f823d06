"""Anomalies and incidents: detector scores, incidents and their ranked root causes."""

from __future__ import annotations

from dashboards.panels.promql import WINDOW, increase, rate
from dashboards.spec import Board, Link, Panel, Query, Row, TextVariable, Variable

SERVICE = 'service=~"$service"'

VARIABLES = (
    Variable(
        "service",
        "Service",
        "label_values(keiko_anomaly_score, service)",
        "The `service` label of keiko_anomaly_score: services with a series in or near an "
        "excursion.",
    ),
    TextVariable(
        "keiko_api",
        "keiko API",
        "http://keiko:8470",
        "keiko's HTTP API, for the links to incidents and their example traces.",
    ),
)

INCIDENT_LINK = Link(
    "Incident, evidence and example traces (keiko API)",
    "${keiko_api}/api/v1/incidents?status=open",
)

INCIDENTS = Row(
    "Incidents",
    (
        Panel(
            "stat",
            "Open incidents",
            "keiko_incidents_open: incidents the analytics.incidents stage holds open now.",
            (Query("keiko_incidents_open", "open"),),
            width=6,
            thresholds=(1,),
            links=(INCIDENT_LINK,),
        ),
        Panel(
            "timeseries",
            "Incidents opened, analysed, closed",
            "keiko_incidents_total by event, per rate window (each analysis version counts).",
            (Query(increase("keiko_incidents_total", "", "event"), "{{event}}"),),
            width=9,
        ),
        Panel(
            "timeseries",
            "Analysis time and failures",
            "keiko_incidents_analysis_duration_seconds (the last analysis) and "
            "keiko_incidents_analysis_failures_total.",
            (
                Query("keiko_incidents_analysis_duration_seconds", "last analysis (s)"),
                Query(f"increase(keiko_incidents_analysis_failures_total[{WINDOW}])", "failures"),
            ),
            width=9,
        ),
        Panel(
            "table",
            "Root causes of open incidents (ranked)",
            "keiko_incident_root_cause_score by incident and rank (1 = most likely): the "
            "candidate service and its score. Each incident's evidence (anomalies, expected "
            "ranges, critical paths) and example trace ids (exemplars) are in keiko's API: "
            "follow the link on a row.",
            (
                Query(
                    f"keiko_incident_root_cause_score{{{SERVICE}}}",
                    instant=True,
                    table=True,
                ),
            ),
            width=12,
            height=10,
            links=(INCIDENT_LINK,),
            transformations=(
                (
                    "organize",
                    {
                        "excludeByName": {
                            "Time": True,
                            "__name__": True,
                            "instance": True,
                            "job": True,
                        },
                        "indexByName": {"incident": 0, "rank": 1, "service": 2, "Value": 3},
                        "renameByName": {"Value": "score", "service": "root cause"},
                    },
                ),
                ("sortBy", {"sort": [{"field": "rank"}]}),
            ),
        ),
        Panel(
            "timeseries",
            "Root-cause scores over time",
            "keiko_incident_root_cause_score per incident and candidate service.",
            (
                Query(
                    f"keiko_incident_root_cause_score{{{SERVICE}}}",
                    "#{{rank}} {{service}} ({{incident}})",
                ),
            ),
            width=12,
            height=10,
            links=(INCIDENT_LINK,),
        ),
    ),
)

ANOMALIES = Row(
    "Anomaly detection",
    (
        Panel(
            "timeseries",
            "Anomaly scores (top 10 series)",
            "keiko_anomaly_score: the latest anomaly probability of series in or near an "
            "excursion (a bounded set), by service and metric.",
            (
                Query(
                    f"topk(10, max by (service, metric) (keiko_anomaly_score{{{SERVICE}}}))",
                    "{{service}} {{metric}}",
                ),
            ),
            unit="percentunit",
            width=12,
            thresholds=(0.99,),
        ),
        Panel(
            "timeseries",
            "Points scored and anomalous",
            "keiko_anomaly_points_scored_total and keiko_anomaly_anomalous_points_total "
            "(at or above the threshold) per second.",
            (
                Query(rate("keiko_anomaly_points_scored_total"), "scored"),
                Query(rate("keiko_anomaly_anomalous_points_total"), "anomalous"),
            ),
            unit="ops",
            width=12,
        ),
        Panel(
            "timeseries",
            "Series held, refused, evicted",
            "keiko_anomaly_series (held now), keiko_anomaly_series_refused_total (max_series "
            "hit) and keiko_anomaly_series_evicted_total (idle) per second.",
            (
                Query("keiko_anomaly_series", "held"),
                Query(rate("keiko_anomaly_series_refused_total"), "refused/s"),
                Query(rate("keiko_anomaly_series_evicted_total"), "evicted/s"),
            ),
            width=12,
        ),
        Panel(
            "timeseries",
            "Points not scored",
            "keiko_anomaly_skipped_points_total by reason (excluded, series_cap, first_point ...).",
            (Query(rate("keiko_anomaly_skipped_points_total", "", "reason"), "{{reason}}"),),
            unit="ops",
            width=12,
        ),
    ),
)

BOARD = Board(
    uid="keiko-incidents",
    title="keiko / Anomalies and incidents",
    description="What keiko's detectors flag (keiko_anomaly_*) and the incidents it opens from "
    "them with ranked root causes (keiko_incident*). Variable: service = `service` of "
    "keiko_anomaly_score; keiko_api = keiko's API URL for the evidence and example traces.",
    rows=(INCIDENTS, ANOMALIES),
    variables=VARIABLES,
    tags=("keiko", "aiops"),
)
