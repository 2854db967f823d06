"""`keiko run` as a real process: start-up, probes, signals, reload, store commands."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.keiko import KEIKO, KeikoFactory, free_port, post_traces, trace_request

from keiko.config import load_config
from keiko.process import Keiko, run_keiko
from keiko.records import NewRecord
from keiko.store import open_store


def wait_for(predicate: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_run_serves_probes_and_metrics_and_stops_cleanly_on_sigterm(
    keiko_process: KeikoFactory,
) -> None:
    kp = keiko_process()
    with kp.client() as client:
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"ready": True}

        def store_metrics_exported() -> bool:
            return 'keiko_store_records{stream="traces"}' in client.get("/metrics").text

        wait_for(store_metrics_exported, what="store gauges on /metrics")
        metrics = client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "keiko_store_stats_timestamp_seconds" in metrics.text
    log = kp.log_text()
    assert f"store: embedded at {kp.data_dir}" in log
    assert "listening: api" in log and kp.api_url in log
    assert f"OTEL_EXPORTER_OTLP_ENDPOINT=http://{kp.otlp_grpc}" in log
    assert "keiko ready in" in log
    began = time.monotonic()
    assert kp.stop() == 0
    assert time.monotonic() - began < 5.0  # api.shutdown_grace in the fixture's config
    assert "SIGTERM: shutting down" in kp.log_text() and "stopped in" in kp.log_text()


def test_sigint_also_stops_cleanly_and_restart_keeps_the_data(keiko_process: KeikoFactory) -> None:
    kp = keiko_process()
    body, _ = trace_request()
    post_traces(kp, body)
    kp.signal(signal.SIGINT)
    assert kp.wait(10) == 0
    kp.start()
    with kp.client() as client:
        page = client.get("/api/v1/streams/traces/records").json()
    assert [r["count"] for r in page["records"]] == [6]


def test_json_logs_are_one_object_per_line(keiko_process: KeikoFactory) -> None:
    kp = keiko_process({"logging": {"format": "json"}})
    assert kp.stop() == 0
    lines = [line for line in kp.log_text().splitlines() if not line.startswith("---")]
    events = [json.loads(line) for line in lines]
    assert any(e["message"].startswith("keiko ready in") for e in events)
    assert all({"time", "level", "logger", "message"} <= e.keys() for e in events)


def test_sighup_applies_a_valid_config_and_says_what_needs_a_restart(
    keiko_process: KeikoFactory,
) -> None:
    kp = keiko_process()
    with kp.client() as client:
        assert client.get("/api/v1/streams").status_code == 200
    config = json.loads(json.dumps(kp.config))
    config["api"]["auth"] = {"bearer_tokens": ["reloaded-token"]}
    config["store"]["retention"] = {"max_age": "1d"}
    config["receivers"]["otlp"]["grpc"]["endpoint"] = f"127.0.0.1:{free_port()}"
    kp.write_config(config)
    kp.signal(signal.SIGHUP)
    wait_for(lambda: "config reloaded" in kp.log_text(), what="the reload log line")
    line = next(x for x in kp.log_text().splitlines() if "config reloaded" in x)
    assert "applied=api.auth,store.retention.max_age " in line
    assert "needs_restart=- component_keys=receivers.otlp.grpc.endpoint" in line
    assert "reloaded-token" not in kp.log_text()  # keys are logged, never values
    with kp.client() as client:  # the new token applies without a restart
        assert client.get("/api/v1/streams").status_code == 401
        auth = {"Authorization": "Bearer reloaded-token"}
        assert client.get("/api/v1/streams", headers=auth).status_code == 200
    assert kp.stop() == 0


def test_sighup_with_an_invalid_file_keeps_the_running_config(keiko_process: KeikoFactory) -> None:
    kp = keiko_process()
    kp.config_path.write_text("api:\n  auth:\n    bearer_tokens: [x]\n  endpoint: nowhere\n")
    kp.signal(signal.SIGHUP)
    wait_for(lambda: "config reload refused" in kp.log_text(), what="the refusal")
    line = next(x for x in kp.log_text().splitlines() if "config reload refused" in x)
    assert "api.endpoint" in line and "'nowhere'" in line
    with kp.client() as client:  # still serving, still without auth
        assert client.get("/api/v1/streams").status_code == 200
        assert client.get("/readyz").status_code == 200
    assert kp.stop() == 0


def test_invalid_config_exits_2_with_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("store:\n  backend: mongo\napi:\n  endpoitn: x\n")
    result = subprocess.run(
        [*KEIKO, "run", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "store.backend" in result.stderr and "'mongo'" in result.stderr
    assert "api.endpoitn: unknown key" in result.stderr and "endpoint" in result.stderr


def test_config_file_from_keiko_config_env(keiko_process: KeikoFactory) -> None:
    kp = keiko_process(start=False)
    result = subprocess.run(
        [*KEIKO, "config", "check", str(kp.config_path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    env = {"KEIKO_CONFIG": str(kp.config_path)}
    stats = subprocess.run(
        [*KEIKO, "store", "stats", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["location"] == str(kp.data_dir.resolve())


def test_port_in_use_fails_start_with_status_1_naming_the_endpoint(
    keiko_process: KeikoFactory,
) -> None:
    kp = keiko_process(start=False)
    with socket.create_server(("127.0.0.1", kp.ports["api"])):
        kp.start(wait=False)
        assert kp.wait(30) == 1
    expected = (
        f"keiko could not start: API: api.endpoint: cannot listen on 127.0.0.1:{kp.ports['api']}"
    )
    assert expected in kp.log_text()


def test_second_keiko_on_the_same_data_dir_is_refused(keiko_process: KeikoFactory) -> None:
    first = keiko_process()
    second = keiko_process({"store": {"embedded": {"path": str(first.data_dir)}}}, start=False)
    second.start(wait=False)
    assert second.wait(30) == 1
    assert "in use by another keiko process" in second.log_text()
    assert first.running


def test_store_stats_and_trace_ids_while_keiko_runs(keiko_process: KeikoFactory) -> None:
    kp = keiko_process()
    sent: list[str] = []
    for _ in range(3):
        body, ids = trace_request(trace_count=4, spans_per_trace=5)
        post_traces(kp, body)
        sent += ids

    stats = json.loads(kp.run_cli("store", "stats", "--json").stdout)
    traces = next(s for s in stats["streams"] if s["name"] == "traces")
    assert stats["backend"] == "embedded"
    assert (traces["records"], traces["items"], traces["last_offset"]) == (3, 60, 3)
    assert traces["oldest_time"].endswith("Z") and traces["bytes"] > 0

    text = kp.run_cli("store", "stats").stdout
    assert text.startswith(f"store: embedded at {kp.data_dir.resolve()}")
    row = next(line.split() for line in text.splitlines() if line.startswith("traces "))
    assert row[1:3] == ["3", "60"] and row[-3] == "1-3" and row[-1].endswith("Z")

    listed = kp.run_cli("store", "trace-ids").stdout.split()
    assert sorted(listed) == sorted(sent)
    assert sorted(kp.run_cli("store", "trace-ids", "--since", "3").stdout.split()) == sorted(
        sent[8:]
    )

    tail = kp.run_cli("store", "tail", "traces", "-n", "1").stdout.splitlines()
    assert len(tail) == 1
    record = json.loads(tail[0])
    assert record["offset"] == 3 and record["encoding"] == "otlp_json"
    spans = record["payload"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert {s["traceId"] for s in spans} == set(sent[8:])
    assert kp.stop() == 0


def test_store_commands_on_an_empty_location_create_nothing(keiko_process: KeikoFactory) -> None:
    kp = keiko_process(start=False)
    result = kp.run_cli("store", "tail", "nosuch", check=False)
    assert result.returncode == 1 and "no stream 'nosuch'" in result.stderr
    assert kp.run_cli("store", "stats").stdout.endswith("nothing has been stored there yet\n")
    assert kp.run_cli("store", "trace-ids").stdout == ""
    assert not kp.data_dir.exists()


def test_trace_ids_output_can_be_cut_short(keiko_process: KeikoFactory) -> None:
    kp = keiko_process()
    body, _ = trace_request(trace_count=500, spans_per_trace=1)
    for _ in range(20):
        post_traces(kp, body)
    command = " ".join([*KEIKO, "store", "trace-ids", "--config", str(kp.config_path)])
    result = subprocess.run(
        f"{command} | head -n 3",
        shell=True,
        capture_output=True,
        text=True,
        timeout=60,
        executable="/bin/bash",
    )
    assert len(result.stdout.split()) == 3
    assert "Traceback" not in result.stderr and "Broken pipe" not in result.stderr


# -- in process ---------------------------------------------------------------------------


def in_process_config(tmp_path: Path, **api: Any) -> Any:
    return load_config(
        None,
        env={
            "KEIKO_STORE__EMBEDDED__PATH": str(tmp_path / "data"),
            "KEIKO_API__ENDPOINT": "127.0.0.1:0",
            "KEIKO_RECEIVERS__OTLP__GRPC__ENDPOINT": f"127.0.0.1:{free_port()}",
            "KEIKO_RECEIVERS__OTLP__HTTP__ENDPOINT": f"127.0.0.1:{free_port()}",
            **{f"KEIKO_API__{k.upper()}": str(v) for k, v in api.items()},
        },
    )


def test_keiko_in_process_serves_and_shuts_down(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Keiko(in_process_config(tmp_path)) as keiko:
            assert keiko.store is not None and keiko.api_url
            await keiko.store.append("events", [NewRecord("keiko.event+json", b'{"a": 1}')])
            async with httpx.AsyncClient(base_url=keiko.api_url) as client:
                page = (await client.get("/api/v1/streams/events/records")).json()
                assert page["records"][0]["payload"] == {"a": 1}
        assert keiko.api_state is not None and keiko.api_state.stopping.is_set()

    asyncio.run(scenario())


def test_run_keiko_returns_when_stop_is_set(tmp_path: Path) -> None:
    async def scenario() -> float:
        stop = asyncio.Event()
        task = asyncio.create_task(run_keiko(in_process_config(tmp_path), stop=stop))
        await asyncio.sleep(0.5)
        assert not task.done()
        stop.set()
        began = time.monotonic()
        await asyncio.wait_for(task, 10)
        return time.monotonic() - began

    assert asyncio.run(scenario()) < 5


def test_failed_start_stops_what_had_started(tmp_path: Path) -> None:
    config = in_process_config(tmp_path)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        config.api.endpoint = f"127.0.0.1:{taken.getsockname()[1]}"
        keiko = Keiko(config)
        with pytest.raises(Exception, match=r"api\.endpoint: cannot listen on 127\.0\.0\.1"):
            asyncio.run(keiko.start())
    # the store was closed (its lock released), so it can be opened for writing again
    store = open_store(config.store, read_only=False)

    async def reopen() -> None:
        await store.start()
        await store.shutdown()

    asyncio.run(reopen())


def test_sdk_grpc_exporter_reaches_keiko_run_on_its_event_loop(
    keiko_process: KeikoFactory,
) -> None:
    """grpc.aio serves on the loop `keiko run` picks (uvloop when installed)."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    kp = keiko_process()
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert f"{expected} event loop" in kp.log_text()
    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=f"http://{kp.otlp_grpc}", insecure=True, timeout=10)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace_ids = set()
    for name in ("checkout", "payment"):
        with provider.get_tracer("test").start_as_current_span(name) as span:
            trace_ids.add(f"{span.get_span_context().trace_id:032x}")
    provider.shutdown()
    assert set(kp.run_cli("store", "trace-ids").stdout.split()) == trace_ids


