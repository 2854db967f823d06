"""An incident as the event written to the store: anomalies with example traces, ranked
root causes with evidence, a one-line summary."""

from __future__ import annotations

import math
from typing import Any

from analytics.incidents.grouping import Incident
from keiko.humanize import rfc3339


def _time(unix_s: float) -> str | None:
    return rfc3339(round(unix_s * 1e9)) if math.isfinite(unix_s) else None


def anomaly_of(event: dict[str, Any]) -> dict[str, Any]:
    """What an incident keeps of an anomaly event (times as unix seconds)."""
    t = event["time_unix_nano"] / 1e9
    onset = event.get("onset_unix_nano")
    return {
        "id": event["id"],
        "series": event.get("series", ""),
        "service": event.get("service", ""),
        "metric": event.get("metric", ""),
        "time": t,
        "onset": onset / 1e9 if onset else t,
        "score": event.get("score"),
        "value": event.get("value"),
        "expected_range": event.get("expected_range"),
    }


def summary(incident: Incident, causes: list[dict[str, Any]]) -> str:
    """One line: the most likely cause and what it is based on."""
    n, services = len(incident.anomalies), incident.services
    seen = f"{n} anomal{'y' if n == 1 else 'ies'} in {', '.join(services[:5]) or '?'}"
    if not causes:
        return f"{seen}; no root cause found in the window"
    best = causes[0]
    why = best["evidence"][0]["summary"] if best.get("evidence") else ""
    return f"most likely cause: {best['service']} ({why}); {seen}"


def incident_event(
    incident: Incident, status: str, now: float, window: dict[str, Any]
) -> dict[str, Any]:
    """The JSON object of one version of an incident."""
    return {
        "type": "incident",
        "id": incident.id,
        "version": incident.version,
        "status": status,
        "time": _time(now),
        "opened": _time(incident.opened),
        "onset": _time(incident.onset),
        "symptom": incident.symptom,
        "services": incident.services,
        "anomalies": [
            {**a, "time": _time(a["time"]), "onset": _time(a["onset"])} for a in incident.anomalies
        ],
        "root_causes": incident.root_causes,
        "summary": summary(incident, incident.root_causes),
        "window": window,
    }
