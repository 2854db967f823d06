"""`keiko run` with alerting: alerts posted to the Alertmanager API v2 are grouped, routed
and delivered to a real local webhook receiver; acknowledgement, silences, kill -9."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from fixtures.keiko import KeikoFactory
from fixtures.nats import NatsServer, nats_store_config
from fixtures.receiver import Receiver


def _alert(name: str, **labels: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, **labels}, "annotations": {"summary": f"{name} fires"}}


def _config(url: str, **route: Any) -> dict[str, Any]:
    return {
        "alerting": {
            "router": {
                "route": {
                    "receiver": "hook",
                    "group_by": ["alertname"],
                    "group_wait": "1s",
                    "group_interval": "2s",
                    "repeat_interval": "1h",
                    **route,
                },
                "receivers": [{"name": "hook", "webhook_configs": [{"url": url + "/hook"}]}],
                "checkpoint": {"interval": "1s"},
                "outbox": {"retry_base": "200ms", "retry_max": "1s", "breaker_cooldown": "1s"},
            }
        }
    }


def test_alerts_are_grouped_into_one_webhook_notification(keiko_process: KeikoFactory) -> None:
    with Receiver() as hook:
        kp = keiko_process(_config(hook.url))
        with kp.client() as c:
            body = [_alert("HighLatency", service=f"svc{i}") for i in range(5)]
            assert c.post("/api/v2/alerts", json=body).status_code == 200
            ((path, doc),) = hook.wait(1)
            assert path == "/hook"
            assert doc["version"] == "4" and doc["status"] == "firing"
            assert doc["groupLabels"] == {"alertname": "HighLatency"}
            assert sorted(a["labels"]["service"] for a in doc["alerts"]) == [
                f"svc{i}" for i in range(5)
            ]
            got = c.get("/api/v2/alerts").json()
            assert len(got) == 5 and got[0]["receivers"] == [{"name": "hook"}]
            # the same alerts again: nothing new to tell
            assert c.post("/api/v2/alerts", json=body).status_code == 200
            time.sleep(3)
            assert len(hook.posts) == 1


def test_bad_requests_get_400_and_change_nothing(keiko_process: KeikoFactory) -> None:
    with Receiver() as hook:
        kp = keiko_process(_config(hook.url))
        with kp.client() as c:
            bad: list[Any] = [
                b"{not json",
                {"labels": {}},
                [{"labels": {"alertname": "x", "bad-name": "y"}}],
                [{"labels": {"alertname": "x" * 20000}}],
                [{"labels": {"alertname": "ok"}}, {"labels": {"n": 1}}],
                [{"labels": {"alertname": "x"}, "startsAt": "yesterday"}],
            ]
            for body in bad:
                if isinstance(body, bytes):
                    r = c.post("/api/v2/alerts", content=body)
                else:
                    r = c.post("/api/v2/alerts", json=body)
                assert r.status_code == 400, (body, r.text)
                assert r.json()["detail"]
            r = c.post(
                "/api/v2/silences",
                json={"matchers": [{"name": "a", "value": "(", "isRegex": True}]},
            )
            assert r.status_code == 400
            time.sleep(2)
            assert c.get("/api/v2/alerts").json() == []
            assert hook.posts == []


def test_silence_mutes_and_ack_stops_repeats(keiko_process: KeikoFactory) -> None:
    with Receiver() as hook:
        kp = keiko_process(_config(hook.url, repeat_interval="3s"))
        with kp.client() as c:
            now = time.time()
            silence = {
                "matchers": [{"name": "service", "value": "quiet", "isRegex": False}],
                "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 1)),
                "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
                "createdBy": "test",
                "comment": "maintenance",
            }
            sid = c.post("/api/v2/silences", json=silence).json()["silenceID"]
            assert c.get(f"/api/v2/silence/{sid}").json()["status"]["state"] == "active"
            c.post("/api/v2/alerts", json=[_alert("Down", service="quiet")])
            c.post("/api/v2/alerts", json=[_alert("Up", service="loud")])
            ((_, doc),) = hook.wait(1)
            assert doc["groupLabels"] == {"alertname": "Up"}
            fp = doc["alerts"][0]["fingerprint"]
            hook.wait(2, timeout=10)  # repeat_interval 3s: told again
            r = c.post(f"/api/v1/alerts/{fp}/ack", json={"by": "alice", "comment": "on it"})
            assert r.status_code == 202
            time.sleep(1)
            seen = len(hook.posts)
            time.sleep(6)
            assert len(hook.posts) == seen  # acknowledged: no more repeats
            quiet = c.get("/api/v2/alerts", params={"filter": 'service="quiet"'}).json()
            assert quiet[0]["status"]["state"] == "suppressed"
            assert quiet[0]["status"]["silencedBy"] == [sid]
            assert c.delete(f"/api/v2/silence/{sid}").status_code == 200
            assert c.get(f"/api/v2/silence/{sid}").json()["status"]["state"] == "expired"


def test_kill_9_between_accept_and_delivery_loses_nothing(keiko_process: KeikoFactory) -> None:
    with Receiver() as hook:
        config = _config(hook.url, group_wait="4s")
        kp = keiko_process(config)
        with kp.client() as c:
            assert c.post("/api/v2/alerts", json=[_alert("Disk", service="db")]).status_code == 200
        kp.kill()  # accepted, not yet delivered (group_wait 4s)
        assert hook.posts == []
        kp.start()
        ((_, doc),) = hook.wait(1, timeout=30)
        assert doc["alerts"][0]["labels"] == {"alertname": "Disk", "service": "db"}
        time.sleep(5)
        assert len(hook.posts) == 1


def test_receiver_down_then_back_gets_every_notification_once(
    keiko_process: KeikoFactory,
) -> None:
    with Receiver() as hook:
        hook.status = 503
        kp = keiko_process(_config(hook.url))
        with kp.client() as c:
            for name in ("A", "B", "C"):
                c.post("/api/v2/alerts", json=[_alert(name, service="x")])
            time.sleep(4)
            assert hook.posts == []
            hook.status = 200
            posts = hook.wait(3, timeout=20)
            time.sleep(3)
            assert len(hook.posts) == 3
            assert sorted(d["groupLabels"]["alertname"] for _, d in posts) == ["A", "B", "C"]
            events = httpx.get(
                f"{kp.api_url}/api/v1/streams/events/records", params={"limit": 1000}
            )
            assert events.status_code == 200


def test_amtool_manages_keiko_like_an_alertmanager(keiko_process: KeikoFactory) -> None:
    """Alertmanager's own CLI (Debian's amtool 0.25) adds and queries alerts and silences."""
    amtool = shutil.which("amtool")
    assert amtool, "amtool not found: install Debian's prometheus-alertmanager (make test does)"
    with Receiver() as hook:
        kp = keiko_process(_config(hook.url))
        url = f"--alertmanager.url={kp.api_url}"

        def run(*args: str) -> str:
            done = subprocess.run([amtool, url, *args], capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, done.stderr
            return done.stdout

        run("alert", "add", "DiskFull", "service=db", "--annotation=summary=disk at 97%")
        ((_, doc),) = hook.wait(1)  # amtool sends Go's zero time for endsAt: still firing
        assert doc["alerts"][0]["labels"] == {"alertname": "DiskFull", "service": "db"}
        assert "DiskFull" in run("alert", "query")
        sid = run("silence", "add", "service=db", "--comment=maintenance", "--author=ops").strip()
        assert sid in run("silence", "query", "-q")
        with kp.client() as c:
            got = c.get("/api/v2/alerts", params={"filter": 'service="db"'}).json()
            assert got[0]["status"]["silencedBy"] == [sid]
        run("silence", "expire", sid)
        assert sid not in run("silence", "query", "-q")
        assert sid in run("silence", "query", "--expired", "-q")


AM_FILE = """
global: {resolve_timeout: 5m, smtp_smarthost: 'localhost:25'}
templates: ['/etc/alertmanager/template/*.tmpl']
route:
  receiver: web
  group_by: [alertname]
  group_wait: 1s
  routes:
    - matchers: ['team="db"']
      receiver: db-hook
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [service]
receivers:
  - name: web
    webhook_configs: [{url: '%s/web', send_resolved: true}]
  - name: db-hook
    webhook_configs: [{url: '%s/db'}]