def _stuck_live_client(kp: Any) -> socket.socket:
    """A client of the live endpoint that never reads, with megabytes waiting for it."""
    body, _ = trace_request(trace_count=500, spans_per_trace=4)
    for _ in range(40):
        post_traces(kp, body)
    sock = socket.create_connection(("127.0.0.1", kp.ports["api"]))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /api/v1/streams/traces/live?from_offset=1 HTTP/1.1\r\nHost: k\r\n\r\n")
    time.sleep(0.5)
    return sock


def test_a_stuck_client_is_cut_at_the_shutdown_deadline(keiko_process: KeikoFactory) -> None:
    kp = keiko_process({"api": {"shutdown_grace": "2s"}})
    with _stuck_live_client(kp):
        began = time.monotonic()
        assert kp.stop() == 0
        took = time.monotonic() - began
    assert 1.5 < took < 4.0, took
    assert "still open at the shutdown deadline" in kp.log_text()


def test_a_second_sigterm_exits_at_once(keiko_process: KeikoFactory) -> None:
    kp = keiko_process({"api": {"shutdown_grace": "30s"}})
    with _stuck_live_client(kp):
        kp.signal(signal.SIGTERM)
        time.sleep(0.5)
        assert kp.running  # draining the stuck client
        began = time.monotonic()
        kp.signal(signal.SIGTERM)
        assert kp.wait(5) == 1
        assert time.monotonic() - began < 2.0
    assert "SIGTERM again: exiting without waiting" in kp.log_text()


def test_store_tail_follow_prints_new_records(keiko_process: KeikoFactory) -> None:
    kp = keiko_process()
    command = [*KEIKO, "store", "tail", "traces", "--follow", "--config", str(kp.config_path)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as tail:
        try:
            time.sleep(1.0)  # started and caught up with an empty stream
            body, ids = trace_request(trace_count=1)
            post_traces(kp, body)
            assert tail.stdout is not None
            record = json.loads(tail.stdout.readline())
        finally:
            tail.terminate()
    spans = record["payload"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert record["offset"] == 1 and {s["traceId"] for s in spans} == set(ids)
