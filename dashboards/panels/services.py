"""Services: RED per service and operation from keiko's span metrics, and the service graph."""

from __future__ import annotations

from dashboards.panels.promql import WINDOW, quantile, rate
from dashboards.spec import Board, Panel, Query, Row, Variable

SERVER = 'service=~"$service", span_kind="SPAN_KIND_SERVER"'
ERRORS = f'{SERVER}, status_code="STATUS_CODE_ERROR"'
CALLS = "traces_span_metrics_calls_total"
DURATION = "traces_span_metrics_duration_seconds"
EDGES = "traces_service_graph_request_total"
FAILED = "traces_service_graph_request_failed_total"


def error_ratio(by: str) -> str:
    """Errored / all server calls; 0 (not absent) where nothing failed."""
    calls = rate(CALLS, SERVER, by)
    return f"({rate(CALLS, ERRORS, by)} or {calls} * 0) / {calls}"


def edge_rate(metric: str, by: str) -> str:
    """Rate of service-graph edges that touch the selected services (either side)."""
    return (
        f'sum by ({by}) (rate({metric}{{client=~"$service"}}[{WINDOW}]) '
        f'or rate({metric}{{server=~"$service"}}[{WINDOW}]))'
    )


VARIABLES = (
    Variable(
        "service",
        "Service",
        f"label_values({CALLS}, service)",
        f"The `service` label of {CALLS}: the resource `service.name` of the spans.",
    ),
)

# The node graph panel wants one frame with id (+ mainstat) per node and one with id, source
# and target per edge: built with label_replace/label_join from the Tempo-style edge counter.
NODES_EXPR = (
    f'sum by (id, title) (label_replace(label_replace(rate({EDGES}[{WINDOW}]), "id", "$1", '
    f'"server", "(.*)"), "title", "$1", "server", "(.*)")) or sum by (id, title) '
    f'(label_replace(label_replace(rate({EDGES}[{WINDOW}]), "id", "$1", "client", "(.*)"), '
    f'"title", "$1", "client", "(.*)")) * 0'
)
EDGES_EXPR = (
    f"sum by (id, source, target) (label_replace(label_replace(label_join(rate({EDGES}"
    f'[{WINDOW}]), "id", "->", "client", "server"), "source", "$1", "client", "(.*)"), '
    f'"target", "$1", "server", "(.*)"))'
)

RED = Row(
    "RED per service (server spans)",
    (
        Panel(
            "timeseries",
            "Requests per second",
            f"Server spans ended per second ({CALLS}, span_kind SERVER), by service.",
            (Query(rate(CALLS, SERVER, "service"), "{{service}}"),),
            unit="reqps",
            width=8,
        ),
        Panel(
            "timeseries",
            "Error ratio",
            f"Share of server spans with status ERROR ({CALLS}), by service.",
            (Query(error_ratio("service"), "{{service}}"),),
            unit="percentunit",
            width=8,
        ),
        Panel(
            "timeseries",
            "Duration p50 / p99",
            f"Server span duration quantiles from the {DURATION} histogram, by service.",
            (
                Query(quantile(0.5, DURATION, SERVER, "service"), "p50 {{service}}"),
                Query(quantile(0.99, DURATION, SERVER, "service"), "p99 {{service}}"),
            ),
            unit="s",
            width=8,
        ),
        Panel(
            "table",
            "Operations: rate, error ratio, p99",
            "Per service and operation (span name) over the dashboard's rate window: requests "
            f"per second, error ratio and p99 duration of server spans ({CALLS}, {DURATION}).",
            (
                Query(rate(CALLS, SERVER, "service, span_name"), instant=True, table=True),
                Query(error_ratio("service, span_name"), instant=True, table=True),
                Query(
                    quantile(0.99, DURATION, SERVER, "service, span_name"),
                    instant=True,
                    table=True,
                ),
            ),
            width=24,
            transformations=(
                ("merge", {}),
                (
                    "organize",
                    {
                        "excludeByName": {"Time": True},
                        "renameByName": {
                            "span_name": "operation",
                            "Value #A": "req/s",
                            "Value #B": "error ratio",
                            "Value #C": "p99 (s)",
                        },
                    },
                ),
            ),
        ),
    ),
)

GRAPH = Row(
    "Service graph",
    (
        Panel(
            "nodegraph",
            "Service graph",
            f"Calls between services from keiko's Tempo-style {EDGES} (node: requests/s it "
            "served; edge: client → server requests/s). keiko also serves this graph as "
            "node-graph JSON at GET /api/v1/servicegraph (Infinity datasource).",
            (
                Query(NODES_EXPR, instant=True, table=True, ref="nodes"),
                Query(EDGES_EXPR, instant=True, table=True, ref="edges"),
            ),
            width=24,
            height=12,
            transformations=(
                (
                    "organize",
                    {
                        "excludeByName": {"Time": True},
                        "renameByName": {"Value #nodes": "mainstat", "Value #edges": "mainstat"},
                    },
                ),
            ),
        ),
        Panel(
            "timeseries",
            "Edge request rate",
            f"{EDGES} per second, client → server (either side in $service).",
            (Query(edge_rate(EDGES, "client, server"), "{{client}} → {{server}}"),),
            unit="reqps",
            width=8,
        ),
        Panel(
            "timeseries",
            "Edge failures",
            f"{FAILED} per second (either side errored), client → server.",
            (Query(edge_rate(FAILED, "client, server"), "{{client}} → {{server}}"),),
            unit="reqps",
            width=8,
        ),
        Panel(
            "timeseries",
            "Edge latency p99 (server side)",
            "traces_service_graph_request_server_seconds: the server span's duration per edge.",
            (
                Query(
                    quantile(
                        0.99,
                        "traces_service_graph_request_server_seconds",
                        'server=~"$service"',
                        "client, server",
                    ),
                    "{{client}} → {{server}}",
                ),
            ),
            unit="s",
            width=8,
        ),
        Panel(
            "timeseries",
            "Unpaired and dropped spans",
            "traces_service_graph_unpaired_spans_total (client or server spans whose pair never "
            "came) and traces_service_graph_dropped_spans_total (not kept waiting: max_pending).",
            (
                Query(
                    "sum(rate(traces_service_graph_unpaired_spans_total[$__rate_interval]))",
                    "unpaired",
                    may_be_empty="every client span met its server span",
                ),
                Query(
                    "sum(rate(traces_service_graph_dropped_spans_total[$__rate_interval]))",
                    "dropped",
                ),
            ),
            unit="ops",
            width=24,
            height=6,
        ),
    ),
)

BOARD = Board(
    uid="keiko-services",
    title="keiko / Services",
    description="Rate, errors and duration per service and operation from the span metrics "
    "keiko derives from traces (traces_span_metrics_*), and the service graph "
    "(traces_service_graph_*). Variable: service = `service` of traces_span_metrics_calls_total.",
    rows=(RED, GRAPH),
    variables=VARIABLES,
    tags=("keiko", "traces"),
)
