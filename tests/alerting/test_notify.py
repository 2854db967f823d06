"""The notification channels against real peers: a local HTTP server capturing webhook,
Slack- and PagerDuty-shaped JSON, an aiosmtpd server receiving e-mail sent by apprise,
apprise's json:// posting to the HTTP server; the error tree (400 permanent, 5xx/429/
refused retryable with Retry-After); partial success across a receiver's configs;
send_resolved; templates; Alertmanager receiver mapping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.notify_peers import HttpSink, SmtpSink

from alerting.delivery import Permanent, Retryable, Target
from alerting.model import Notification, OutboxItem
from alerting.notify import (
    NotifyOptions,
    ReceiverConfig,
    Templates,
    receiver_targets,
    receivers_from_alertmanager,
    render,
)
from alerting.notify.build import ReceiverTarget

EVIDENCE = [
    {
        "id": "inc-7",
        "summary": "most likely cause: payments (p99 latency 4x baseline)",
        "root_causes": [
            {
                "service": "payments",
                "score": 0.8731,
                "instance": "payments-6d9f",
                "path": ["frontend", "checkout", "payments"],
                "evidence": [
                    {"kind": "metric", "summary": "p99 latency 4x baseline", "weight": 0.5},
                    {
                        "kind": "error_origin",
                        "summary": "errors start here",
                        "weight": 0.3,
                        "trace_ids": ["4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"],
                    },
                ],
            },
            {"service": "db", "score": 0.41, "path": ["checkout", "db"], "evidence": []},
        ],
        "links": [{"title": "Service map", "url": "http://grafana.local/d/keiko-map"}],
    }
]


def notification(status: str = "firing", alerts: int = 2) -> Notification:
    """A notification of ``alerts`` alerts sharing alertname/severity, with evidence."""
    return Notification(
        id="n-1",
        receiver="ops",
        group_key='{}:{alertname="HighLatency"}',
        group_labels={"alertname": "HighLatency"},
        status=status,
        alerts=[
            {
                "status": status,
                "labels": {"alertname": "HighLatency", "severity": "page", "pod": f"p{k}"},
                "annotations": {"summary": "checkout is slow"},
                "startsAt": "2026-11-24T06:00:00.000Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://keiko.local/graph",
                "fingerprint": f"f{k}",
            }
            for k in range(alerts)
        ],
        evidence=EVIDENCE,
        created=time.time(),
    )


def outbox_item(n: Notification, item_id: str = "i-1") -> OutboxItem:
    return OutboxItem(item_id, "notification", n.receiver, n.to_json(), time.time())


OPTIONS = NotifyOptions(
    timeout=2.0,
    external_url="http://keiko.local",
    dashboards_url="http://grafana.local/d/keiko-overview",
)


def target(doc: dict[str, Any], options: NotifyOptions = OPTIONS) -> Target:
    return receiver_targets([ReceiverConfig.model_validate({"name": "ops", **doc})], options)["ops"]


def deliver(t: Target, n: Notification, item_id: str = "i-1") -> None:
    async def once() -> None:
        try:
            await t.deliver(outbox_item(n, item_id))
        finally:
            assert isinstance(t, ReceiverTarget)
            await t.close()

    asyncio.run(once())


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    s = HttpSink().start()
    yield s
    s.stop()


def test_webhook_sends_alertmanager_v4_json_with_evidence(sink: HttpSink) -> None:
    deliver(
        target({"webhook_configs": [{"url": f"{sink.url}/hook", "max_alerts": 1}]}), notification()
    )
    [doc] = sink.received("/hook")
    assert doc["version"] == "4"
    assert doc["groupKey"] == '{}:{alertname="HighLatency"}'
    assert doc["status"] == "firing" and doc["receiver"] == "ops"
    assert doc["groupLabels"] == {"alertname": "HighLatency"}
    assert doc["commonLabels"] == {"alertname": "HighLatency", "severity": "page"}
    assert doc["commonAnnotations"] == {"summary": "checkout is slow"}
    assert doc["externalURL"] == "http://keiko.local"
    assert len(doc["alerts"]) == 1 and doc["truncatedAlerts"] == 1  # max_alerts
    assert doc["alerts"][0]["labels"]["pod"] == "p0"
    assert doc["evidence"] == EVIDENCE


def test_slack_message_carries_title_evidence_and_links(sink: HttpSink) -> None:
    deliver(
        target({"slack_configs": [{"api_url": f"{sink.url}/slack", "channel": "#ops"}]}),
        notification(),
    )
    [doc] = sink.received("/slack")
    assert doc["channel"] == "#ops"
    assert doc["text"] == "[firing:2] HighLatency: checkout is slow"
    header, section, context = doc["blocks"]
    assert header["type"] == "header" and header["text"]["text"] == doc["text"]
    body = section["text"]["text"]
    assert "1. payments (payments-6d9f), score 0.87" in body
    assert "4bf92f3577b34da6a3ce929d0e0e4736" in body
    assert "frontend -> checkout -> payments" in body
    links = context["elements"][0]["text"]
    assert "<http://grafana.local/d/keiko-map|Service map>" in links
    assert "<http://grafana.local/d/keiko-overview|dashboard>" in links


def test_pagerduty_events_v2_trigger_and_resolve(sink: HttpSink) -> None:
    t = target(
        {
            "pagerduty_configs": [
                {"routing_key": "R0UT1NGKEY", "url": f"{sink.url}/pd", "severity": "critical"}
            ]
        }
    )
    deliver(t, notification(), "i-1")
    deliver(t, notification("resolved"), "i-2")
    trigger, resolve = sink.received("/pd")
    assert trigger["routing_key"] == "R0UT1NGKEY"
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == '{}:{alertname="HighLatency"}'
    payload = trigger["payload"]
    assert payload["summary"].startswith("[firing:2] HighLatency")
    assert payload["source"] == "keiko" and payload["severity"] == "critical"
    assert payload["custom_details"]["evidence"] == EVIDENCE
    assert {"href": "http://grafana.local/d/keiko-map", "text": "Service map"} in trigger["links"]


def test_email_goes_through_apprise_to_a_real_smtp_server() -> None:
    with SmtpSink() as smtp:
        t = target(
            {
                "email_configs": [
                    {
                        "to": "ops@example.org",
                        "from": "keiko@example.org",
                        "smarthost": f"127.0.0.1:{smtp.port}",
                        "require_tls": False,
                    }
                ]
            }
        )
        deliver(t, notification())
        [message] = smtp.messages
        assert smtp.mailbox.envelopes == [("keiko@example.org", ["ops@example.org"])]
    assert message["Subject"] == "[firing:2] HighLatency: checkout is slow"
    parts = [p.get_payload(decode=True) for p in message.walk() if not p.is_multipart()]
    text = "".join(p.decode() for p in parts if isinstance(p, bytes))
    assert "payments (payments-6d9f), score 0.87" in text
    assert "p99 latency 4x baseline" in text and "http://grafana.local/d/keiko-map" in text


def test_apprise_url_channel_posts_through_apprise(sink: HttpSink) -> None:
    url = sink.url.replace("http://", "json://") + "/apprise"
    deliver(target({"apprise_configs": [{"url": url}]}), notification())
    [doc] = sink.received("/apprise")
    assert doc["title"] == "[firing:2] HighLatency: checkout is slow"
    assert "Root-cause candidates:" in doc["message"]


def test_http_errors_map_to_permanent_and_retryable(sink: HttpSink) -> None:
    sink.answer("/400", 400)
    sink.answer("/503", 503, {"retry-after": "7"})
    sink.answer("/429", 429)
    n = notification()
    with pytest.raises(Permanent, match="webhook_configs\\[0\\] of receiver ops: HTTP 400"):
        deliver(target({"webhook_configs": [{"url": f"{sink.url}/400"}]}), n)
    with pytest.raises(Retryable) as caught:
        deliver(target({"webhook_configs": [{"url": f"{sink.url}/503"}]}), n)
    assert caught.value.retry_after == 7.0
    with pytest.raises(Retryable, match="HTTP 429"):
        deliver(target({"slack_configs": [{"api_url": f"{sink.url}/429"}]}), n)
    sink.stop()
    with pytest.raises(Retryable, match="ConnectError"):
        deliver(target({"webhook_configs": [{"url": f"{sink.url}/ok"}]}), n)


def test_apprise_failures_retryable_bad_url_permanent() -> None:
    with SmtpSink() as smtp:
        port = smtp.port
    closed = {
        "to": "a@example.org",
        "from": "b@example.org",
        "smarthost": f"127.0.0.1:{port}",
        "require_tls": False,
    }
    with pytest.raises(Retryable, match="email_configs\\[0\\] of receiver ops"):
        deliver(target({"email_configs": [closed]}), notification())
    with pytest.raises(Permanent, match="apprise does not accept the URL"):
        deliver(target({"apprise_configs": [{"url": "nosuchscheme://x"}]}), notification())


def test_partial_success_is_not_resent(sink: HttpSink) -> None:
    sink.answer("/b", 503)
    t = target({"webhook_configs": [{"url": f"{sink.url}/a"}, {"url": f"{sink.url}/b"}]})
    with pytest.raises(Retryable, match="webhook_configs\\[1\\]"):
        deliver(t, notification())
    sink.answer("/b", 200)
    deliver(t, notification())  # the outbox's retry of the same item
    assert len(sink.received("/a")) == 1 and len(sink.received("/b")) == 1
    deliver(t, notification(), "i-2")  # a new item goes to both
    assert len(sink.received("/a")) == 2 and len(sink.received("/b")) == 2


def test_send_resolved_false_skips_resolved(sink: HttpSink) -> None:
    t = target(
        {
            "webhook_configs": [{"url": f"{sink.url}/hook", "send_resolved": False}],
            "slack_configs": [{"api_url": f"{sink.url}/slack", "send_resolved": True}],
        }
    )
    deliver(t, notification("resolved"))
    assert sink.received("/hook") == [] and len(sink.received("/slack")) == 1


def test_templates_use_fixed_variables_never_format(sink: HttpSink) -> None:
    templates = {"title": "$alertname for {receiver.__class__} $$5", "body": "${alert_count} x"}
    t = target({"slack_configs": [{"api_url": f"{sink.url}/s"}], "templates": templates})
    deliver(t, notification())
    [doc] = sink.received("/s")
    assert doc["text"] == "HighLatency for {receiver.__class__} $5"
    assert doc["blocks"][1]["text"]["text"] == "2 x"
    with pytest.raises(ValueError, match="unknown variable\\(s\\) secret; use status"):
        Templates(title="$secret")
    with pytest.raises(ValueError, match="not valid"):
        Templates(body="${receiver.__class__}")


def test_global_templates_apply_under_receiver_ones() -> None:
    options = NotifyOptions(templates=Templates(title="G $status", body="GB"))
    own = ReceiverTarget(ReceiverConfig(name="a", templates=Templates(body="own")), options)
    rendered = own.render(notification())
    assert (rendered.title, rendered.body) == ("G firing", "own")


def test_default_body_without_evidence_is_readable() -> None:
    n = notification()
    n.evidence = []
    r = render(n)
    assert "No root-cause evidence attached." in r.body
    assert "Labels: alertname=HighLatency, severity=page" in r.body
    assert r.links == [("source", "http://keiko.local/graph")]


def test_alertmanager_receivers_map_or_refuse(tmp_path: Path) -> None:
    key = tmp_path / "pd.key"
    key.write_text("FILEKEY\n")
    [r] = receivers_from_alertmanager(
        [
            {
                "name": "team",
                "webhook_configs": [{"url": "http://x/h", "send_resolved": False}],
                "slack_configs": [{"api_url": "http://x/s", "channel": "#a"}],
                "pagerduty_configs": [{"routing_key_file": str(key), "severity": "warning"}],
                "email_configs": [
                    {
                        "to": "a@x.org",
                        "from": "k@x.org",
                        "smarthost": "mail:587",
                        "auth_username": "k",
                        "auth_password": "pw",
                    }
                ],
            }
        ]
    )
    assert r.name == "team" and not r.webhook_configs[0].send_resolved
    assert r.slack_configs[0].channel == "#a"
    assert r.pagerduty_configs[0].routing_key.resolve() == "FILEKEY"
    assert r.email_configs[0].from_ == "k@x.org" and r.email_configs[0].require_tls
    with pytest.raises(ValueError, match=r"receiver 'o': opsgenie_configs .*use apprise_configs"):
        receivers_from_alertmanager([{"name": "o", "opsgenie_configs": [{"api_key": "k"}]}])
    with pytest.raises(ValueError, match=r"receiver 's': slack_configs\[0\].title .*templates"):
        receivers_from_alertmanager(
            [{"name": "s", "slack_configs": [{"api_url": "u", "title": "t"}]}]
        )
    with pytest.raises(ValueError, match="routing_key"):
        receivers_from_alertmanager([{"name": "p", "pagerduty_configs": [{"service_key": "k"}]}])
    with pytest.raises(ValueError, match="has no from"):
        receivers_from_alertmanager(
            [{"name": "e", "email_configs": [{"to": "a@x", "smarthost": "m:25"}]}]
        )


def test_duplicate_receiver_names_are_refused() -> None:
    same = [ReceiverConfig(name="a"), ReceiverConfig(name="a")]
    with pytest.raises(ValueError, match="receiver 'a' is defined twice"):
        receiver_targets(same, OPTIONS)
