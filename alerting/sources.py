"""keiko's own events as alerts: incidents, SLO burns, threshold rules, scaling advice and
(optionally) single anomalies.

A stage reads the ``events`` stream as consumer group ``alert-sources`` and appends
Alertmanager-shaped alerts to the ``alerts`` stream (keyed ``keiko``, so the engine takes
their ``evidence``), where they are routed like any alert. Incident alerts carry the
incident's evidence: ranked root causes, example traces, the services involved, the call
path and links; their ``incident`` label lets routes group an incident's alerts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from pydantic import Field

from alerting.model import ALERTS_KIND, ALERTS_STREAM, parse_time, rfc3339
from keiko.components import Context
from keiko.records import Kind, NewRecord, Record, Stream
from keiko.store.config import Strict
from keiko.stream.config import CheckpointConfig
from keiko.stream.worker import StreamWorker
from keiko.units import Duration

log = logging.getLogger(__name__)
GROUP = "alert-sources"
MAX_CAUSES = 3
MAX_TRACES = 5


class SourcesConfig(Strict):
    """Which of keiko's events become alerts."""

    incidents: bool = Field(
        default=True,
        description="Incidents (grouped anomalies with ranked root causes) become "
        "`KeikoIncident` alerts with their evidence; closed incidents resolve them.",
    )
    anomalies: bool = Field(
        default=False,
        description="Single anomalies become `KeikoAnomaly` alerts (severity info). Off by "
        "default: incidents already group them, with causes, into one alert.",
    )
    slo_burn: bool = Field(default=True, description="SLO burn-rate events -> `KeikoSLOBurn`.")
    threshold: bool = Field(
        default=True, description="Threshold rule events -> alerts named after the rule."
    )
    scaling_advice: bool = Field(
        default=False,
        description="Scaling advice -> `KeikoScalingAdvice` (severity info) while it stands.",
    )
    incident_severity: str = Field(
        default="warning", description="`severity` label of incident alerts."
    )
    incident_min_anomalies: int = Field(
        default=1,
        ge=1,
        description="An incident becomes an alert once it holds this many anomalies (noise "
        "rarely groups; real faults spread).",
    )
    incident_max_age: Duration = Field(
        default=86400.0,
        gt=0,
        description="An incident alert ends this long after the incident's last version "
        "unless a newer version or its close comes first.",
    )
    anomaly_ttl: Duration = Field(
        default=600.0, gt=0, description="How long an anomaly alert fires (not re-sent)."
    )
    scaling_ttl: Duration = Field(
        default=1800.0, gt=0, description="How long a scaling-advice alert fires."
    )
    grafana_url: str | None = Field(
        default=None,
        description="Grafana's base URL (e.g. https://grafana.example.com): incident alerts "
        "link to keiko's dashboards and to their example traces there.",
    )


def _t(unix_s: float) -> str:
    return rfc3339(unix_s)


def _seconds(event: dict[str, Any], key: str = "time_unix_nano") -> float:
    if event.get(key):
        return float(event[key]) / 1e9
    text = event.get("time")
    if isinstance(text, str):
        return parse_time(text)
    raise KeyError("time")


def incident_alert(event: dict[str, Any], cfg: SourcesConfig) -> dict[str, Any] | None:
    """The alert of one incident version (None below the anomaly threshold)."""
    anomalies = event.get("anomalies", [])
    if event["status"] != "closed" and len(anomalies) < cfg.incident_min_anomalies:
        return None
    causes = event.get("root_causes", [])[:MAX_CAUSES]
    top = causes[0]["service"] if causes else (event.get("symptom") or "")
    traces = [
        e["trace_id"] for a in anomalies for e in a.get("exemplars", []) if e.get("trace_id")
    ][:MAX_TRACES]
    now = _seconds(event)
    onset = event.get("onset") or event["time"]
    evidence = {
        "id": event["id"],
        "version": event.get("version"),
        "summary": event.get("summary", ""),
        "services": event.get("services", []),
        "root_causes": [
            {k: c.get(k) for k in ("service", "score", "evidence", "path") if k in c}
            for c in causes
        ],
        "anomalies": [
            {k: a.get(k) for k in ("series", "service", "onset", "score")} for a in anomalies[:20]
        ],
        "traces": traces,
        "path": next((c.get("path") for c in causes if c.get("path")), None),
        "links": incident_links(event, cfg, traces),
    }
    closed = event["status"] == "closed"
    return {
        "labels": {
            "alertname": "KeikoIncident",
            "incident": event["id"],
            "service": top,
            "severity": cfg.incident_severity,
        },
        "annotations": {
            "summary": event.get("summary", "")[:1000],
            "description": f"keiko incident {event['id']} (version {event.get('version')}), "
            f"services: {', '.join(event.get('services', [])[:10])}",
        },
        "startsAt": onset,
        "endsAt": _t(now) if closed else _t(now + cfg.incident_max_age),
        "evidence": evidence,
    }


def incident_links(
    event: dict[str, Any], cfg: SourcesConfig, traces: list[str]
) -> list[dict[str, str]]:
    """Links to the dashboards and the API for an incident."""
    links = [
        {"title": "incident (keiko API)", "url": f"/api/v1/incidents?status={event['status']}"}
    ]
    if cfg.grafana_url:
        base = cfg.grafana_url.rstrip("/")
        services = event.get("services", [])
        var = "&".join(f"var-service={quote(s)}" for s in services[:5])
        links.append({"title": "incidents dashboard", "url": f"{base}/d/keiko-incidents?{var}"})
        links.append({"title": "services dashboard", "url": f"{base}/d/keiko-services?{var}"})
        links.extend(
            {"title": f"trace {t}", "url": f"{base}/explore?traceId={quote(t)}"} for t in traces[:3]
        )
    return links


