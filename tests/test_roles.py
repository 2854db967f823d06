"""`keiko agent`, `keiko analyze` and `keiko alert`: the roles of `keiko run` as separate
processes on one NATS JetStream store, each running only its part and talking to the others
only through the store."""

from __future__ import annotations

import time

import httpx
from fixtures.keiko import KeikoFactory, KeikoProcess, post_traces, trace_request
from fixtures.nats import NatsServer, nats_store_config
from fixtures.receiver import Receiver


def families(kp: KeikoProcess) -> set[str]:
    text = httpx.get(f"{kp.api_url}/metrics", timeout=10).text
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def test_roles_run_their_part_and_meet_in_the_store(
    keiko_process: KeikoFactory, nats_server: NatsServer
) -> None:
    store = nats_store_config(nats_server)
    with Receiver() as hook:
        config = {
            "store": store,
            "probes": {"ebpf": {"enabled": False}},
            "analytics": {"spanmetrics": {"flush_interval": "1s"}},
            "alerting": {
                "router": {
                    "route": {"receiver": "hook", "group_wait": "1s"},
                    "receivers": [{"name": "hook", "webhook_configs": [{"url": hook.url}]}],
                }
            },
        }
        procs = {}
        for role in ("agent", "analyze", "alert"):
            kp = keiko_process(config, start=False, name=role)
            kp.command = role
            procs[role] = kp.start()
        agent, analyze, alert = procs["agent"], procs["analyze"], procs["alert"]
        seen = {role: families(kp) for role, kp in procs.items()}
        assert "keiko_alerts" not in seen["agent"] and "keiko_anomaly_series" not in seen["agent"]
        assert "keiko_alerts" in seen["alert"] and "keiko_anomaly_series" not in seen["alert"]
        assert "keiko_anomaly_series" in seen["analyze"] and "keiko_alerts" not in seen["analyze"]
        assert "as agent" in agent.log_text() and "as alert" in alert.log_text()
        # The analyzer holds the single partition of incidents: it serves their route.
        with analyze.client() as c:
            assert c.get("/api/v1/incidents").status_code == 200
        # The agent takes spans; the analyzer's span metrics see them through the store.
        body, _ = trace_request(trace_count=5, spans_per_trace=3, service="checkout")
        post_traces(agent, body)
        deadline = time.monotonic() + 30
        while "traces_span_metrics_calls_total" not in families(analyze):
            assert time.monotonic() < deadline, "the analyzer never saw the agent's spans"
            time.sleep(0.5)
        # The alerter takes Alertmanager's API and notifies.
        with alert.client() as c:
            body = [{"labels": {"alertname": "Down", "service": "checkout"}}]
            assert c.post("/api/v2/alerts", json=body).status_code == 200
        ((_, doc),) = hook.wait(1, timeout=30)
        assert doc["alerts"][0]["labels"]["alertname"] == "Down"
        # The agent has no alerting routes at all.
        assert httpx.get(f"{agent.api_url}/api/v2/alerts", timeout=10).status_code == 404
