"""keiko/api/openapi.yaml is a valid OpenAPI 3.1 document, complete, and true of the server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from api_harness import event, run, serving
from fixtures.keiko import trace_request
from openapi_spec_validator import validate as validate_spec
from starlette.routing import Route

from alerting.model import rfc3339
from keiko.api.app import build_app
from keiko.api.spec import load_spec
from keiko.records import Kind, NewRecord

SPEC = load_spec()
TOKEN = "openapi-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
METHODS = {"get", "post", "put", "patch", "delete"}


def documented() -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in SPEC["paths"].items()
        for method in item
        if method in METHODS
    }


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = SPEC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def check_against_spec(path: str, response: httpx.Response) -> tuple[str, str, str]:
    """Validate ``response`` against the spec for ``path``; return what it covered."""
    method = response.request.method
    operation = SPEC["paths"][path][method.lower()]
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {path}: {status} is not documented"
    documented_response = resolve(operation["responses"][status])
    if "content" not in documented_response:  # documented as having no body
        assert response.content == b"", f"{method} {path} {status}: a body was not documented"
        return path, method, status
    media = response.headers["content-type"].split(";")[0]
    assert media in documented_response["content"], f"{method} {path}: {media} not documented"
    for header in documented_response.get("headers", {}):
        assert header in response.headers, f"{method} {path} {status}: no {header} header"
    schema = documented_response["content"][media]["schema"]
    if media == "application/json":
        validate(response.json(), schema)
    return path, method, status


def validate(instance: Any, schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(
        {**schema, "components": SPEC["components"]}, format_checker=jsonschema.FormatChecker()
    ).validate(instance)


def test_spec_is_valid_openapi_3_1() -> None:
    assert SPEC["openapi"].startswith("3.1")
    validate_spec(SPEC)


def test_every_route_is_documented_and_every_documented_path_exists(tmp_path: Path) -> None:
    async def scenario() -> set[tuple[str, str]]:
        async with serving(tmp_path, receivers=True) as keiko:  # with the components' routes
            assert keiko.api_state is not None and keiko.ctx is not None
            app = build_app(keiko.api_state, keiko.ctx.routes)
            return {
                (route.path, method)
                for route in app.routes
                if isinstance(route, Route)
                for method in route.methods or ()
                if method != "HEAD"
            }

    served = run(scenario())
    assert served - documented() == set(), "routes missing from keiko/api/openapi.yaml"
    assert documented() - served == set(), "documented in openapi.yaml but not served"


async def _exercise(keiko: Any, client: httpx.AsyncClient) -> set[tuple[str, str, str]]:
    """Requests that produce every documented response; each checked against the spec."""
    store = keiko.store
    body, _ = trace_request()
    await store.append("traces", [NewRecord(Kind.OTLP_TRACES, body, count=6)])
    await store.append("events", [event(1), event(2)])
    await store.append("custom", [NewRecord("application/x-custom", b"\x00\x01binary")])
    consumer = await store.consumer("events", "openapi-test")
    await consumer.commit(1)
    covered = set()

    async def call(
        path: str, url: str, headers: dict[str, str] | None = None, **params: Any
    ) -> httpx.Response:
        response = await client.get(
            url, params=params, headers=AUTH if headers is None else headers
        )
        covered.add(check_against_spec(path, response))
        return response

    await call("/healthz", "/healthz", {})
    await call("/readyz", "/readyz", {})
    keiko.api_state.components_started = False
    assert (await call("/readyz", "/readyz", {})).json()["reason"] == "starting"
    keiko.api_state.components_started = True
    await call("/metrics", "/metrics")
    await call("/metrics", "/metrics", {})  # 401: metrics_auth is on in this test
    assert "openapi: 3.1" in (await call("/api/v1/openapi.yaml", "/api/v1/openapi.yaml")).text
    await call("/api/v1/openapi.yaml", "/api/v1/openapi.yaml", {})
    stats = (await call("/api/v1/store/stats", "/api/v1/store/stats")).json()
    events = next(s for s in stats["streams"] if s["name"] == "events")
    group = next(g for g in events["groups"] if g["group"] == "openapi-test")
    assert group["lag_records"] == 1
    await call("/api/v1/store/stats", "/api/v1/store/stats", {})
    assert "custom" in (await call("/api/v1/streams", "/api/v1/streams")).json()["streams"]
    await call("/api/v1/streams", "/api/v1/streams", {})

    records = "/api/v1/streams/{stream}/records"
    for stream, encoding in (("traces", "otlp_json"), ("events", "json"), ("custom", "base64")):
        page = (await call(records, f"/api/v1/streams/{stream}/records", from_offset=1)).json()
        assert {r["encoding"] for r in page["records"]} == {encoding}
    await call(records, "/api/v1/streams/events/records", limit=0)
    await call(records, "/api/v1/streams/events/records", {})
    await call(records, "/api/v1/streams/nosuch/records")

    live = "/api/v1/streams/{stream}/live"
    async with client.stream(
        "GET", "/api/v1/streams/events/live", params={"from_offset": 1}, headers=AUTH
    ) as response:
        covered.add(check_against_spec(live, response))
        data = await _first_event_data(response)
        validate(
            json.loads(data),
            SPEC["paths"][live]["get"]["responses"]["200"]["content"]["text/event-stream"][
                "x-event-data"
            ],
        )
    await call(live, "/api/v1/streams/events/live", {**AUTH, "Last-Event-ID": "x"})
    await call(live, "/api/v1/streams/events/live", {})
    await call(live, "/api/v1/streams/nosuch/live")
    # The analytics stages' routes (their state is empty here: the shape is what counts).
    graph = (await call("/api/v1/servicegraph", "/api/v1/servicegraph")).json()
    assert set(graph) == {"nodes", "edges"}
    await call("/api/v1/servicegraph", "/api/v1/servicegraph", {})
    assert (await call("/api/v1/incidents", "/api/v1/incidents")).json() == {"incidents": []}
    await call("/api/v1/incidents", "/api/v1/incidents", status="open")
    assert (await call("/api/v1/incidents", "/api/v1/incidents", status="x")).status_code == 400
    await call("/api/v1/incidents", "/api/v1/incidents", {})
    alerting = Caller(client, covered)
    await _exercise_alerts(alerting)
    await _exercise_silences(alerting)
    await _exercise_remediations(alerting)
    await _exercise_alerting_auth(alerting)
    await _exercise_standby(alerting, keiko)
    return covered


async def _exercise_standby(call: Caller, keiko: Any) -> None:
    """The answers of a standby replica. A real standby needs a second process holding
    the lease (tests/alerting/test_router_e2e.py runs two); here the one replica is told
    it lost the lead, which is the state those answers read."""
    [router] = [c for c in keiko._started if type(c).__name__ == "AlertingComponent"]
    router.elector.is_leader = False
    try:
        for path, method in (
            ("/api/v2/alerts", "GET"),
            ("/api/v2/alerts/groups", "GET"),
            ("/api/v1/remediations", "GET"),
            ("/api/v1/remediations/{request_id}/approve", "POST"),
            ("/api/v1/remediations/{request_id}/reject", "POST"),
        ):
            url = path.replace("{request_id}", "any")
            kwargs: dict[str, Any] = {"json": {"by": "ana"}} if method == "POST" else {}
            answer = await call(method, path, url, **kwargs)
            assert answer.status_code == 503 and "standby" in answer.json()["detail"], url
            assert answer.headers["retry-after"] == "5"
    finally:
        router.elector.is_leader = True


# The alerting component as the test configures it: two alert groups (by alertname) each
# asking for an action that needs approval (a dry run: nothing is called), and a small
# request limit so that a 413 needs no 4 MiB body.
ALERTING = {
    "max_request_bytes": 4096,
    "route": {
        "receiver": "default",
        "group_by": ["alertname"],
        "group_wait": "100ms",
        "group_interval": "1h",
        "repeat_interval": "4h",
        "remediation": ["restart"],
    },
    "remediation": {
        "actions": [
            {
                "name": "restart",
                "type": "webhook",
                "url": "http://127.0.0.1:9/never-called",
                "approval": True,
                "verify_after": 0,
            }
        ]
    },
}


@dataclass
class Caller:
    """Sends requests with the token unless told otherwise; checks each against the spec."""

    client: httpx.AsyncClient
    covered: set[tuple[str, str, str]]

    async def __call__(
        self,
        method: str,
        path: str,
        url: str,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        response = await self.client.request(
            method, url, headers=AUTH if headers is None else headers, **kwargs
        )
        self.covered.add(check_against_spec(path, response))
        return response

    async def until(self, path: str, url: str, done: Callable[[Any], bool], **params: Any) -> Any:
        """GET ``url`` until ``done(body)``: the engine and the outbox work asynchronously."""
        deadline = time.monotonic() + 10
        while True:
            body = (await self("GET", path, url, params=params)).json()
            if done(body):
                return body
            assert time.monotonic() < deadline, f"{url}: still {body}"
            await asyncio.sleep(0.05)


def _alert(name: str) -> dict[str, Any]:
    return {"labels": {"alertname": name, "service": "cart"}, "annotations": {"summary": name}}


async def _exercise_alerts(call: Caller) -> None:
    alerts, groups = "/api/v2/alerts", "/api/v2/alerts/groups"
    ok = await call("POST", alerts, alerts, json=[_alert("CartDown"), _alert("CartSlow")])
    assert ok.status_code == 200
    bad = await call("POST", alerts, alerts, json=[_alert("Fine"), {"labels": {"n": 1}}])
    assert bad.status_code == 400 and bad.json()["detail"].startswith("alerts[1].labels.n")
    assert (await call("POST", alerts, alerts, content=b"{not json")).status_code == 400
    big = [_alert("Big" + "x" * 100) for _ in range(40)]
    assert (await call("POST", alerts, alerts, json=big)).status_code == 413
    shown = await call.until(alerts, alerts, lambda body: len(body) == 2)
    assert {a["labels"]["alertname"] for a in shown} == {"CartDown", "CartSlow"}  # not Fine
    assert shown[0]["receivers"] == [{"name": "default"}]
    one = await call("GET", alerts, alerts, params={"filter": 'alertname="CartDown"'})
    assert [a["labels"]["alertname"] for a in one.json()] == ["CartDown"]
    for params in ({"filter": "alertname=~("}, {"active": "maybe"}, {"receiver": "("}):
        assert (await call("GET", alerts, alerts, params=params)).status_code == 400, params
    listed = (await call("GET", groups, groups)).json()
    assert sorted(g["labels"]["alertname"] for g in listed) == ["CartDown", "CartSlow"]
    assert (await call("GET", groups, groups, params={"filter": "x=~("})).status_code == 400
    await _exercise_alert_actions(call, {a["labels"]["alertname"]: a for a in shown})


async def _exercise_alert_actions(call: Caller, shown: dict[str, Any]) -> None:
    ack, res = "/api/v1/alerts/{fingerprint}/ack", "/api/v1/alerts/{fingerprint}/resolve"
    down, slow = shown["CartDown"]["fingerprint"], shown["CartSlow"]["fingerprint"]
    url = f"/api/v1/alerts/{down}/ack"
    assert (await call("POST", ack, url, json={"comment": "who?"})).status_code == 400
    accepted = await call("POST", ack, url, json={"by": "ana", "comment": "on it"})
    assert accepted.status_code == 202 and accepted.json() == {
        "fingerprint": down,
        "accepted": "ack",
    }
    assert (await call("POST", ack, "/api/v1/alerts/0000/ack", json={"by": "a"})).status_code == 404
    filtered = {"filter": 'alertname="CartDown"'}
    (acked,) = await call.until(
        "/api/v2/alerts", "/api/v2/alerts", lambda b: "acknowledged" in b[0], **filtered
    )
    assert acked["acknowledged"]["by"] == "ana"
    url = f"/api/v1/alerts/{slow}/resolve"
    assert (await call("POST", res, url, content=b"[]")).status_code == 400
    assert (await call("POST", res, url)).status_code == 202  # no body needed
    assert (await call("POST", res, "/api/v1/alerts/0000/resolve")).status_code == 404
    left = await call.until("/api/v2/alerts", "/api/v2/alerts", lambda b: len(b) == 1)
    assert left[0]["fingerprint"] == down


async def _exercise_silences(call: Caller) -> None:
    silences, one = "/api/v2/silences", "/api/v2/silence/{id}"
    now = time.time()
    silence = {
        "matchers": [{"name": "alertname", "value": "CartDown", "isRegex": False}],
        "startsAt": rfc3339(now - 1),
        "endsAt": rfc3339(now + 3600),
        "createdBy": "ana",
        "comment": "maintenance",
    }
    sid = (await call("POST", silences, silences, json=silence)).json()["silenceID"]
    everything = {"name": "alertname", "value": ".*", "isRegex": True}  # would mute all
    assert (
        await call("POST", silences, silences, json={**silence, "matchers": [everything]})
    ).status_code == 400
    unknown = await call("POST", silences, silences, json={**silence, "id": "nosuch"})
    assert unknown.status_code == 404
    listed = await call("GET", silences, silences, params={"filter": 'alertname="CartDown"'})
    assert [s["id"] for s in listed.json()] == [sid]
    assert (await call("GET", silences, silences, params={"filter": "a=~("})).status_code == 400
    (alert,) = (await call("GET", "/api/v2/alerts", "/api/v2/alerts")).json()
    assert alert["status"] == {"state": "suppressed", "silencedBy": [sid], "inhibitedBy": []}
    got = await call("GET", one, f"/api/v2/silence/{sid}")
    assert got.json()["status"]["state"] == "active"
    assert (await call("GET", one, "/api/v2/silence/nosuch")).status_code == 404
    assert (await call("DELETE", one, f"/api/v2/silence/{sid}")).status_code == 200
    assert (await call("DELETE", one, f"/api/v2/silence/{sid}")).status_code == 400  # expired
    assert (await call("DELETE", one, "/api/v2/silence/nosuch")).status_code == 404
    status = (await call("GET", "/api/v2/status", "/api/v2/status")).json()
    assert status["cluster"]["status"] == "ready" and "remediation" in status["config"]["original"]
    receivers = await call("GET", "/api/v2/receivers", "/api/v2/receivers")
    assert receivers.json() == [{"name": "default"}]


async def _exercise_remediations(call: Caller) -> None:
    listing = "/api/v1/remediations"
    approve = "/api/v1/remediations/{request_id}/approve"
    reject = "/api/v1/remediations/{request_id}/reject"
    body = await call.until(listing, listing, lambda b: len(b["pending"]) == 2)
    first, second = (r["request_id"] for r in body["pending"])
    assert {r["status"] for r in body["remediations"]} == {"awaiting_approval"}
    assert (await call("GET", listing, listing, params={"status": "x"})).status_code == 400
    url = f"{listing}/{first}/approve"
    assert (await call("POST", approve, url, json={"by": ""})).status_code == 400
    assert (
        await call("POST", approve, f"{listing}/nosuch/approve", json={"by": "a"})
    ).status_code == 404
    done = await call("POST", approve, url, json={"by": "ana", "comment": "go"})
    assert done.json()["status"] == "dry_run" and done.json()["decided_by"] == "ana"
    assert (await call("POST", approve, url, json={"by": "bo"})).status_code == 409
    url = f"{listing}/{second}/reject"
    assert (await call("POST", reject, url, content=b"nope")).status_code == 400
    assert (
        await call("POST", reject, f"{listing}/nosuch/reject", json={"by": "a"})
    ).status_code == 404
    assert (await call("POST", reject, url, json={"by": "bo"})).json()["status"] == "rejected"
    assert (await call("POST", reject, url, json={"by": "bo"})).status_code == 409
    after = (await call("GET", listing, listing, params={"status": "rejected"})).json()
    assert [r["request_id"] for r in after["remediations"]] == [second] and after["pending"] == []


async def _exercise_alerting_auth(call: Caller) -> None:
    """Every alerting route is behind the token (401 without it)."""
    for path, item in SPEC["paths"].items():
        if not path.startswith(("/api/v2/", "/api/v1/alerts/", "/api/v1/remediations")):
            continue
        url = path.format(id="x", fingerprint="x", request_id="x")
        for method in METHODS & set(item):
            assert (await call(method.upper(), path, url, {})).status_code == 401, (method, url)


async def _first_event_data(response: httpx.Response) -> str:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            return line.removeprefix("data: ")
    raise AssertionError("no event")


def test_real_responses_match_the_documented_schemas(tmp_path: Path) -> None:
    overrides = {
        "api": {"auth": {"bearer_tokens": [TOKEN]}, "metrics_auth": True},
        "alerting": {"router": ALERTING},
    }

    async def scenario() -> set[tuple[str, str, str]]:
        async with serving(tmp_path, overrides) as keiko:
            assert keiko.api_url is not None
            async with httpx.AsyncClient(base_url=keiko.api_url, timeout=10) as client:
                return await _exercise(keiko, client)

    covered = run(scenario())
    every_response = {
        (path, method.upper(), status)
        for path, item in SPEC["paths"].items()
        for method, operation in item.items()
        if method in METHODS
        for status in operation["responses"]
    }
    assert every_response - covered == set(), "documented responses the test never saw"


@pytest.mark.parametrize("path", sorted(SPEC["paths"]))
def test_every_operation_is_described(path: str) -> None:
    for method, operation in SPEC["paths"][path].items():
        if method in METHODS:
            assert operation.get("summary") and operation.get("operationId"), (path, method)
            assert operation["responses"], (path, method)
