"""Open incidents and how anomalies join them: near in time and in the call graph."""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from analytics.rca.graph import CallGraph


@dataclass
class Incident:
    """Anomalies that belong together, and what the last analysis said about them."""

    id: str
    opened: float  # unix s of the first anomaly
    onset: float  # earliest onset of its anomalies (unix s)
    last: float  # time of its latest anomaly
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    version: int = 0  # analyses written so far
    analysed_at: float | None = None  # clock time of the last analysis
    analysed_anomalies: int = 0  # how many anomalies that analysis saw
    root_causes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def services(self) -> list[str]:
        """The services with anomalies, first seen first."""
        return list(dict.fromkeys(a["service"] for a in self.anomalies if a.get("service")))

    @property
    def symptom(self) -> str:
        """Where the problem was first seen: the service of the earliest anomaly."""
        first = min(self.anomalies, key=lambda a: (a["time"], a["onset"]))
        return str(first.get("service") or "")


def incident_id(first_anomaly_id: str) -> str:
    """Stable across replays: derived from the anomaly that opened it."""
    return "incident-" + hashlib.sha256(first_anomaly_id.encode()).hexdigest()[:16]


def near(graph: CallGraph, a: str, b: str, hops: int) -> bool:
    """Within ``hops`` calls of each other (either direction); unknown services are near."""
    known = set(graph.callees) | set(graph.callers)
    if a == b or a not in known or b not in known:
        return True
    seen, frontier = {a}, deque([(a, 0)])
    while frontier:
        node, depth = frontier.popleft()
        if depth == hops:
            continue
        for nxt in graph.callees.get(node, set()) | graph.callers.get(node, set()):
            if nxt == b:
                return True
            if nxt not in seen:
                seen.add(nxt)
                frontier.append((nxt, depth + 1))
    return False


class IncidentBook:
    """The open incidents (bounded), fed anomaly by anomaly."""

    def __init__(self, window: float, hops: int, max_open: int) -> None:
        self.window, self.hops, self.max_open = window, hops, max_open
        self.open: dict[str, Incident] = {}
        self.seen: dict[str, str] = {}  # anomaly id -> incident id (replays join once)
        self.evicted = 0

    def add(self, anomaly: dict[str, Any], graph: CallGraph) -> tuple[Incident, bool] | None:
        """File one anomaly; (its incident, whether that is new). None for a replay."""
        if anomaly["id"] in self.seen:
            return None
        t, service = anomaly["time"], anomaly.get("service") or ""
        for incident in sorted(self.open.values(), key=lambda i: -i.last):
            if t - incident.last > self.window or t < incident.opened - self.window:
                continue
            if any(near(graph, service, s, self.hops) for s in incident.services):
                self._file(incident, anomaly)
                return incident, False
        incident = Incident(incident_id(anomaly["id"]), t, anomaly["onset"], t)
        self._file(incident, anomaly)
        self.open[incident.id] = incident
        return incident, True

    def _file(self, incident: Incident, anomaly: dict[str, Any]) -> None:
        incident.anomalies.append(anomaly)
        incident.last = max(incident.last, anomaly["time"])
        incident.onset = min(incident.onset, anomaly["onset"])
        self.seen[anomaly["id"]] = incident.id

    def due(self, now: float, settle: float, reanalyse: float) -> list[Incident]:
        """Incidents to analyse now: settled and never analysed, or grown since."""
        out = []
        for i in self.open.values():
            if i.analysed_at is None:
                if now >= i.opened + settle:
                    out.append(i)
            elif len(i.anomalies) > i.analysed_anomalies and now >= i.analysed_at + reanalyse:
                out.append(i)
        return out

    def expire(self, now: float) -> list[Incident]:
        """Close incidents quiet for a window, and the oldest beyond ``max_open``."""
        closed = [i for i in self.open.values() if now - i.last > self.window]
        rest = sorted((i for i in self.open.values() if i not in closed), key=lambda i: i.last)
        excess = rest[: max(0, len(rest) - self.max_open)]
        self.evicted += len(excess)
        for i in [*closed, *excess]:
            del self.open[i.id]
            for a in i.anomalies:
                self.seen.pop(a["id"], None)
        return [*closed, *excess]

    def snapshot(self) -> bytes:
        """The open incidents as JSON bytes."""
        return json.dumps([asdict(i) for i in self.open.values()]).encode()

    def restore(self, data: bytes) -> None:
        """Take the state of ``snapshot()``."""
        self.open = {d["id"]: Incident(**d) for d in json.loads(data)}
        self.seen = {a["id"]: i.id for i in self.open.values() for a in i.anomalies}
