"""Which of keiko's incidents an alert belongs to, and the evidence that goes with it.

Incident alerts (from keiko's ``incident`` events) carry the incident's services and its
evidence: ranked root causes, example traces, the call path, dashboard links. Any other
alert belongs to an open incident when it names the incident (an ``incident`` label) or
one of its services (in one of ``SERVICE_LABELS``). Notifications carry the evidence of
the incidents their alerts belong to, and a route that groups by ``incident`` puts an
incident's alerts into one notification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alerting.model import Alert

INCIDENT_ALERT = "KeikoIncident"
INCIDENT_LABEL = "incident"
SERVICE_LABELS = ("service", "service_name", "job", "app", "workload")


@dataclass
class IncidentInfo:
    """What correlation keeps of one incident."""

    id: str
    services: set[str] = field(default_factory=set)
    evidence: dict[str, Any] = field(default_factory=dict)
    open: bool = True


class Correlator:
    """Incidents by id and by service, fed with incident alerts as they arrive."""

    def __init__(self, max_incidents: int = 1000) -> None:
        self.max_incidents = max_incidents
        self.incidents: dict[str, IncidentInfo] = {}

    def observe(self, alert: Alert, now: float) -> IncidentInfo | None:
        """Learn from an incident alert; the incident when it is new or gained services."""
        if alert.labels.get("alertname") != INCIDENT_ALERT or INCIDENT_LABEL not in alert.labels:
            return None
        iid = alert.labels[INCIDENT_LABEL]
        evidence = alert.evidence or {}
        services = set(evidence.get("services", [])) | {
            c["service"] for c in evidence.get("root_causes", []) if "service" in c
        }
        info = self.incidents.get(iid)
        grew = info is None or not services <= info.services
        if info is None:
            info = self.incidents[iid] = IncidentInfo(iid)
            while len(self.incidents) > self.max_incidents:  # oldest first (insertion order)
                del self.incidents[next(iter(self.incidents))]
        info.services |= services
        info.evidence = evidence
        info.open = not alert.resolved(now)
        return info if grew and info.open else None

    def incident_of(self, labels: dict[str, str]) -> str | None:
        """The incident an alert with ``labels`` belongs to, if any (newest open first)."""
        named = labels.get(INCIDENT_LABEL)
        if named:
            return named
        if not self.incidents:
            return None
        mine = {labels[k] for k in SERVICE_LABELS if labels.get(k)}
        if not mine:
            return None
        for info in reversed(self.incidents.values()):
            if info.open and mine & info.services:
                return info.id
        return None

    def evidence(self, alerts: list[Alert]) -> list[dict[str, Any]]:
        """The evidence of every incident ``alerts`` belong to (each once)."""
        seen: dict[str, dict[str, Any]] = {}
        for a in alerts:
            iid = self.incident_of(a.labels)
            info = self.incidents.get(iid) if iid else None
            if info is not None and info.evidence and iid not in seen:
                seen[info.id] = info.evidence
        return list(seen.values())

    def snapshot(self) -> list[dict[str, Any]]:
        """JSON-able state."""
        return [
            {"id": i.id, "services": sorted(i.services), "evidence": i.evidence, "open": i.open}
            for i in self.incidents.values()
        ]

    def restore(self, doc: list[dict[str, Any]]) -> None:
        """Rebuild from :meth:`snapshot`."""
        self.incidents = {
            d["id"]: IncidentInfo(d["id"], set(d["services"]), d["evidence"], d["open"])
            for d in doc
        }
