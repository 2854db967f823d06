"""Public RCA data sets converted into case directories with their ground truth.

Each converter yields ``LabelledCase`` items: the case, the ``--at`` its data set's
evaluation protocol implies, the true root-cause service and the group it is scored in.
``save`` writes one as a case directory plus ``truth.json`` so that `keiko rca` (which
ignores the extra file) and the evaluation read the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analytics.rca.caseio import read_case, write_case
from analytics.rca.model import Case

TRUTH_FILE = "truth.json"


@dataclass
class LabelledCase:
    """One converted case with what its data set says the answer is."""

    dataset: str  # "sockshop" or "petshop"
    name: str  # unique within the data set, usable as a relative directory
    group: tuple[str, ...]  # what results are reported by: ("cpu",), ("low_traffic", "latency")
    truth: str  # the true root-cause service, in the data set's own naming
    at: float  # unix s: where the normal period ends and the problem starts
    case: Case
    notes: dict[str, Any] = field(default_factory=dict)

    def truth_json(self) -> dict[str, Any]:
        """What ``truth.json`` holds."""
        return {
            "dataset": self.dataset,
            "name": self.name,
            "group": list(self.group),
            "truth": self.truth,
            "at": self.at,
            **self.notes,
        }


def save(root: Path, item: LabelledCase) -> Path:
    """Write ``item`` under ``root`` as a case directory; returns that directory."""
    directory = root / item.dataset / item.name
    write_case(directory, item.case)
    (directory / TRUTH_FILE).write_text(json.dumps(item.truth_json(), indent=2) + "\n")
    return directory


def load(directory: Path) -> LabelledCase:
    """A case directory written by ``save``, read back through ``read_case``."""
    meta = json.loads((directory / TRUTH_FILE).read_text())
    notes = {k: v for k, v in meta.items() if k not in ("dataset", "name", "group", "truth", "at")}
    return LabelledCase(
        meta["dataset"],
        meta["name"],
        tuple(meta["group"]),
        meta["truth"],
        float(meta["at"]),
        read_case(directory),
        notes,
    )


def wide_to_long(
    times: np.ndarray, columns: Sequence[tuple[str, str]], values: np.ndarray
) -> pd.DataFrame:
    """A wide table (one column per (service, metric), one row per time) as ``Case.metrics``;
    missing (NaN) cells are left out, as a series without a point there."""
    n_rows, n_cols = values.shape
    flat = values.reshape(-1)  # row-major: time varies slowest
    keep = np.isfinite(flat)
    services = np.array([c[0] for c in columns], dtype=object)
    metrics = np.array([c[1] for c in columns], dtype=object)
    return pd.DataFrame(
        {
            "time": np.repeat(times.astype("float64"), n_cols)[keep],
            "service": np.tile(services, n_rows)[keep],
            "metric": np.tile(metrics, n_rows)[keep],
            "value": flat[keep].astype("float64"),
            "instance": np.full(int(keep.sum()), "", dtype=object),
        }
    )
