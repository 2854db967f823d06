"""keiko's own events become alerts: incidents with evidence, SLO burns, threshold rules,
scaling advice, optional single anomalies; what is switched off or malformed is skipped."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from alerting.api.postable import decode_alerts
from alerting.model import ALERTS_KIND, rfc3339
from alerting.sources import SourcesConfig, SourceStage, incident_alert
from keiko.records import Kind, Record
from keiko.stream.config import CheckpointConfig

T = 1_790_000_000.0


def incident(status: str = "open", anomalies: int = 2) -> dict[str, Any]:
    return {
        "type": "incident",
        "id": "inc-1",
        "version": 3,
        "status": status,
        "time": rfc3339(T),
        "time_unix_nano": int(T * 1e9),
        "onset": rfc3339(T - 200),
        "symptom": "frontend",
        "services": ["frontend", "cart"],
        "anomalies": [
            {
                "series": f"s{k}",
                "service": "cart",
                "onset": rfc3339(T - 200),
                "score": 0.99,
                "exemplars": [{"trace_id": f"{k:032x}"}],
            }
            for k in range(anomalies)
        ],
        "root_causes": [
            {"service": "cart", "score": 9.5, "evidence": [{"summary": "latency up"}]},
            {"service": "redis", "score": 2.0, "evidence": []},
        ],
        "summary": "most likely cause: cart (latency up); 2 anomalies in cart",
    }


def records(*events: dict[str, Any]) -> list[Record]:
    return [Record(k + 1, 0, Kind.EVENT_JSON, json.dumps(e).encode()) for k, e in enumerate(events)]


def stage(**config: Any) -> SourceStage:
    ctx = SimpleNamespace(store=None, telemetry=None, config=None)
    return SourceStage(SourcesConfig(**config), ctx, CheckpointConfig())  # type: ignore[arg-type]


def test_an_open_incident_is_an_alert_with_its_evidence() -> None:
    alert = incident_alert(incident(), SourcesConfig(grafana_url="https://grafana.example"))
    assert alert is not None
    assert alert["labels"] == {
        "alertname": "KeikoIncident",
        "incident": "inc-1",
        "service": "cart",
        "severity": "warning",
    }
    ev = alert["evidence"]
    assert [c["service"] for c in ev["root_causes"]] == ["cart", "redis"]
    assert ev["traces"] == [f"{0:032x}", f"{1:032x}"]
    assert any(link["url"].startswith("https://grafana.example/d/") for link in ev["links"])
    assert alert["endsAt"] > alert["startsAt"]


def test_a_closed_incident_resolves_and_small_ones_wait() -> None:
    closed = incident_alert(incident("closed"), SourcesConfig())
    assert closed is not None and closed["endsAt"] == rfc3339(T)
    assert incident_alert(incident(anomalies=1), SourcesConfig(incident_min_anomalies=2)) is None


def test_the_stage_writes_one_alerts_record_that_the_engine_decodes_with_evidence() -> None:
    slo = {
        "type": "slo_burn",
        "status": "firing",
        "time_unix_nano": int(T * 1e9),
        "objective": "cart-availability",
        "service": "cart",
        "severity": "page",
        "burn_rate": {"long": 20.0, "short": 30.0},
        "windows": {"long": "1h", "short": "5m"},
        "factor": 14.4,
        "budget_remaining": 0.4,
        "labels": {"alertname": "SLOBurnRate", "window": "page-1h"},
    }
    rule = {
        "type": "threshold",
        "status": "resolved",
        "time_unix_nano": int(T * 1e9),
        "rule": "QueueDeep",
        "labels": {"queue": "orders"},
        "series": 'queue.depth{queue="orders"}',
        "value": 3,
        "op": ">",
        "threshold": 100,
    }
    anomaly = {"type": "anomaly", "time_unix_nano": int(T * 1e9), "service": "cart"}
    out = stage().process(records(incident(), slo, rule, anomaly, {"type": "other"}))
    (record,) = out
    assert record.kind == ALERTS_KIND and record.key == "keiko" and record.count == 3
    alerts = decode_alerts(record.payload, T, source="keiko", evidence=True)
    by_name = {a.labels["alertname"]: a for a in alerts}
    assert set(by_name) == {"KeikoIncident", "SLOBurnRate", "QueueDeep"}
    assert by_name["KeikoIncident"].evidence is not None
    assert by_name["SLOBurnRate"].labels["service"] == "cart"
    assert "20.0x over 1h" in by_name["SLOBurnRate"].annotations["summary"]
    assert by_name["QueueDeep"].ends_at == T  # resolved
    assert by_name["QueueDeep"].labels == {"alertname": "QueueDeep", "queue": "orders"}


def test_switches_and_bad_events() -> None:
    anomaly = {
        "type": "anomaly",
        "time_unix_nano": int(T * 1e9),
        "service": "cart",
        "series": "latency",
        "score": 0.99,
    }
    assert stage().process(records(anomaly)) == []  # off by default
    (record,) = stage(anomalies=True, incidents=False).process(records(anomaly, incident()))
    (alert,) = decode_alerts(record.payload, T)
    assert alert.labels["alertname"] == "KeikoAnomaly"
    s = stage()
    broken = records({"type": "incident", "id": "x"})  # no status, no time
    assert s.process(broken) == []
    assert s.stats.skipped_records["undecodable"] == 1
