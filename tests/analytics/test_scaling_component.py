"""The scaling advisor under `keiko run`: the OTel SDK's OTLP exporter sends a workload's
request counter; keiko advises replicas on /metrics and on the events stream, and keeps its
forecasters across a restart."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import yaml
from fixtures.keiko import KeikoProcess
from fixtures.prometheus import Prometheus
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.parser import text_string_to_metric_families

STEP = 10.0  # seconds between counter points
CAPACITY = 20.0  # requests/s per replica
CONFIG = {
    "analytics": {
        "anomaly": {"enabled": False},
        "scaling": {
            "enabled": True,
            "fetch_timeout": "100ms",
            "advisor": {
                "step_s": 60.0,
                "defaults": {"capacity_per_replica": CAPACITY, "target_utilisation": 0.5},
            },
        },
    }
}


def counter_request(start: float, t: float, value: float) -> MetricsData:
    """One export of the spanmetrics-style calls counter of shop/checkout's two pods, as
    their collectors send it every STEP seconds (cumulative since ``start``)."""
    blocks = []
    for pod in ("a", "b"):
        metrics = []
        # Requests, and CPU seconds at 1.5 cores per pod.
        for name, v in (
            ("traces.span.metrics.calls", value),
            ("process.cpu.time", 1.5 * (t - start)),
        ):
            point = NumberDataPoint({}, round(start * 1e9), round(t * 1e9), v)
            sum_ = Sum([point], AggregationTemporality.CUMULATIVE, True)
            metrics.append(Metric(name, name, "1", sum_))
        scope = ScopeMetrics(InstrumentationScope("tests.scaling"), metrics, "")
        labels = {"service.name": "checkout", "k8s.namespace.name": "shop", "k8s.pod.name": pod}
        blocks.append(ResourceMetrics(Resource.create(labels), [scope], ""))
    return MetricsData(blocks)


def send(kp: KeikoProcess, data: MetricsData) -> None:
    exporter = OTLPMetricExporter(endpoint=f"http://{kp.otlp_grpc}", insecure=True, timeout=10)
    try:
        assert exporter.export(data) == MetricExportResult.SUCCESS
    finally:
        exporter.shutdown()


def send_load(kp: KeikoProcess, start: float, rate: float, minutes: tuple[int, int]) -> None:
    """Two pods, each serving rate/2 requests/s: their counters from minute a to minute b
    after ``start``, one point every STEP seconds."""
    first, last = (int(m * 60 / STEP) for m in minutes)
    for i in range(first + 1, last + 1):
        send(kp, counter_request(start, start + i * STEP, rate / 2 * i * STEP))


def desired(kp: KeikoProcess) -> dict[str, float]:
    with kp.client() as client:
        text = client.get("/metrics").text
    return {
        s.labels["mode"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "keiko_scaling_desired_replicas" and s.labels["workload"] == "shop/checkout"
    }


def samples(kp: KeikoProcess) -> dict[str, float]:
    with kp.client() as client:
        text = client.get("/metrics").text
    return {
        s.name: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name.startswith("keiko_scaling_") and not s.labels
    }


def forecasts(kp: KeikoProcess) -> dict[tuple[str, str], float]:
    """(signal, horizon) -> point forecast of shop/checkout."""
    with kp.client() as client:
        text = client.get("/metrics").text
    return {
        (s.labels["signal"], s.labels["horizon"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "keiko_forecast" and s.labels["bound"] == "point"
    }


def advice_events(kp: KeikoProcess) -> list[dict[str, Any]]:
    with kp.client() as client:
        page = client.get("/api/v1/streams/events/records", params={"limit": 1000}).json()
    return [r["payload"] for r in page["records"] if r["payload"].get("type") == "scaling_advice"]


def eventually(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return result


def test_advice_on_metrics_and_events_and_kept_across_a_restart(keiko_process: Any) -> None:
    kp = keiko_process(CONFIG)
    start = time.time() - 3 * 3600
    send_load(kp, start, 90.0, (0, 30))
    # Too little history for a trusted forecast: reactive, sized for the observed rate.
    reactive = math.ceil(90.0 / (CAPACITY * 0.5))
    eventually(lambda: desired(kp).get("reactive") == reactive)
    events = eventually(lambda: advice_events(kp))
    assert events[-1]["workload"] == "shop/checkout" and events[-1]["mode"] == "reactive"
    assert events[-1]["replicas"] == reactive and "history" in events[-1]["reason"]
    assert abs(events[-1]["current_rate"] - 90.0) < 1.0
    # The stage's progress, like every stream worker's: everything read, nothing behind.
    progress = eventually(lambda: (m := samples(kp)).get("keiko_scaling_lag_records") == 0 and m)
    # Forecasts at 5 min .. 1 h of the rate and of the CPU (2 pods x 1.5 cores).
    forecast = forecasts(kp)
    assert {h for _, h in forecast} == {"5m", "15m", "1h"}
    assert abs(forecast[("rate", "5m")] - 90.0) < 2.0 and abs(forecast[("cpu", "1h")] - 3.0) < 0.1
    assert progress["keiko_scaling_records_total"] >= 180
    assert progress["keiko_scaling_events_total"] == len(events)

    kp.restart()  # the forecasters and series come back from the checkpoint
    eventually(lambda: "restored 1 workloads" in kp.log_text())  # the stage restores in its task
    send_load(kp, start, 90.0, (30, 35))
    eventually(lambda: desired(kp).get("reactive") == reactive)
    assert json.dumps(events)  # events are plain JSON (no NaN)


KEDA_EXAMPLE = (
    Path(__file__).resolve().parents[2] / "deploy/kubernetes/examples/keda-scaledobject.yaml"
)


def test_the_keda_examples_query_gives_the_advice_through_prometheus(
    keiko_process: Any, tmp_path: Path
) -> None:
    """What KEDA's prometheus scaler runs: the example's query, against a real Prometheus
    scraping keiko, one element with the advised replicas. keiko is scraped by two jobs,
    as two `keiko analyze` replicas are while a partition moves between them: the bare
    metric has two series there (which KEDA refuses), the example's query one."""
    kp = keiko_process(CONFIG)
    send_load(kp, time.time() - 3 * 3600, 90.0, (0, 30))
    reactive = math.ceil(90.0 / (CAPACITY * 0.5))
    eventually(lambda: desired(kp).get("reactive") == reactive)
    [trigger] = yaml.safe_load(KEDA_EXAMPLE.read_text())["spec"]["triggers"]
    query = trigger["metadata"]["query"]
    target = kp.api_url.removeprefix("http://")
    jobs = [{"job_name": j, "static_configs": [{"targets": [target]}]} for j in ("a", "b")]
    config = {"global": {"scrape_interval": "1s"}, "scrape_configs": jobs}
    with Prometheus(tmp_path / "prom", config) as prometheus:
        bare = eventually(
            lambda: len(r := prometheus.query("keiko_scaling_desired_replicas")) == 2 and r, 30
        )
        assert {s["metric"]["workload"] for s in bare} == {"shop/checkout"}
        [element] = prometheus.query(query)
        assert float(element["value"][1]) == reactive