"""


def test_an_alertmanager_file_loads_and_routes_unchanged(
    keiko_process: KeikoFactory, tmp_path: Path
) -> None:
    with Receiver() as hook:
        path = tmp_path / "alertmanager.yml"
        path.write_text(AM_FILE % (hook.url, hook.url))
        kp = keiko_process({"alerting": {"router": {"alertmanager_config": str(path)}}})
        with kp.client() as c:
            c.post(
                "/api/v2/alerts",
                json=[
                    _alert("Slow", service="pg", team="db"),
                    _alert("Down", service="api", severity="critical"),
                    _alert("Latency", service="api", severity="warning"),  # inhibited
                ],
            )
            posts = hook.wait(2)
            time.sleep(2)
        assert sorted(p for p, _ in hook.posts) == ["/db", "/web"]
        web = next(d for p, d in posts if p == "/web")
        assert [a["labels"]["alertname"] for a in web["alerts"]] == ["Down"]
        assert "ignored by keiko" in kp.log_path.read_text()  # global, templates


def test_a_route_requests_its_remediation_in_dry_run_and_audits_it(
    keiko_process: KeikoFactory,
) -> None:
    with Receiver() as hook:
        config = _config(hook.url, remediation=["restart-cart"])
        config["alerting"]["router"]["remediation"] = {
            "actions": [
                {
                    "name": "restart-cart",
                    "type": "kubernetes",
                    "operation": "rollout_restart",
                    "namespace": "shop",
                    "workload": "cart",
                }
            ]
        }
        kp = keiko_process(config)  # dry_run is the default: no cluster needed
        with kp.client() as c:
            c.post("/api/v2/alerts", json=[_alert("CartDown", service="cart")])
            hook.wait(1)
            deadline = time.monotonic() + 20
            audit: list[dict[str, Any]] = []
            while time.monotonic() < deadline and not audit:
                page = c.get("/api/v1/streams/events/records", params={"limit": 1000}).json()
                audit = [
                    r["payload"]
                    for r in page["records"]
                    if r["payload"].get("type") == "remediation"
                ]
                time.sleep(0.5)
            listed = c.get("/api/v1/remediations").json()["remediations"]
        assert [e["status"] for e in audit] == ["dry_run"], audit
        assert audit[0]["action"] == "restart-cart"
        assert audit[0]["call"], audit[0]  # what it would have called
        assert listed and listed[0]["action"] == "restart-cart"


def test_alerting_on_the_nats_store_survives_kill_9(
    keiko_process: KeikoFactory, nats_server: NatsServer
) -> None:
    """The same guarantees on NATS JetStream: accepted alerts, engine state, the outbox and
    silences all live in JetStream (streams and KV)."""
    with Receiver() as hook:
        config = _config(hook.url, group_wait="4s")
        config["store"] = nats_store_config(nats_server)
        kp = keiko_process(config)
        with kp.client() as c:
            assert c.post("/api/v2/alerts", json=[_alert("Disk", service="db")]).status_code == 200
        kp.kill()
        assert hook.posts == []
        kp.start()
        ((_, doc),) = hook.wait(1, timeout=30)
        assert doc["alerts"][0]["labels"] == {"alertname": "Disk", "service": "db"}
        with kp.client() as c:
            assert c.post("/api/v2/alerts", json=[_alert("Net", service="db")]).status_code == 200
            hook.wait(2, timeout=30)
            time.sleep(3)
        assert len(hook.posts) == 2


def test_two_alert_replicas_notify_once_and_either_can_die(
    keiko_process: KeikoFactory, nats_server: NatsServer
) -> None:
    """`keiko alert` twice on one NATS store: one leads (routes and notifies), the other
    takes alerts as a standby and leads once the first dies; no notification twice."""
    with Receiver() as hook:
        config = _config(hook.url)
        config["store"] = nats_store_config(nats_server)
        config["alerting"]["router"]["leader_lease"] = "3s"
        replicas = []
        for name in ("alert-a", "alert-b"):
            kp = keiko_process(config, start=False, name=name)
            kp.command = "alert"
            replicas.append(kp.start())
        leader, standby = replicas
        with standby.client() as c:
            r = c.get("/api/v2/alerts")
            assert r.status_code == 503 and "standby" in r.json()["detail"]
            assert c.post("/api/v2/alerts", json=[_alert("A", service="x")]).status_code == 200
        hook.wait(1)  # the leader routed what the standby took
        # Killed in the milliseconds between the receiver's 200 and the leader's record of
        # it, the new leader would tell A again (with the same notificationId): at least
        # once. Killed after, as here, nothing is told twice.
        time.sleep(1)
        leader.kill()
        with standby.client() as c:
            assert c.post("/api/v2/alerts", json=[_alert("B", service="x")]).status_code == 200
            hook.wait(2, timeout=40)  # the standby leads within the lease and notifies
            time.sleep(4)
            assert c.get("/api/v2/alerts").status_code == 200
        names = sorted(d["groupLabels"]["alertname"] for _, d in hook.posts)
        assert names == ["A", "B"], hook.posts  # A was not told again by the new leader
        assert "leads" in standby.log_text()
