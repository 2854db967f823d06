"""keiko's own health: ingest, refusals, drops, the store, stage lag, state held in memory."""

from __future__ import annotations

from dashboards.panels.promql import WINDOW, quantile, rate, stage
from dashboards.spec import Board, Panel, Query, Row, Variable

INSTANCE = 'instance=~"$node"'
# The stream stages (keiko/stream/worker.py WorkerExport): keiko_<stage>_lag_records ...
STAGES = ("spanmetrics", "anomaly", "incidents", "slo", "alerting", "scaling")

VARIABLES = (
    Variable(
        "node",
        "Node",
        "label_values(keiko_store_bytes, instance)",
        "The `instance` label of keiko_store_bytes: every keiko process (node agent or "
        "analysis Deployment) is one scrape target.",
    ),
)


def per_stage(suffix: str) -> str:
    """``keiko_<stage>_<suffix>`` of every stage, each with a ``stage`` label, or-ed."""
    return " or ".join(stage(f"keiko_{s}_{suffix}{{{INSTANCE}}}", s) for s in STAGES)


def per_stage_rate(suffix: str) -> str:
    """The per-second rate of the counter ``keiko_<stage>_<suffix>`` of every stage."""
    return " or ".join(
        stage(f"sum by (instance) (rate(keiko_{s}_{suffix}{{{INSTANCE}}}[{WINDOW}]))", s)
        for s in STAGES
    )


INGEST = Row(
    "Ingest",
    (
        Panel(
            "timeseries",
            "Items received and accepted",
            "keiko_received_items_total (arrived) and keiko_accepted_items_total (durably "
            "stored, then acknowledged) per second, by signal and transport.",
            (
                Query(
                    rate("keiko_received_items_total", INSTANCE, "signal, transport"),
                    "received {{signal}} {{transport}}",
                ),
                Query(
                    rate("keiko_accepted_items_total", INSTANCE, "signal, transport"),
                    "accepted {{signal}} {{transport}}",
                ),
            ),
            unit="ops",
            width=12,
        ),
        Panel(
            "timeseries",
            "Items refused and dropped",
            "keiko_refused_items_total (answered with an error: invalid, too_large, "
            "backpressure, unauthenticated ...) and keiko_dropped_items_total (lost after "
            "acceptance) per second, by reason.",
            (
                Query(
                    rate("keiko_refused_items_total", INSTANCE, "signal, reason"),
                    "refused {{signal}} {{reason}}",
                    may_be_empty="nothing was refused",
                ),
                Query(
                    rate("keiko_dropped_items_total", INSTANCE, "signal, reason"),
                    "dropped {{signal}} {{reason}}",
                    may_be_empty="nothing was dropped",
                ),
            ),
            unit="ops",
            width=12,
            thresholds=(1,),
        ),
        Panel(
            "timeseries",
            "Requests by outcome",
            "keiko_requests_total per second by transport and outcome.",
            (
                Query(
                    rate("keiko_requests_total", INSTANCE, "transport, outcome"),
                    "{{transport}} {{outcome}}",
                ),
            ),
            unit="reqps",
            width=8,
        ),
        Panel(
            "timeseries",
            "Request time p99",
            "keiko_request_duration_seconds: time to answer a request (the store's durable "
            "append included), by transport.",
            (
                Query(
                    quantile(0.99, "keiko_request_duration_seconds", INSTANCE, "transport"),
                    "{{transport}}",
                ),
            ),
            unit="s",
            width=8,
        ),
        Panel(
            "timeseries",
            "Request bytes",
            "keiko_request_bytes_total per second as received, by transport.",
            (Query(rate("keiko_request_bytes_total", INSTANCE, "transport"), "{{transport}}"),),
            unit="Bps",
            width=8,
        ),
    ),
)

