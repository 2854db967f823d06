"""`keiko demo`: fault specs, the CLI's failure modes, and real runs against `keiko run`.

The end-to-end tests run `keiko demo` as a subprocess against a real `keiko run` and then
check what keiko stored through its own API, independently of the demo's own report: every
service's spans, parent/child links across services, the injected fault, metrics and logs.
"""

from __future__ import annotations

import json
import random
import ssl
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.certs import make_certs
from fixtures.keiko import KeikoFactory, KeikoProcess, free_port

from keiko.cli import main
from keiko.demo import FAULT_TARGETS, SERVICES
from keiko.demo.faults import Fault, FaultPlan, InjectedFault, parse_fault

ROOT = Path(__file__).resolve().parent.parent

DEMO = [sys.executable, "-m", "keiko.cli", "demo"]
SERVER, CLIENT, STATUS_ERROR = 2, 3, 2
# caller -> callee: the calls the shop makes, each of which must link two services' spans.
CALLS = {
    ("frontend", "cart"),
    ("frontend", "checkout"),
    ("frontend", "llm-agent"),
    ("checkout", "cart"),
    ("checkout", "payment"),
    ("llm-agent", "cart"),
}
TOKEN = "demo-s3cret"

# -- fault specs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("payment:errors=0.3", ("payment", Fault(error_rate=0.3))),
        ("cart:latency=200ms", ("cart", Fault(latency=0.2))),
        ("redis:latency=1.5", ("redis", Fault(latency=1.5))),
        ("model-api: latency=1s, errors=0.1, after=10s", ("model-api", Fault(1.0, 0.1, 10.0))),
    ],
)
def test_fault_specs_parse(spec: str, expected: tuple[str, Fault]) -> None:
    assert parse_fault(spec, FAULT_TARGETS) == expected


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("payment", "expected SERVICE:"),
        ("shop:errors=0.1", "unknown service 'shop'"),
        ("cart:errors=1.5", "between 0 and 1"),
        ("cart:latency=fast", "not a duration"),
        ("cart:latency=-1", "not a duration"),
        ("cart:speed=2", "not latency="),
        ("cart:latency=1s,latency=2s", "given twice"),
        ("cart:after=5s", "give latency="),
    ],
)
def test_bad_fault_specs_say_what_is_wrong(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_fault(spec, FAULT_TARGETS)


def test_fault_plan_fails_the_given_share_and_adds_latency() -> None:
    plan = FaultPlan({"payment": Fault(error_rate=0.3)}, rng=random.Random(7))
    failures = 0
    for _ in range(400):
        try:
            plan.apply("payment")
        except InjectedFault:
            failures += 1
    assert 80 <= failures <= 160  # 30% of 400, with room for chance
    plan.apply("cart")  # no fault there: returns at once
    started = time.perf_counter()
    with pytest.raises(InjectedFault):
        FaultPlan({"cart": Fault(latency=0.05, error_rate=1.0)}).apply("cart")
    assert time.perf_counter() - started >= 0.05  # failing requests are slow too


def test_fault_plan_starts_late_and_can_be_switched() -> None:
    plan = FaultPlan({"cart": Fault(error_rate=1.0, after=60)})
    assert plan.active("cart") is None
    plan.apply("cart")  # not yet in force
    plan.set("cart", Fault(error_rate=1.0))
    with pytest.raises(InjectedFault):
        plan.apply("cart")
    plan.set("cart", None)
    plan.apply("cart")


# -- the CLI's failure modes (in-process: no keiko needed) -------------------------------


def test_unreachable_keiko_is_named_with_how_to_start_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = f"http://127.0.0.1:{free_port()}"
    assert main(["demo", "--api", api, "--duration", "1"]) == 1
    out = capsys.readouterr().out
    assert f"{api}/api/v1/store/stats" in out and "make run" in out and "keiko run" in out


@pytest.mark.parametrize(
    "args",
    [
        ["--fault", "nowhere:errors=0.5"],
        ["--rate", "0"],
        ["--duration", "soon"],
        ["--protocol", "udp"],
    ],
)
def test_bad_arguments_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", *args])
    assert exit_info.value.code == 2
    assert "keiko demo: error: argument" in capsys.readouterr().err


def test_two_faults_on_one_service_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--fault", "cart:errors=0.1", "--fault", "cart:latency=1s"]) == 2
    assert "combine them" in capsys.readouterr().err


def test_help_explains_faults_and_gives_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    out = capsys.readouterr().out
    assert "SERVICE:latency=200ms" in out and "examples:" in out and "Exit status" in out


# -- against a real keiko ----------------------------------------------------------------


def run_demo(kp: KeikoProcess, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`keiko demo` as a subprocess, pointed at ``kp``'s API."""
    return subprocess.run(
        [*DEMO, "--api", kp.api_url, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def stored(kp: KeikoProcess, stream: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(service.name, resource block) of every OTLP batch in ``stream``, via the API."""
    key = {"traces": "resourceSpans", "metrics": "resourceMetrics", "logs": "resourceLogs"}
    offset = 1
    with kp.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        while True:
            page = client.get(
                f"/api/v1/streams/{stream}/records", params={"from_offset": offset, "limit": 1000}
            ).json()
            if not page["records"]:
                return
            for record in page["records"]:
                for block in record["payload"].get(key[stream], []):
                    attrs = {a["key"]: a["value"] for a in block["resource"]["attributes"]}
                    yield attrs["service.name"]["stringValue"], block
            offset = page["next_offset"]


def stored_spans(kp: KeikoProcess) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """(trace id, span id) -> (service, span) of every stored span."""
    return {
        (span["traceId"], span["spanId"]): (service, span)
        for service, block in stored(kp, "traces")
        for scope in block["scopeSpans"]
        for span in scope["spans"]
    }


def attribute(span: dict[str, Any], key: str) -> Any:
    for a in span.get("attributes", []):
        if a["key"] == key:
            return next(iter(a["value"].values()))
    return None


def test_demo_over_grpc_stores_linked_traces_metrics_logs_and_the_fault(
    keiko_process: KeikoFactory,
) -> None:
    kp = keiko_process()
    result = run_demo(
        kp,
        "--otlp-endpoint",
        f"http://{kp.otlp_grpc}",
        "--duration",
        "3",
        "--rate",
        "20",
        "--fault",
        "payment:errors=0.5",
        "--json",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] and not summary["problems"]
    for signal, counts in summary["exported"].items():
        assert counts["acked"] == counts["sent"] > 0, signal

    spans = stored_spans(kp)
    assert {service for service, _ in spans.values()} == set(SERVICES)
    assert summary["received"]["items"]["traces"] == len(spans)
    links = set()
    for (trace_id, _), (service, span) in spans.items():
        parent = spans.get((trace_id, span.get("parentSpanId", "")))
        if parent and parent[0] != service:
            assert (parent[1]["kind"], span["kind"]) == (CLIENT, SERVER)
            links.add((parent[0], service))
    assert links == CALLS

    # The fault: about half of payment's server spans failed; cart's never did.
    def server_status(name: str) -> list[bool]:
        return [
            span.get("status", {}).get("code") == STATUS_ERROR
            for service, span in spans.values()
            if service == name and span["kind"] == SERVER
        ]

    payment = server_status("payment")
    assert 0 < sum(payment) < len(payment)
    assert not any(server_status("cart"))

    chats = [span for service, span in spans.values() if span["name"].startswith("chat ")]
    assert chats and all(attribute(s, "gen_ai.request.model") == "gpt-4o-mini" for s in chats)
    assert all(int(attribute(s, "gen_ai.usage.input_tokens")) > 0 for s in chats)

    metrics: dict[str, set[str]] = defaultdict(set)
    for service, block in stored(kp, "metrics"):
        metrics[service] |= {m["name"] for sm in block["scopeMetrics"] for m in sm["metrics"]}
    assert all("http.server.request.duration" in metrics[s] for s in SERVICES)
    assert "gen_ai.client.token.usage" in metrics["llm-agent"]

    logs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for service, block in stored(kp, "logs"):
        logs[service] += [r for sl in block["scopeLogs"] for r in sl["logRecords"]]
    assert set(logs) == set(SERVICES)
    assert all(r.get("traceId") for records in logs.values() for r in records)
    assert any(r["severityText"] == "ERROR" for r in logs["payment"])


def test_demo_over_http_with_a_token_and_refused_without(keiko_process: KeikoFactory) -> None:
    kp = keiko_process({"receivers": {"otlp": {"auth": {"bearer_tokens": [TOKEN]}}}})
    result = run_demo(
        kp,
        "--protocol",
        "http",
        "--otlp-endpoint",
        kp.otlp_http,
        "--token",
        TOKEN,
        "--duration",
        "2",
        "--fault",
        "cart:latency=20ms",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "OK: keiko acknowledged and stored everything" in out
    assert all(f"\n  {service:<10}" in out for service in SERVICES)  # the services table
    assert "A trace:" in out and " in / " in out  # the tokens of the chat spans
    assert "<- fault latency=20ms" in out

    # The receiver wants the token: without it every export is refused, and the demo says so.
    refused = run_demo(kp, "--protocol", "http", "--otlp-endpoint", kp.otlp_http, "--duration", "1")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "FAILED:" in refused.stdout and "not acknowledged" in refused.stdout
    assert "401" in refused.stdout  # the exporter's own words, kept in the digest


def test_demo_over_mutual_tls_with_a_ca_or_insecure(
    keiko_process: KeikoFactory, tmp_path: Path
) -> None:
    certs = make_certs(tmp_path / "certs")
    tls = {
        "cert_file": str(certs.server_cert),
        "key_file": str(certs.server_key),
        "client_ca_file": str(certs.ca),
    }
    verify = ssl.create_default_context(cafile=str(certs.ca))
    verify.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    kp = keiko_process(
        {"api": {"tls": tls}, "receivers": {"otlp": {"grpc": {"tls": tls}, "http": {"tls": tls}}}},
        verify=verify,
    )
    client_cert = ["--client-cert", str(certs.client_cert), "--client-key", str(certs.client_key)]
    grpc = run_demo(
        kp,
        "--otlp-endpoint",
        f"https://{kp.otlp_grpc}",
        "--ca",
        str(certs.ca),
        *client_cert,
        "--duration",
        "1",
        "--json",
    )
    assert grpc.returncode == 0, grpc.stdout + grpc.stderr
    assert json.loads(grpc.stdout)["received"]["items"]["traces"] > 0

    # --insecure skips verifying keiko's certificate (OTLP/HTTP and the API) ...
    http = run_demo(
        kp,
        "--protocol",
        "http",
        "--otlp-endpoint",
        kp.otlp_http,
        "--insecure",
        *client_cert,
        "--duration",
        "1",
        "--json",
    )
    assert http.returncode == 0, http.stdout + http.stderr
    # ... which gRPC cannot do: the demo says so instead of failing later.
    refused = run_demo(kp, "--otlp-endpoint", f"https://{kp.otlp_grpc}", "--insecure")
    assert refused.returncode == 2 and "--insecure does not work with gRPC" in refused.stderr


def test_demo_latency_fault_is_reported_as_an_anomaly_of_the_faulty_service(
    keiko_process: KeikoFactory,
) -> None:
    """The detectors learn the shop's metrics for 35 s, then cart gets 200 ms slower: the
    demo shows an anomaly of cart's latency that began after the fault, and none before, and
    the incident keiko opened names cart as the most likely cause, and keiko's alerting
    routed it (deploy/keiko-demo.yaml) into one notification at the demo's webhook."""
    demo_config = yaml.safe_load((ROOT / "deploy" / "keiko-demo.yaml").read_text())
    hook = f"127.0.0.1:{free_port()}"
    receivers = demo_config["alerting"]["router"]["receivers"]
    receivers[1]["webhook_configs"][0]["url"] = f"http://{hook}/keiko-demo"
    kp = keiko_process(demo_config)
    started = time.time()
    result = run_demo(
        kp,
        "--otlp-endpoint",
        f"http://{kp.otlp_grpc}",
        "--duration",
        "45",
        "--fault",
        "cart:latency=200ms,after=35s",
        "--receiver",
        hook,
        "--json",
        timeout=150,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    anomalies = json.loads(result.stdout)["received"]["anomalies"]
    latency = [
        a
        for a in anomalies
        if a["service"] == "cart" and a["metric"].startswith("http.server.request.duration:p")
    ]
    assert latency, anomalies
    fault_at = started + 35
    # Points carry the SDK's export time; allow for the demo's start-up before its clock.
    assert all(a["time_unix_nano"] / 1e9 > fault_at - 2 for a in latency), latency
    assert all(a["score"] >= a["threshold"] for a in latency)
    slow = [a for a in latency if a["value"] > 0.15 and a["value"] > a["expected_range"][1]]
    assert slow, latency  # the injected 200 ms, above what was expected
    # keiko opened an incident from these anomalies and ranked cart first, with evidence:
    # cart's own metrics and example traces through it.
    (incident,) = json.loads(result.stdout)["received"]["incidents"]
    best = incident["root_causes"][0]
    assert best["service"] == "cart", incident["root_causes"]
    kinds = {e["kind"] for e in best["evidence"]}
    assert "metric" in kinds and "traces" in kinds, best["evidence"]
    assert "most likely cause: cart" in incident["summary"]
    # ... and that incident reached the demo's webhook as one notification with its evidence.
    (note,) = json.loads(result.stdout)["received"]["notifications"]
    assert note["receiver"] == "keiko-demo" and note["status"] == "firing"
    (evidence,) = note["evidence"]
    assert evidence["id"] == incident["id"]
    assert evidence["root_causes"][0]["service"] == "cart", evidence
    assert evidence["traces"], evidence
