"""keiko/api/openapi.yaml is a valid OpenAPI 3.1 document, complete, and true of the server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from api_harness import event, run, serving
from fixtures.keiko import trace_request
from openapi_spec_validator import validate as validate_spec
from starlette.routing import Route

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
    return covered


async def _first_event_data(response: httpx.Response) -> str:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            return line.removeprefix("data: ")
    raise AssertionError("no event")


def test_real_responses_match_the_documented_schemas(tmp_path: Path) -> None:
    overrides = {"api": {"auth": {"bearer_tokens": [TOKEN]}, "metrics_auth": True}}

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
