"""What a dashboard is made of, as plain data: boards, rows, panels, queries, variables.

The panel modules (``dashboards/panels/``) describe each dashboard with these; ``render``
turns them into grafana-foundation-sdk builders. Keeping the description separate from the
SDK lets the tests read every query and its ``may_be_empty`` reason directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

PanelKind = Literal["timeseries", "stat", "table", "nodegraph"]


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel.

    ``may_be_empty`` says why the query can legitimately return nothing (e.g. no OOM kill
    happened); the tests then only check that it parses and names exported metrics.
    """

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False
    may_be_empty: str | None = None
    ref: str = ""


@dataclass(frozen=True)
class Link:
    """A data link on a panel's values (Grafana interpolates ``${...}`` in ``url``)."""

    title: str
    url: str


@dataclass(frozen=True)
class Panel:
    """One panel: its kind, what it shows and how wide/high it is on the 24-column grid."""

    kind: PanelKind
    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = ""
    width: int = 12
    height: int = 8
    links: tuple[Link, ...] = ()
    stack: bool = False
    thresholds: tuple[float, ...] = ()
    # Grafana transformations (id, options), e.g. the node graph's field renames.
    transformations: tuple[tuple[str, dict[str, object]], ...] = ()


@dataclass(frozen=True)
class Row:
    """A titled row of panels."""

    title: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class Variable:
    """A template variable: a Prometheus ``label_values`` query, multi-value with All = .*"""

    name: str
    label: str
    query: str
    description: str
    regex: str = ""


@dataclass(frozen=True)
class TextVariable:
    """A free-text template variable (e.g. keiko's API URL for links)."""

    name: str
    label: str
    default: str
    description: str


@dataclass(frozen=True)
class Board:
    """One dashboard: its uid (also the JSON file's name), rows and variables."""

    uid: str
    title: str
    description: str
    rows: tuple[Row, ...]
    variables: tuple[Variable | TextVariable, ...] = ()
    tags: tuple[str, ...] = field(default=("keiko",))

    def panels(self) -> list[Panel]:
        """Every panel, row by row."""
        return [p for row in self.rows for p in row.panels]

    def queries(self) -> list[Query]:
        """Every query of every panel."""
        return [q for p in self.panels() for q in p.queries]