STORE = Row(
    "Store and stages",
    (
        Panel(
            "timeseries",
            "Consumer lag by stream and group",
            "keiko_store_consumer_lag_records: records a consumer group has not committed.",
            (Query(f"keiko_store_consumer_lag_records{{{INSTANCE}}}", "{{stream}} {{group}}"),),
            width=8,
        ),
        Panel(
            "timeseries",
            "Stage lag",
            "keiko_<stage>_lag_records: records of the stage's input stream not processed yet.",
            (Query(per_stage("lag_records"), "{{stage}}"),),
            width=8,
        ),
        Panel(
            "timeseries",
            "Store size",
            "keiko_store_bytes per stream and keiko_store_disk_bytes (all of the store on disk).",
            (
                Query(f"keiko_store_bytes{{{INSTANCE}}}", "{{stream}}"),
                Query(f"keiko_store_disk_bytes{{{INSTANCE}}}", "on disk"),
            ),
            unit="bytes",
            width=8,
        ),
        Panel(
            "timeseries",
            "Records expired unread, events lost",
            "keiko_store_expired_unconsumed_records (retention removed records a group had "
            "not read) and keiko_<stage>_events_dropped_total (events the store refused).",
            (
                Query(
                    f"keiko_store_expired_unconsumed_records{{{INSTANCE}}}",
                    "expired unread {{stream}}",
                ),
                Query(per_stage_rate("events_dropped_total"), "events lost/s {{stage}}"),
            ),
            width=8,
            thresholds=(1,),
        ),
        Panel(
            "timeseries",
            "Checkpoint age by stage",
            "time() - keiko_<stage>_checkpoint_timestamp_seconds: how much a restart would replay.",
            (Query(f"time() - ({per_stage('checkpoint_timestamp_seconds')})", "{{stage}}"),),
            unit="s",
            width=8,
        ),
        Panel(
            "timeseries",
            "Store figures age",
            "time() - keiko_store_stats_timestamp_seconds: store gauges come from a snapshot "
            "refreshed every 2 s; a growing age means the refresh is stuck.",
            (Query(f"time() - keiko_store_stats_timestamp_seconds{{{INSTANCE}}}", "{{instance}}"),),
            unit="s",
            width=8,
        ),
    ),
)

MEMORY = Row(
    "Memory",
    (
        Panel(
            "timeseries",
            "Resident memory and CPU",
            "process_resident_memory_bytes and rate(process_cpu_seconds_total[1m]) of each "
            "keiko process (prometheus_client's process collector, from /proc).",
            (Query(f"process_resident_memory_bytes{{{INSTANCE}}}", "{{instance}} RSS"),),
            unit="bytes",
            width=12,
        ),
        Panel(
            "timeseries",
            "CPU",
            "Cores used by each keiko process: rate(process_cpu_seconds_total[1m]).",
            (Query(f"rate(process_cpu_seconds_total{{{INSTANCE}}}[1m])", "{{instance}} cores"),),
            width=12,
        ),
        Panel(
            "timeseries",
            "State held in memory (bounded)",
            "keiko's in-memory state, each bounded in config: keiko_anomaly_series, "
            "keiko_spanmetrics_series, keiko_spanmetrics_graph_edges and "
            "keiko_spanmetrics_graph_pending_spans.",
            (
                Query(f"keiko_anomaly_series{{{INSTANCE}}}", "anomaly series"),
                Query(f"keiko_spanmetrics_series{{{INSTANCE}}}", "span metric series"),
                Query(f"keiko_spanmetrics_graph_edges{{{INSTANCE}}}", "graph edges"),
                Query(
                    f"keiko_spanmetrics_graph_pending_spans{{{INSTANCE}}}",
                    "spans awaiting their pair",
                ),
            ),
            width=12,
        ),
        Panel(
            "timeseries",
            "Checkpoint size by stage",
            "keiko_<stage>_checkpoint_bytes: the stored (compressed) size of each stage's "
            "state, which follows what it holds in memory.",
            (Query(per_stage("checkpoint_bytes"), "{{stage}}"),),
            unit="bytes",
            width=12,
        ),
    ),
)

BOARD = Board(
    uid="keiko-health",
    title="keiko / Self-telemetry",
    description="keiko's own health: ingest (keiko_received/accepted/refused/dropped_items), "
    "requests, the store (keiko_store_*), stage lag and checkpoints, memory and CPU. "
    "Variable: node = `instance` of keiko_store_bytes.",
    rows=(INGEST, STORE, MEMORY),
    variables=VARIABLES,
    tags=("keiko", "self"),
)
