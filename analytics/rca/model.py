"""What root-cause analysis reads (a case) and what it answers (ranked candidates)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analytics.traces.spans import SpanBatch

METRIC_COLUMNS = ("time", "service", "metric", "value", "instance")
# The `service` of a series about a node rather than a service (e.g. "node:worker-3"):
# a node is a candidate cause through its saturation, not through the latency or traffic
# of everything that runs on it.
NODE_PREFIX = "node:"


@dataclass
class Case:
    """The signals around one incident.

    ``metrics`` is long-format: one row per point, columns ``time`` (unix s, float),
    ``service``, ``metric``, ``value`` (float) and ``instance`` (pod or node, "" when
    unknown). ``spans`` holds the traces of the same period, ``graph`` the known call
    edges (caller, callee); either may be empty.
    """

    metrics: pd.DataFrame
    spans: SpanBatch | None = None
    graph: list[tuple[str, str]] = field(default_factory=list)

    @staticmethod
    def empty_metrics() -> pd.DataFrame:
        """A metrics frame with the columns and no rows."""
        return pd.DataFrame(
            {
                "time": pd.Series(dtype="float64"),
                "service": pd.Series(dtype="object"),
                "metric": pd.Series(dtype="object"),
                "value": pd.Series(dtype="float64"),
                "instance": pd.Series(dtype="object"),
            }
        )


@dataclass
class Evidence:
    """One reason a candidate ranks where it does."""

    kind: str  # "metric", "error_origin", "self_time", "onset", "graph"
    summary: str  # one line a person reads
    weight: float  # its contribution to the score
    details: dict[str, Any] = field(default_factory=dict)  # series, trace ids, times ...

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "kind": self.kind,
            "summary": self.summary,
            "weight": round(self.weight, 4),
            **self.details,
        }


@dataclass
class Candidate:
    """A likely root cause: a service (and where known the pod or node) with its evidence."""

    service: str
    score: float  # higher is more likely; comparable within one answer only
    instance: str = ""
    path: list[str] = field(default_factory=list)  # symptom ... -> this service
    evidence: list[Evidence] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the `keiko rca --json` item and the incident event's)."""
        out: dict[str, Any] = {"service": self.service, "score": round(self.score, 4)}
        if self.instance:
            out["instance"] = self.instance
        out["path"] = list(self.path)
        out["evidence"] = [e.to_json() for e in self.evidence]
        return out
