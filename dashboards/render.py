"""Turn a ``spec.Board`` into Grafana dashboard JSON with grafana-foundation-sdk."""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import nodegraph, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_m
from grafana_foundation_sdk.models import dashboard as dash_m
from grafana_foundation_sdk.models import prometheus as prom_m

from dashboards.spec import Board, Panel, Query, TextVariable, Variable

# The provisioned Prometheus datasource (dashboards/provisioning/datasources/keiko.yaml).
DATASOURCE_UID = "keiko-prometheus"
DATASOURCE = dash_m.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
REF_IDS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

PanelBuilder = timeseries.Panel | stat.Panel | table.Panel | nodegraph.Panel


def target(query: Query, index: int) -> prometheus.Dataquery:
    """The Prometheus target of one query (refId from ``query.ref`` or its position)."""
    t = (
        prometheus.Dataquery()
        .expr(query.expr)
        .ref_id(query.ref or REF_IDS[index])
        .datasource(DATASOURCE)
    )
    if query.legend:
        t = t.legend_format(query.legend)
    if query.table:
        t = t.format(prom_m.PromQueryFormat.TABLE)
    return t.instant() if query.instant else t.range()


def _panel_builder(panel: Panel) -> PanelBuilder:
    if panel.kind == "timeseries":
        ts = timeseries.Panel().fill_opacity(10).line_width(1)
        if panel.stack:
            ts = ts.stacking(common_b.StackingConfig().mode(common_m.StackingMode.NORMAL))
        return ts
    if panel.kind == "stat":
        return stat.Panel().graph_mode(common_m.BigValueGraphMode.AREA)
    if panel.kind == "table":
        return table.Panel()
    return nodegraph.Panel()


def panel_builder(panel: Panel) -> PanelBuilder:
    """The SDK builder of one panel, targets, unit, thresholds and links included."""
    b = (
        _panel_builder(panel)
        .title(panel.title)
        .description(panel.description)
        .datasource(DATASOURCE)
        .span(panel.width)
        .height(panel.height)
    )
    for i, q in enumerate(panel.queries):
        b = b.with_target(target(q, i))
    if panel.unit:
        b = b.unit(panel.unit)
    if panel.thresholds:
        steps = [dash_m.Threshold(value=None, color="green")]
        colours = ("yellow", "orange", "red")
        for i, value in enumerate(panel.thresholds):
            steps.append(dash_m.Threshold(value=value, color=colours[min(i, 2)]))
        b = b.thresholds(
            dash_b.ThresholdsConfig().mode(dash_m.ThresholdsMode.ABSOLUTE).steps(steps)
        )
    if panel.links:
        b = b.data_links([dash_b.DashboardLink(link.title).url(link.url) for link in panel.links])
    for ident, options in panel.transformations:
        b = b.with_transformation(dash_m.DataTransformerConfig(id_val=ident, options=options))
    return b


def variable_builder(v: Variable | TextVariable) -> Builder[dash_m.VariableModel]:
    """A query variable over the datasource (multi-value, All = ``.*``) or a text box."""
    if isinstance(v, TextVariable):
        return (
            dash_b.TextBoxVariable(v.name)
            .label(v.label)
            .description(v.description)
            .default_value(v.default)
        )
    q = (
        dash_b.QueryVariable(v.name)
        .label(v.label)
        .description(v.description)
        .datasource(DATASOURCE)
        .query(v.query)
        .refresh(dash_m.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dash_m.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dash_m.VariableOption(selected=True, text="All", value="$__all"))
    )
    return q.regex(v.regex) if v.regex else q


def dashboard_builder(board: Board) -> dash_b.Dashboard:
    """The SDK builder of one dashboard."""
    d = (
        dash_b.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(list(board.tags))
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(dash_m.DashboardCursorSync.CROSSHAIR)
    )
    for v in board.variables:
        d = d.with_variable(variable_builder(v))
    ids = iter(range(1, 1000))  # Grafana wants unique panel ids; rows count too
    for row in board.rows:
        d = d.with_row(dash_b.Row(row.title).id(next(ids)))
        for panel in row.panels:
            d = d.with_panel(panel_builder(panel).id(next(ids)))
    return d


def dashboard_json(board: Board) -> str:
    """The dashboard as stable, pretty JSON text (what is committed under dashboards/json/)."""
    model = dashboard_builder(board).build()
    data: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
