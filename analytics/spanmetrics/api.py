"""``GET /api/v1/servicegraph``: the service graph in the shape of Grafana's node graph
panel (``nodes`` with ``id``, ``title``, ``mainStat``, ``secondaryStat``, ``arc__*``;
``edges`` with ``id``, ``source``, ``target``, ``mainStat``, ``secondaryStat``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from analytics.spanmetrics.edges import EdgeView

PATH = "/api/v1/servicegraph"


def node_graph(edges: list[EdgeView]) -> dict[str, Any]:
    """Nodes and edges; rates are per second over the rate window, errors in percent.

    A node's figures are the requests it served (edges into it); a node that serves
    none (an entry point such as "user") shows the requests it sent."""
    served: dict[str, list[float]] = {}
    sent: dict[str, list[float]] = {}
    out_edges = []
    for e in edges:
        for table, node in ((served, e.server), (sent, e.client)):
            acc = table.setdefault(node, [0.0, 0.0])
            acc[0] += e.rate
            acc[1] += e.error_rate
        suffix = f"/{e.connection_type}" if e.connection_type else ""
        out_edges.append(
            {
                "id": f"{e.client}->{e.server}{suffix}",
                "source": e.client,
                "target": e.server,
                "mainStat": round(e.rate, 6),
                "secondaryStat": _percent(e.error_rate, e.rate),
                "connection_type": e.connection_type,
                "seen_by": list(e.seen_by),
                "requests": e.requests,
                "failed": e.failed,
            }
        )
    nodes = []
    for node in sorted(served.keys() | sent.keys()):
        rate, errors = served.get(node) or sent[node]
        failed = errors / rate if rate > 0 else 0.0
        nodes.append(
            {
                "id": node,
                "title": node,
                "mainStat": round(rate, 6),
                "secondaryStat": _percent(errors, rate),
                "arc__failed": round(failed, 6),
                "arc__success": round(1.0 - failed, 6),
            }
        )
    return {"nodes": nodes, "edges": out_edges}


def _percent(errors: float, rate: float) -> float:
    return round(100.0 * errors / rate, 4) if rate > 0 else 0.0


def route(edges: Callable[[], list[EdgeView]]) -> Route:
    """The route over the current edges (read when a request comes)."""

    async def servicegraph(request: Request) -> JSONResponse:
        return JSONResponse(node_graph(edges()))

    return Route(PATH, servicegraph, methods=["GET"], name="servicegraph")