def anomaly_alert(event: dict[str, Any], cfg: SourcesConfig) -> dict[str, Any]:
    """A single anomaly as an info alert that fires for ``anomaly_ttl``."""
    t = _seconds(event)
    return {
        "labels": {
            "alertname": "KeikoAnomaly",
            "service": event.get("service", ""),
            "series": event.get("series", "")[:1024],
            "severity": "info",
        },
        "annotations": {
            "summary": f"anomaly in {event.get('series', '')[:200]} (score {event.get('score')})",
            "expected_range": json.dumps(event.get("expected_range")),
        },
        "startsAt": _t(event.get("onset_unix_nano", 0) / 1e9 or t),
        "endsAt": _t(t + cfg.anomaly_ttl),
    }


def slo_alert(event: dict[str, Any], cfg: SourcesConfig) -> dict[str, Any]:
    """An SLO burn-rate alert, firing or resolved."""
    t = _seconds(event)
    labels = {
        "alertname": "KeikoSLOBurn",
        "objective": str(event.get("objective", "")),
        "service": str(event.get("service", "")),
        "severity": str(event.get("severity", "page")),
        **{k: str(v) for k, v in (event.get("labels") or {}).items()},
    }
    windows = event.get("windows", {})
    burn = event.get("burn_rate", {})
    summary = (
        f"{labels['service']}: {labels['objective']} burning its error budget "
        f"{burn.get('long')}x over {windows.get('long')} and {burn.get('short')}x over "
        f"{windows.get('short')} (threshold {event.get('factor')}x); budget left "
        f"{event.get('budget_remaining')}"
    )
    return {
        "labels": labels,
        "annotations": {"summary": summary},
        "startsAt": _t(t),
        "endsAt": _t(t) if event.get("status") == "resolved" else _t(t + 86400),
    }


def threshold_alert(event: dict[str, Any], cfg: SourcesConfig) -> dict[str, Any]:
    """A threshold rule's alert, firing or resolved."""
    t = _seconds(event)
    labels = {"alertname": str(event.get("rule", "KeikoThreshold"))}
    labels.update({k: str(v) for k, v in (event.get("labels") or {}).items()})
    annotations = {k: str(v) for k, v in (event.get("annotations") or {}).items()}
    annotations.setdefault(
        "summary",
        f"{event.get('series', '')}: {event.get('value')} {event.get('op')} "
        f"{event.get('threshold')}",
    )
    return {
        "labels": labels,
        "annotations": annotations,
        "startsAt": _t(t),
        "endsAt": _t(t) if event.get("status") == "resolved" else _t(t + 86400),
    }


def scaling_alert(event: dict[str, Any], cfg: SourcesConfig) -> dict[str, Any]:
    """Scaling advice as an info alert."""
    t = float(event["time"]) if isinstance(event.get("time"), int | float) else _seconds(event)
    return {
        "labels": {
            "alertname": "KeikoScalingAdvice",
            "workload": str(event.get("workload", "")),
            "severity": "info",
        },
        "annotations": {
            "summary": f"{event.get('workload')}: run {event.get('replicas')} replicas "
            f"({event.get('mode')}: {event.get('reason')})",
        },
        "startsAt": _t(t),
        "endsAt": _t(t + cfg.scaling_ttl),
    }


CONVERTERS: dict[
    str, tuple[str, Callable[[dict[str, Any], SourcesConfig], dict[str, Any] | None]]
] = {
    "incident": ("incidents", incident_alert),
    "anomaly": ("anomalies", anomaly_alert),
    "slo_burn": ("slo_burn", slo_alert),
    "threshold": ("threshold", threshold_alert),
    "scaling_advice": ("scaling_advice", scaling_alert),
}


class SourceStage(StreamWorker):
    """events -> alerts; stateless apart from the consumer offset."""

    output_stream = ALERTS_STREAM

    def __init__(self, config: SourcesConfig, ctx: Context, checkpoint: CheckpointConfig) -> None:
        super().__init__(
            ctx,
            name="alert-sources",
            stream=Stream.EVENTS,
            group=GROUP,
            checkpoint=checkpoint,
            fetch_batch=500,
            fetch_timeout=1.0,
            checkpoint_name="sources",
        )
        self.config = config

    def process(self, records: list[Record]) -> list[NewRecord]:
        """Convert the events that are switched on; one alerts record per fetch."""
        alerts = []
        for record in records:
            if record.kind != Kind.EVENT_JSON:
                continue
            try:
                event = json.loads(record.payload)
                switch, convert = CONVERTERS.get(event.get("type"), ("", None))
                if convert is None or not getattr(self.config, switch):
                    continue
                alert = convert(event, self.config)
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                self.stats.skipped_records["undecodable"] += 1
                log.warning("alert-sources: event %d not converted: %s", record.offset, exc)
                continue
            if alert is not None:
                alerts.append(alert)
        if not alerts:
            return []
        payload = json.dumps(alerts, separators=(",", ":")).encode()
        return [NewRecord(ALERTS_KIND, payload, len(alerts), "keiko")]

    def snapshot_parts(self) -> dict[str, bytes]:
        """No state but the offset."""
        return {"sources": b"{}"}

    def restore_parts(self, parts: dict[str, bytes]) -> str:
        """Nothing to rebuild."""
        return "offset"
