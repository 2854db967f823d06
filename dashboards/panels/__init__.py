"""The dashboards, one module each; ``BOARDS`` is what ``dashboards.build`` writes."""

from __future__ import annotations

from dashboards.panels import alerting, health, incidents, nodes, scaling, services, slo
from dashboards.spec import Board

BOARDS: tuple[Board, ...] = (
    services.BOARD,
    incidents.BOARD,
    slo.BOARD,
    scaling.BOARD,
    alerting.BOARD,
    nodes.BOARD,
    health.BOARD,
)
