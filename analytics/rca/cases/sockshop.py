"""RCD's Sock Shop fault-injection cases ("Sock Shop 1" in RCAEval) as labelled cases.

Follows the protocol of RCAEval's ASE'24 evaluation (the data set's README): per case the
normal part (up to its last 300 rows) comes before the anomalous part (up to its first
300 rows). The normal window was recorded earlier and separately, so its rows are
re-timed to end 1 s before the first anomalous row (spacing kept); the anomalous times
are kept and ``at`` is the first anomalous time, the injection (tΔ = 0). The ``_lat_50``
and ``_lat_99`` columns are dropped. A column ``<container>_<metric>`` becomes service
``<container>`` and metric ``<metric>`` (``carts-db_cpu`` -> carts-db / cpu,
``carts_lat_90`` -> carts / lat_90). Scoring maps a returned service to the ground truth's
naming by dropping ``-db`` and removes duplicates (``truth_service``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from analytics.rca.cases import LabelledCase, wide_to_long
from analytics.rca.model import Case

DATASET = "sockshop"
PART_ROWS = 300
DROPPED_SUFFIXES = ("_lat_50", "_lat_99")
_COLUMN = re.compile(r"^(?P<service>.+?)_(?P<metric>lat_\d+|[^_]+)$")


class SockShopError(ValueError):
    """The Sock Shop directory is not laid out as its README describes."""


def split_column(column: str) -> tuple[str, str]:
    """(service, metric) of a metric column name."""
    match = _COLUMN.match(column)
    if not match:
        raise SockShopError(f"column {column!r} is not '<container>_<metric>'")
    return match["service"], match["metric"]


def truth_service(service: str) -> str:
    """The ground-truth service a returned service counts as (a database as its owner)."""
    return service.removesuffix("-db")


def case_dirs(root: Path) -> list[Path]:
    """Every ``<service>-<fault>/<k>`` directory, in a stable order."""
    found = [p.parent for p in root.glob("*-*/*/anomalous.csv")]
    return sorted(found, key=lambda p: (p.parent.name, int(p.name) if p.name.isdigit() else 0))


def convert(directory: Path) -> LabelledCase:
    """One ``<service>-<fault>/<k>`` directory as a labelled case."""
    target, _, fault = directory.parent.name.rpartition("-")
    if not target or fault not in ("cpu", "mem"):
        raise SockShopError(f"{directory}: expected a parent named <service>-cpu or <service>-mem")
    normal = _read(directory / "normal.csv").tail(PART_ROWS)
    anomalous = _read(directory / "anomalous.csv").head(PART_ROWS)
    at = float(anomalous["time"].iloc[0])
    normal_times = normal["time"].to_numpy(float)
    shift = (at - 1.0) - normal_times[-1]
    times = np.concatenate([normal_times + shift, anomalous["time"].to_numpy(float)])
    names = [c for c in anomalous.columns if c != "time" and not c.endswith(DROPPED_SUFFIXES)]
    values = np.vstack([normal[names].to_numpy(float), anomalous[names].to_numpy(float)])
    metrics = wide_to_long(times, [split_column(c) for c in names], values)
    return LabelledCase(
        DATASET,
        f"{directory.parent.name}/{directory.name}",
        (fault,),
        target,
        at,
        Case(metrics=metrics),
        {
            "normal_shift_s": float(shift),
            "normal_rows": len(normal),
            "anomalous_rows": len(anomalous),
        },
    )


def cases(root: Path) -> Iterator[LabelledCase]:
    """Every case under ``root`` (the ``rcd-sockshop`` directory)."""
    dirs = case_dirs(root)
    if not dirs:
        raise SockShopError(f"{root}: no <service>-<fault>/<k>/anomalous.csv found")
    for directory in dirs:
        yield convert(directory)


def _read(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    if "time" not in frame.columns or frame.empty:
        raise SockShopError(f"{path}: expected a 'time' column and at least one row")
    return frame.sort_values("time", kind="stable").reset_index(drop=True)
