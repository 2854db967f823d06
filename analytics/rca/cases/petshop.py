"""Amazon's PetShop RCA issues as labelled cases.

Follows upstream's ``code/rca_task.py`` (the data set's README): each issue of a scenario
(train and test) is analysed against the scenario's ``noissue/metrics.csv`` as the normal
period, with the scenario's call graph. Columns carry a 3-row header (microservice,
metric, statistic); a column becomes service ``<microservice>`` and metric
``<metric>_<statistic>`` (``latency_p90``). Empty cells are missing points.

Time: the normal-operation file was recorded months after the issues, so its rows are
re-timed (spacing kept) to end one step (300 s) before the issue's first row. ``at`` is
the time of the issue window's third row: upstream analyses row index 2 ("the third point
in time to give the issues some time to trigger"), which is always the first step after
``target.timestamp`` here (that lies 300-599 s after the window starts).

Graph: ``graph.csv`` is an adjacency matrix whose row -> column entries are caller ->
callee (the row of the entry point PetSite has 12 entries; no row points at PetSite).

A scenario without ``noissue/metrics.csv`` (temporal_traffic1/2 in this copy) is not
scorable: an issue window has only two rows before ``at``, too few to know what normal
is, and borrowing another scenario's traffic would invent a baseline. ``missing_normal``
lists those issues so the evaluation can report them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from analytics.rca.cases import LabelledCase, wide_to_long
from analytics.rca.model import Case

DATASET = "petshop"
SCENARIOS = ("low_traffic", "high_traffic", "temporal_traffic1", "temporal_traffic2")
SPLITS = ("train", "test")
STEP_S = 300.0
ANALYSED_ROW = 2  # upstream's row_index_to_analyze


class PetShopError(ValueError):
    """The PetShop directory is not laid out as its README describes."""


@dataclass(frozen=True)
class Unscorable:
    """An issue that cannot be turned into a case, and why."""

    name: str
    group: tuple[str, ...]
    truth: str
    reason: str


def read_wide(path: Path) -> tuple[np.ndarray, list[tuple[str, str]], np.ndarray]:
    """(times, (service, metric) per column, values) of a 3-row-header metrics file."""
    frame = pd.read_csv(path, header=[0, 1, 2], index_col=0)
    times = pd.to_numeric(frame.index, errors="coerce").to_numpy(float)
    keep = np.isfinite(times)
    columns = [(str(m), f"{k}_{s}") for m, k, s in frame.columns]
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(float)[keep]
    order = np.argsort(times[keep], kind="stable")
    return times[keep][order], columns, values[order]


def read_graph(path: Path) -> list[tuple[str, str]]:
    """Caller -> callee edges of an adjacency-matrix ``graph.csv`` (row calls column)."""
    matrix = pd.read_csv(path, index_col=0)
    rows, cols = np.nonzero(matrix.to_numpy(float) != 0)
    return [(str(matrix.index[r]), str(matrix.columns[c])) for r, c in zip(rows, cols, strict=True)]


def issue_dirs(scenario_dir: Path) -> list[Path]:
    """The issue directories of a scenario, train then test, by issue number."""
    out: list[Path] = []
    for split in SPLITS:
        found = [p for p in (scenario_dir / split).glob("issue_*") if p.is_dir()]
        out += sorted(found, key=lambda p: int(p.name.rpartition("_")[2]))
    return out


def convert(
    issue: Path,
    normal: tuple[np.ndarray, list[tuple[str, str]], np.ndarray],
    graph: list[tuple[str, str]],
) -> LabelledCase:
    """One issue directory with its scenario's normal period and graph."""
    target = json.loads((issue / "target.json").read_text())
    times, columns, values = read_wide(issue / "metrics.csv")
    if len(times) <= ANALYSED_ROW:
        raise PetShopError(f"{issue}: fewer than {ANALYSED_ROW + 1} rows")
    n_times, n_columns, n_values = normal
    shift = (times[0] - STEP_S) - n_times[-1]
    metrics = pd.concat(
        [wide_to_long(n_times + shift, n_columns, n_values), wide_to_long(times, columns, values)],
        ignore_index=True,
    )
    scenario, split = issue.parent.parent.name, issue.parent.name
    return LabelledCase(
        DATASET,
        f"{scenario}/{split}/{issue.name}",
        (scenario, str(target["target"]["metric"])),
        str(target["root_cause"]["node"]),
        float(times[ANALYSED_ROW]),
        Case(metrics=metrics, graph=graph),
        {
            "target": target["target"],
            "normal_shift_s": float(shift),
            "normal_rows": len(n_times),
        },
    )


def cases(root: Path, unscorable: list[Unscorable] | None = None) -> Iterator[LabelledCase]:
    """Every scorable issue under ``root`` (the ``petshop/dataset`` directory); the others
    are appended to ``unscorable`` with the reason."""
    scenarios = [root / s for s in SCENARIOS if (root / s).is_dir()]
    if not scenarios:
        raise PetShopError(f"{root}: none of the scenario directories {', '.join(SCENARIOS)}")
    for scenario_dir in scenarios:
        normal_path = scenario_dir / "noissue" / "metrics.csv"
        issues = issue_dirs(scenario_dir)
        if not normal_path.exists():
            for issue in issues:
                target = json.loads((issue / "target.json").read_text())
                if unscorable is not None:
                    unscorable.append(
                        Unscorable(
                            f"{scenario_dir.name}/{issue.parent.name}/{issue.name}",
                            (scenario_dir.name, str(target["target"]["metric"])),
                            str(target["root_cause"]["node"]),
                            f"{normal_path} missing: no normal period",
                        )
                    )
            continue
        normal = read_wide(normal_path)
        graph = read_graph(scenario_dir / "graph.csv")
        for issue in issues:
            yield convert(issue, normal, graph)
