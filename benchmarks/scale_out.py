#!/usr/bin/env python3
"""Scale-out of `keiko analyze` on NATS JetStream: analysis throughput with 1 and 2
analyzer processes, and OTLP-request-to-notification latency under load.

One local ``nats-server -js`` (file storage), ``store.nats.partitions: 4``, a fresh stream
prefix per run.

**Throughput** (``analytics.anomaly`` only; spanmetrics, scaling and incidents off): the
metrics stream is pre-filled straight through keiko's NatsStore (``--series`` gauges over
``--services`` services, ``--points`` steps, one OTLP request per step, split by service
onto the 4 partitions); then K = 1 and K = 2 ``keiko analyze`` processes start at once and
their /metrics are polled until each partition's holder processed its last offset
(``keiko_anomaly_offset``). Reported: wall time from spawning the processes (imports,
store connect, partition balancing included) and from the moment all answered /readyz;
the all-busy rate (``keiko_anomaly_points_scored_total`` summed, from the poll by which
every process scored to the first process's last point: the parallel rate without
start-up, hand-over or the tail of an uneven split); CPU seconds per process
(``process_cpu_seconds_total``) and of nats-server. Efficiency = rate(2) / (2 x rate(1)).
Services are hashed onto partitions, so 50 services do not split evenly: the best pairing
of the 4 partitions bounds the efficiency (printed).

**Span metrics throughput** (``analytics.spanmetrics`` only, ``flush_interval``
``--flush-interval``): the traces stream is pre-filled the same way with ``--span-requests``
collector-style OTLP trace requests of 512 spans (~9-span traces, client/server pairs over
``--services`` services; ``spanmetrics_throughput.build_requests``), which the store splits
by trace id (random, so the 4 partitions get even shares); K = 1 and K = 2 analyzers run
until each partition's last offset is processed (``keiko_spanmetrics_offset``); the rates
count ``keiko_spanmetrics_spans_total``. ``--stages`` picks the stages measured.

**Latency**: `keiko agent`, `keiko analyze` and `keiko alert`; the alerter routes anomaly
events (incidents off) with ``group_by: [series]``, ``group_wait: 100ms`` to a webhook in
this process. Background load: ``--bg-series`` gauges through the agent's OTLP/gRPC
receiver, one point each per second. ``--spikes`` target series are warmed up with 200
points of bounded noise each (never flagged); then one at a time a point 10x the baseline
(data time = now) is exported for a fresh target, and the wall time from just before the
export call to the webhook's next post about that series is taken. The detector may place
an excursion's onset (the alert's startsAt) a point before the spike; such an alert is
older than group_wait and the router sends it at once, so those samples are shown apart.

    .venv/bin/python benchmarks/scale_out.py              # all parts, ~2 minutes (2 CPUs)
    .venv/bin/python benchmarks/scale_out.py --quick      # smaller, ~1 minute
    .venv/bin/python benchmarks/scale_out.py --only throughput --json
    .venv/bin/python benchmarks/scale_out.py --only throughput --stages spanmetrics

Progress goes to stderr; a Markdown table to stdout (``--json``: one JSON document).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.keiko import KeikoFailed, KeikoProcess  # noqa: E402
from fixtures.nats import NatsServer  # noqa: E402
from fixtures.receiver import Receiver  # noqa: E402
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (  # noqa: E402
    OTLPMetricExporter,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (  # noqa: E402
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.sdk.metrics.export import (  # noqa: E402
    Gauge,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.util.instrumentation import InstrumentationScope  # noqa: E402
from spanmetrics_throughput import build_requests  # noqa: E402  (this directory)

from keiko.partitioning import resource_partition, split  # noqa: E402
from keiko.records import Kind, NewRecord, Stream  # noqa: E402
from keiko.store.config import StoreConfig  # noqa: E402
from keiko.store.nats import NatsStore  # noqa: E402
from keiko.store.nats_codec import js_stream_name, subject  # noqa: E402

PARTITIONS = 4
STEP = 10.0  # seconds between the pre-filled points of a series
SCORED = "keiko_anomaly_points_scored_total"
SPANS_PER_REQUEST = 512


@dataclass(frozen=True)
class Stage:
    """What a throughput run measures: the stage enabled, the stream it reads, the counter
    of items it processed and the gauge of its last offset (both labelled by partition)."""

    name: str  # the analytics section
    stream: str
    kind: str
    counter: str
    offset: str
    unit: str  # what an item is, for the report
    # Seconds between /metrics polls. Span metrics export every series' histogram: one
    # scrape of a process holding all 4 partitions cost ~40 ms of its CPU (py-spy), so
    # polling every 0.1 s took ~40% of one analyzer and made K=2 look super-linear.
    poll: float


ANOMALY = Stage(
    "anomaly", Stream.METRICS, Kind.OTLP_METRICS, SCORED, "keiko_anomaly_offset", "points", 0.1
)
SPANMETRICS = Stage(
    "spanmetrics",
    Stream.TRACES,
    Kind.OTLP_TRACES,
    "keiko_spanmetrics_spans_total",
    "keiko_spanmetrics_offset",
    "spans",
    0.5,
)
STAGES = {s.name: s for s in (ANOMALY, SPANMETRICS)}
WARM_POINTS = 200  # history of a latency target before its spike
BASELINE, SPIKE = 10.0, 100.0
samples: list[dict[str, Any]] = []  # each spike: target, latency, its alert's startsAt
TIMELINES = ("timeline", "per_process")  # in --json with --timeline only


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- config ----------------------------------------------------------------------------------


@dataclass
class Settings:
    """What the keiko processes run with (reported with the figures: they bound latency)."""

    partition_lease: str = "3s"
    anomaly_fetch_timeout: str = "100ms"
    anomaly_checkpoint_interval: str = "5s"
    group_wait: str = "100ms"
    group_interval: str = "1s"
    log_level: str = "warning"
    spanmetrics_flush_interval: str = "3s"
    alert_sources_fetch_timeout: str = "1s (fixed in alerting/sources.py)"


def keiko_config(
    url: str, prefix: str, s: Settings, hook: str | None = None, stage: Stage = ANOMALY
) -> dict[str, Any]:
    """One stage on (anomaly detection or span metrics), the others off."""
    config: dict[str, Any] = {
        "store": {
            "backend": "nats",
            "nats": {
                "servers": [url],
                "stream_prefix": prefix,
                "partitions": PARTITIONS,
                "partition_lease": s.partition_lease,
            },
            "retention": {"max_bytes": "2GiB"},
        },
        "logging": {"level": s.log_level},
        "probes": {"ebpf": {"enabled": False}},
        "analytics": {
            "anomaly": {
                "enabled": stage is ANOMALY,
                "fetch_timeout": s.anomaly_fetch_timeout,
                "checkpoint": {"interval": s.anomaly_checkpoint_interval},
            },
            "spanmetrics": {
                "enabled": stage is SPANMETRICS,
                "flush_interval": s.spanmetrics_flush_interval,
            },
            "scaling": {"enabled": False},
            "incidents": {"enabled": False},
        },
    }
    if hook is not None:
        config["alerting"] = {
            "router": {
                "route": {
                    "receiver": "hook",
                    "group_by": ["series"],
                    "group_wait": s.group_wait,
                    "group_interval": s.group_interval,
                    "repeat_interval": "1h",
                },
                "receivers": [{"name": "hook", "webhook_configs": [{"url": hook}]}],
                "sources": {"anomalies": True, "incidents": False},
            }
        }
    return config


def launch(directory: Path, config: dict[str, Any], command: str) -> KeikoProcess:
    """Start a role and wait until ready; once more on fresh ports if it lost a port race
    (a free port taken by another process before keiko bound it)."""
    for attempt in range(2):
        kp = role(directory / str(attempt), config, command)
        try:
            return kp.start(timeout=60)
        except KeikoFailed:
            if attempt or "Address already in use" not in kp.log_text():
                raise
            progress(f"{command}: a port was taken; starting again on fresh ports")
    raise AssertionError("unreachable")


def role(directory: Path, config: dict[str, Any], command: str) -> KeikoProcess:
    kp = KeikoProcess(directory, config)
    kp.command = command
    return kp


# -- /metrics --------------------------------------------------------------------------------


def scrape(
    kp: KeikoProcess, offsets: dict[str, float] | None = None, stage: Stage = ANOMALY
) -> tuple[dict[str, float], float]:
    """(items processed by partition, CPU seconds) of one process; with ``offsets``, the
    last offset it processed of each partition it holds is put there (the highest seen)."""
    text = httpx.get(f"{kp.api_url}/metrics", timeout=5).text
    scored: dict[str, float] = {}
    cpu = 0.0
    for line in text.splitlines():
        if offsets is not None and line.startswith(stage.offset + "{"):
            labels, _, value = line.rpartition(" ")
            part = labels.split('partition="')[1].split('"')[0]
            offsets[part] = max(offsets.get(part, 0.0), float(value))
        elif line.startswith(stage.counter):
            labels, _, value = line.rpartition(" ")
            part = labels.split('partition="')[1].split('"')[0] if "partition=" in labels else "0"
            scored[part] = float(value)
        elif line.startswith("process_cpu_seconds_total "):
            cpu = float(line.split()[1])
    return scored, cpu


# -- throughput ------------------------------------------------------------------------------


def prefill_requests(series: int, services: int, points: int, t0: float) -> list[bytes]:
    """One OTLP metrics request per step: every series' gauge point of that step."""
    rng = np.random.default_rng(7)
    per_service = max(1, series // services)
    base = rng.uniform(5, 500, (services, per_service))
    out = []
    for step in range(points):
        t_ns = round((t0 + step * STEP) * 1e9)
        noise = rng.normal(0, 0.05, (services, per_service))
        req = ExportMetricsServiceRequest()
        for s in range(services):
            rm = req.resource_metrics.add()
            rm.resource.attributes.append(
                KeyValue(key="service.name", value=AnyValue(string_value=f"svc{s:03d}"))
            )
            metric = rm.scope_metrics.add().metrics.add()
            metric.name = "queue_depth"
            values = base[s] * (1 + noise[s])
            for k in range(per_service):
                dp = metric.gauge.data_points.add()
                dp.time_unix_nano = t_ns
                dp.as_double = float(values[k])
                dp.attributes.append(KeyValue(key="queue", value=AnyValue(string_value=f"q{k}")))
        out.append(req.SerializeToString())
    return out


async def prefill(
    url: str, prefix: str, payloads: list[bytes], count: int, stage: Stage = ANOMALY
) -> tuple[float, dict[str, int]]:
    """Append the requests to the stage's stream (split by partition as keiko's receivers'
    appends are): seconds it took, last offset by partition (the run is over when each
    partition's holder processed its last offset)."""
    config = StoreConfig.model_validate(
        {
            "backend": "nats",
            "nats": {"servers": [url], "stream_prefix": prefix, "partitions": PARTITIONS},
            "retention": {"max_bytes": "2GiB"},
        }
    )
    store = NatsStore(config)
    await store.start()
    started = time.perf_counter()
    try:
        for k in range(0, len(payloads), 8):
            batch = [NewRecord(stage.kind, p, count) for p in payloads[k : k + 8]]
            await store.append(stage.stream, batch)
        seconds = time.perf_counter() - started
        js = store.connection.jetstream()
        name = js_stream_name(prefix, stage.stream)
        last = {
            str(p): (await js.get_last_msg(name, f"{subject(prefix, stage.stream)}.{p}")).seq
            for p in range(PARTITIONS)
        }
    finally:
        await store.shutdown()
    return seconds, {p: int(seq or 0) for p, seq in last.items()}


async def drop_streams(url: str, prefix: str) -> None:
    """Delete a finished run's streams and KV buckets: JetStream sets max_bytes aside for
    each stream, so those of every run together would exhaust its storage."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for info in await js.streams_info():
            name = info.config.name or ""
            if name.startswith((f"{prefix}_", f"KV_{prefix}_")):
                await js.delete_stream(name)
    finally:
        await nc.close()


@dataclass
class RunResult:
    """One throughput run with K analyzers."""

    processes: int
    points: int
    points_counted: int  # less than points when a partition moved between polls
    seconds_from_spawn: float
    seconds_from_ready: float
    cpu_seconds: list[float]
    cpu_after_ready: list[float]
    nats_cpu_seconds: float
    balanced_at: float | None
    partitions_held: list[list[str]]
    prefill_seconds: float
    busy_rate: float = 0.0
    busy_seconds: float = 0.0
    timeline: list[tuple[float, float]] = field(default_factory=list)
    per_process: list[tuple[float, list[float], list[float]]] = field(default_factory=list)

    @property
    def rate_from_spawn(self) -> float:
        return self.points / self.seconds_from_spawn

    @property
    def rate_from_ready(self) -> float:
        return self.points / self.seconds_from_ready


def busy_rate(per_process: list[tuple[float, list[float], list[float]]]) -> tuple[float, float]:
    """(points/s, seconds) from the poll by which every process had scored points to the
    last poll before the first of them scored its last: the parallel rate, without
    start-up and without the tail where one process finished first."""
    k = len(per_process[0][1])
    first = [next((t for t, n, _ in per_process if n[j] > 0), None) for j in range(k)]
    last = []
    for j in range(k):
        final = per_process[-1][1][j]
        last.append(next((t for t, n, _ in per_process if n[j] >= final), None))
    if None in first or None in last:
        return 0.0, 0.0
    start, end = max(f for f in first if f is not None), min(x for x in last if x is not None)
    if end - start < 0.5:
        return 0.0, 0.0
    at = {t: sum(n) for t, n, _ in per_process}
    return (at[end] - at[start]) / (end - start), end - start


def partition_points(services: int, per_service: int, points: int) -> dict[str, int]:
    """Points per partition: services are spread by a hash of their name."""
    out = dict.fromkeys(map(str, range(PARTITIONS)), 0)
    for s in range(services):
        attrs = [KeyValue(key="service.name", value=AnyValue(string_value=f"svc{s:03d}"))]
        out[str(resource_partition(attrs, PARTITIONS))] += per_service * points
    return out


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput_run(
    server: NatsServer,
    work: Path,
    k: int,
    payloads: list[bytes],
    total: int,
    per_req: int,
    s: Settings,
    stage: Stage = ANOMALY,
) -> RunResult:
    """K analyzers with only ``stage`` on, over a freshly pre-filled stream, until every
    partition's last offset is processed. ``total`` items (``per_req`` per request)."""
    url = server.url
    assert server.process is not None
    prefix = f"SO{k}X{uuid.uuid4().hex[:8].upper()}"
    seconds, last = asyncio.run(prefill(url, prefix, payloads, per_req, stage))
    what = f"{stage.name} K={k}"
    progress(f"{what}: pre-filled {total:,} {stage.unit} in {seconds:.1f}s (prefix {prefix})")
    config = keiko_config(url, prefix, s, stage=stage)
    procs = [role(work / f"{prefix}-analyze{i}", config, "analyze") for i in range(k)]
    spawned = time.monotonic()
    for kp in procs:
        kp.start(wait=False)
    for kp in procs:
        kp.wait_ready(60)
    ready = time.monotonic()
    cpu_ready = [scrape(kp, stage=stage)[1] for kp in procs]  # imports and start-up, not analysis
    nats_cpu = cpu_of(server.process.pid)
    # Max per (process, partition): a handed-over partition's counter leaves its old
    # holder's /metrics (its new holder restores the state and counts from there).
    seen: dict[tuple[int, str], float] = {}
    offsets: dict[str, float] = {}  # partition -> last offset processed
    timeline: list[tuple[float, float]] = []
    per_process: list[tuple[float, list[float], list[float]]] = []  # t, scored, cpu
    balanced_at: float | None = None
    last_change, last_sum = time.monotonic(), -1.0
    fair = -(-PARTITIONS // k)
    try:
        while True:
            held = []
            cpu = []
            for i, kp in enumerate(procs):
                scored, c = scrape(kp, offsets, stage)
                cpu.append(c)
                held.append(sorted(scored))
                for part, value in scored.items():
                    seen[(i, part)] = max(seen.get((i, part), 0.0), value)
            now = time.monotonic()
            done = sum(seen.values())
            timeline.append((now - spawned, done))
            mine = [sum(v for (i, _), v in seen.items() if i == j) for j in range(k)]
            per_process.append((round(now - spawned, 2), mine, cpu))
            if balanced_at is None and all(len(h) == fair for h in held):
                balanced_at = now - spawned
            if done != last_sum:
                last_change, last_sum = now, done
            if all(offsets.get(p, 0) >= seq for p, seq in last.items()):
                break
            if now - last_change > 10 and done > 0:
                progress(f"{what}: stalled at {done:,.0f} of {total:,} {stage.unit}; stopping")
                break
            if now - spawned > 600:
                raise TimeoutError(f"{what}: {done:,.0f} of {total:,} {stage.unit} after 600s")
            time.sleep(stage.poll)
        finished = time.monotonic()
        nats_cpu = cpu_of(server.process.pid) - nats_cpu
    finally:
        for kp in procs:
            kp.stop()
        asyncio.run(drop_streams(url, prefix))
    result = RunResult(
        processes=k,
        points=total,
        points_counted=int(done),
        seconds_from_spawn=finished - spawned,
        seconds_from_ready=finished - ready,
        cpu_seconds=cpu,
        cpu_after_ready=[c - r for c, r in zip(cpu, cpu_ready, strict=True)],
        nats_cpu_seconds=nats_cpu,
        balanced_at=balanced_at,
        partitions_held=held,
        prefill_seconds=seconds,
        timeline=timeline,
        per_process=per_process,
    )
    result.busy_rate, result.busy_seconds = busy_rate(per_process)
    progress(
        f"{what}: {result.points:,} {stage.unit} in {result.seconds_from_spawn:.1f}s from spawn "
        f"({result.seconds_from_ready:.1f}s from ready), "
        f"all busy {result.busy_rate:,.0f}/s over {result.busy_seconds:.1f}s, "
        f"balanced at {balanced_at}s, cpu {[round(c, 1) for c in cpu]} "
        f"(after ready {[round(c, 1) for c in result.cpu_after_ready]}), "
        f"nats-server {nats_cpu:.1f}; counted {done:,.0f}"
    )
    return result


def bench_throughput(
    server: NatsServer, work: Path, args: argparse.Namespace, s: Settings
) -> dict[str, Any]:
    t0 = time.time() - args.points * STEP - 3600
    payloads = prefill_requests(args.series, args.services, args.points, t0)
    per_req = (args.series // args.services) * args.services
    total = per_req * args.points
    runs = [throughput_run(server, work, k, payloads, total, per_req, s) for k in args.ks]
    if args.ks != [1, 2]:
        return {"points": total, "runs": [asdict(r) for r in runs]}
    one, two = runs
    shares = partition_points(args.services, args.series // args.services, args.points)
    best = min(
        max(shares[a] + shares[b], total - shares[a] - shares[b])
        for a in shares
        for b in shares
        if a < b
    )
    return {
        "points_by_partition": shares,
        "efficiency_bound_best_pairing": total / (2 * best),
        "series": per_req,
        "services": args.services,
        "points_per_series": args.points,
        "points": total,
        "request_bytes": statistics.mean(len(p) for p in payloads),
        "runs": [
            {
                **{k: v for k, v in asdict(r).items() if k not in TIMELINES or args.timeline},
                "rate_from_spawn": r.rate_from_spawn,
                "rate_from_ready": r.rate_from_ready,
            }
            for r in runs
        ],
        "efficiency_all_busy": two.busy_rate / (2 * one.busy_rate),
        "efficiency_from_ready": two.rate_from_ready / (2 * one.rate_from_ready),
        "efficiency_from_spawn": two.rate_from_spawn / (2 * one.rate_from_spawn),
    }


def spans_by_partition(payloads: list[bytes]) -> dict[str, int]:
    """Spans per partition, split as the store splits them (by trace id)."""
    out = dict.fromkeys(map(str, range(PARTITIONS)), 0)
    for payload in payloads:
        record = NewRecord(Kind.OTLP_TRACES, payload, SPANS_PER_REQUEST)
        for part, piece in split(record, PARTITIONS):
            out[str(part)] += piece.count
    return out


def bench_spans(
    server: NatsServer, work: Path, args: argparse.Namespace, s: Settings
) -> dict[str, Any]:
    """Span metrics (and the service graph) with K analyzers: the traces stream pre-filled
    with ``--span-requests`` collector-style requests of 512 spans."""
    started = time.perf_counter()
    payloads = build_requests(args.span_requests, args.services, SPANS_PER_REQUEST)
    total = len(payloads) * SPANS_PER_REQUEST
    shares = spans_by_partition(payloads)
    progress(f"spanmetrics: built {total:,} spans in {time.perf_counter() - started:.1f}s")
    runs = [
        throughput_run(server, work, k, payloads, total, SPANS_PER_REQUEST, s, SPANMETRICS)
        for k in args.ks
    ]
    out: dict[str, Any] = {
        "spans": total,
        "requests": len(payloads),
        "services": args.services,
        "spans_by_partition": shares,
        "request_bytes": statistics.mean(len(p) for p in payloads),
        "runs": [
            {
                **{k: v for k, v in asdict(r).items() if k not in TIMELINES or args.timeline},
                "rate_from_spawn": r.rate_from_spawn,
                "rate_from_ready": r.rate_from_ready,
            }
            for r in runs
        ],
    }
    if args.ks == [1, 2]:
        one, two = runs
        busy = two.busy_rate / (2 * one.busy_rate) if one.busy_rate else 0.0
        out["efficiency_all_busy"] = busy
        out["efficiency_from_ready"] = two.rate_from_ready / (2 * one.rate_from_ready)
        out["efficiency_from_spawn"] = two.rate_from_spawn / (2 * one.rate_from_spawn)
    return out


# -- latency ---------------------------------------------------------------------------------


def sdk_request(points: dict[str, list[tuple[float, float]]], metric: str) -> MetricsData:
    """OTel SDK MetricsData: one gauge ``metric`` per service, its points (time, value)."""
    scope = InstrumentationScope("benchmarks.scale_out")
    resources = []
    for service, pts in points.items():
        dps = [NumberDataPoint({"route": "/r"}, 0, round(t * 1e9), v) for t, v in pts]
        m = Metric(metric, "benchmark gauge", "ms", Gauge(dps))
        resource = Resource.create({"service.name": service})
        resources.append(ResourceMetrics(resource, [ScopeMetrics(scope, [m], "")], ""))
    return MetricsData(resources)


def export(exporter: OTLPMetricExporter, data: MetricsData) -> None:
    if exporter.export(data) != MetricExportResult.SUCCESS:
        raise RuntimeError("the agent refused an OTLP export")


class Background(threading.Thread):
    """``n`` gauges (10 services) through the agent, one point each per second."""

    def __init__(self, endpoint: str, n: int) -> None:
        super().__init__(daemon=True)
        self.exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=10)
        self.n, self.sent, self.errors = n, 0, 0
        self.stop = threading.Event()
        self.started_at = 0.0
        self.rng = np.random.default_rng(3)

    def run(self) -> None:
        self.started_at = time.monotonic()
        tick = self.started_at
        services = [f"bg{i}" for i in range(10)]
        while not self.stop.is_set():
            now = time.time()
            values = BASELINE + self.rng.uniform(-0.5, 0.5, self.n)
            scope = InstrumentationScope("benchmarks.scale_out")
            resources = []
            for si, svc in enumerate(services):
                dps = [
                    NumberDataPoint({"k": str(j)}, 0, round(now * 1e9), float(values[j]))
                    for j in range(si, self.n, len(services))
                ]
                m = Metric("bg_gauge", "background", "1", Gauge(dps))
                res = Resource.create({"service.name": svc})
                resources.append(ResourceMetrics(res, [ScopeMetrics(scope, [m], "")], ""))
            try:
                export(self.exporter, MetricsData(resources))
                self.sent += self.n
            except RuntimeError:
                self.errors += 1
            tick += 1.0
            self.stop.wait(max(0.0, tick - time.monotonic()))
        self.exporter.shutdown()

    def rate(self) -> float:
        return self.sent / max(time.monotonic() - self.started_at, 1e-9)


def warm_history(target: str, now: float) -> list[tuple[float, float]]:
    """WARM_POINTS of bounded uniform noise up to a second ago, 1 s apart."""
    rng = np.random.default_rng(abs(hash(target)) % 2**32)
    values = BASELINE + rng.uniform(-0.5, 0.5, WARM_POINTS)
    return [(now - (WARM_POINTS - i), float(v)) for i, v in enumerate(values)]


def total_scored(kp: KeikoProcess) -> float:
    return sum(scrape(kp)[0].values())


def bench_latency(url: str, work: Path, args: argparse.Namespace, s: Settings) -> dict[str, Any]:
    prefix = f"SOLAT{uuid.uuid4().hex[:8].upper()}"
    targets = [f"target{i:03d}" for i in range(args.spikes + 1)]  # the first: a dry run
    with Receiver() as hook:
        config = keiko_config(url, prefix, s, hook.url)
        procs: dict[str, KeikoProcess] = {}
        try:
            for name in ("alert", "analyze", "agent"):
                procs[name] = launch(work / f"{prefix}-{name}", config, name)
            agent, analyzer = procs["agent"], procs["analyze"]
            progress("latency: agent, analyzer and alerter ready")
            exporter = OTLPMetricExporter(endpoint=agent.otlp_grpc, insecure=True, timeout=10)
            now = time.time()
            history = {t: warm_history(t, now) for t in targets}
            for k in range(0, len(targets), 10):
                chunk = {t: history[t] for t in targets[k : k + 10]}
                export(exporter, sdk_request(chunk, "latency"))
            warm = len(targets) * WARM_POINTS
            deadline = time.monotonic() + 120
            while total_scored(analyzer) < warm:  # before the background load: exact
                if time.monotonic() > deadline:
                    raise TimeoutError("the warm-up history was not scored within 120s")
                time.sleep(0.2)
            background = Background(agent.otlp_grpc, args.bg_series)
            background.start()
            progress(f"latency: {warm:,} warm-up points scored; background {args.bg_series}/s")
            time.sleep(args.settle)
            latencies: list[float] = []
            early: list[str] = []  # notified before their spike
            missed: list[str] = []  # not notified within 30 s of their spike
            for n, target in enumerate(targets):
                if any(notified(doc, target) for _, doc in list(hook.posts)):
                    # Flagged on its noise (a false positive): its alert still fires, so a
                    # spike would add no notification. Not measured.
                    early.append(target)
                    continue
                latency = spike(exporter, hook, target)
                if latency is None:
                    progress(f"latency: {target}: no notification within 30s")
                    missed.append(target)
                    continue
                if n == 0:
                    progress(f"latency: dry run {latency * 1000:.0f} ms")
                    continue
                latencies.append(latency)
                time.sleep(args.gap)
            background.stop.set()
            background.join(15)
            bg_rate, bg_errors = background.rate(), background.errors
            exporter.shutdown()
            cpu = {name: scrape(kp)[1] for name, kp in procs.items()}
        finally:
            for kp in procs.values():
                kp.stop()
    latencies.sort()
    ms = [x * 1000 for x in latencies]
    waited = sorted(x["ms"] for x in samples[1:] if x["onset_before_spike"] < 0.5)
    at_once = sorted(x["ms"] for x in samples[1:] if x["onset_before_spike"] >= 0.5)
    return {
        "spikes": len(ms),
        "p50_ms": ms[len(ms) // 2],
        "p99_ms": ms[min(len(ms) - 1, int(len(ms) * 0.99))],
        "max_ms": ms[-1],
        "min_ms": ms[0],
        "mean_ms": statistics.mean(ms),
        "background_points_per_s": bg_rate,
        "background_errors": bg_errors,
        "cpu_seconds": cpu,
        "notified_before_spike": early,
        "not_notified": missed,
        "alerts_of_not_notified": [
            {"startsAt": a.get("startsAt"), "received": i, **a.get("labels", {})}
            for i, (_, doc) in enumerate(hook.posts)
            for a in (doc or {}).get("alerts", [])
            if a.get("labels", {}).get("service") in missed
        ],
        "notifications": len(hook.posts),
        "with_group_wait": summary(waited),
        "onset_before_spike_sent_at_once": summary(at_once),
        "samples": samples,
        "latencies_ms": ms,
    }


def notified(doc: Any, target: str) -> bool:
    """Does this webhook post hold a firing alert of ``target``'s series?"""
    return any(
        a.get("labels", {}).get("service") == target and a.get("status") == "firing"
        for a in (doc or {}).get("alerts", [])
    )


def summary(ms: list[float]) -> dict[str, float]:
    """count, p50, p99, max of sorted milliseconds."""
    if not ms:
        return {"count": 0}
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return {"count": len(ms), "p50_ms": ms[len(ms) // 2], "p99_ms": p99, "max_ms": ms[-1]}


def spike(exporter: OTLPMetricExporter, hook: Receiver, target: str) -> float | None:
    """Seconds from the export of ``target``'s spike to the webhook's next post about it
    (None: none within 30 s). Not matched by startsAt: that is the excursion's onset,
    which the detector may place a few points before the spike."""
    before = {id(doc) for _, doc in list(hook.posts)}
    at = time.time()
    data = sdk_request({target: [(at, SPIKE)]}, "latency")
    started = time.perf_counter()
    export(exporter, data)
    try:
        posts = hook.wait(
            1, timeout=30, where=lambda _p, doc: id(doc) not in before and notified(doc, target)
        )
    except AssertionError:
        return None
    elapsed = time.perf_counter() - started
    alert = next(a for a in posts[0][1]["alerts"] if a["labels"].get("service") == target)
    starts = datetime.fromisoformat(alert.get("startsAt", "1970-01-01T00:00:00Z")).timestamp()
    # An onset placed before the spike makes the alert older than group_wait: the router
    # sends it at once (as Alertmanager does), so it measures the pipeline alone.
    samples.append({"target": target, "ms": elapsed * 1000, "onset_before_spike": at - starts})
    return elapsed


# -- output ----------------------------------------------------------------------------------


def table(results: dict[str, Any], s: Settings) -> str:
    lines = [f"{os.cpu_count()} CPUs, one local nats-server -js, {PARTITIONS} partitions\n"]
    tp = results.get("throughput")
    if tp:
        lines += [
            f"Anomaly throughput: {tp['points']:,} points ({tp['series']:,} gauges x "
            f"{tp['points_per_series']} points, {tp['services']} services), pre-filled\n",
            *run_rows(tp["runs"], "points"),
        ]
        lines.append(
            f"\nScaling efficiency rate(2)/(2 x rate(1)): all busy "
            f"{tp['efficiency_all_busy']:.2f}, from ready {tp['efficiency_from_ready']:.2f}, "
            f"from spawn {tp['efficiency_from_spawn']:.2f}; points by partition "
            f"{tp['points_by_partition']} (best pairing bounds it at "
            f"{tp['efficiency_bound_best_pairing']:.2f})\n"
        )
    sp = results.get("spanmetrics")
    if sp:
        lines += [
            f"Span metrics throughput: {sp['spans']:,} spans ({sp['requests']:,} requests of "
            f"{SPANS_PER_REQUEST} spans, ~9-span traces over {sp['services']} services), "
            "pre-filled\n",
            *run_rows(sp["runs"], "spans"),
            f"\nSpans by partition (by trace id) {sp['spans_by_partition']}",
        ]
        if "efficiency_all_busy" in sp:
            lines[-1] += (
                f"; scaling efficiency rate(2)/(2 x rate(1)): all busy "
                f"{sp['efficiency_all_busy']:.2f}, from ready {sp['efficiency_from_ready']:.2f}, "
                f"from spawn {sp['efficiency_from_spawn']:.2f}"
            )
        lines.append("")
    lat = results.get("latency")
    if lat:
        lines += [
            "OTLP export -> webhook notification (agent + analyze + alert)\n",
            "| spikes | p50 ms | p99 ms | max ms | min ms | not notified | flagged before "
            "spike | background points/s |",
            "|---|---|---|---|---|---|---|---|",
            f"| {lat['spikes']} | {lat['p50_ms']:.0f} | {lat['p99_ms']:.0f} | "
            f"{lat['max_ms']:.0f} | {lat['min_ms']:.0f} | {len(lat['not_notified'])} | "
            f"{len(lat['notified_before_spike'])} | {lat['background_points_per_s']:,.0f} |",
            "",
        ]
        for name, what in (
            ("with_group_wait", "onset at the spike (group_wait applies)"),
            ("onset_before_spike_sent_at_once", "onset before the spike (sent at once)"),
        ):
            part = lat[name]
            if part["count"]:
                lines.append(
                    f"- {what}: {part['count']} spikes, p50 {part['p50_ms']:.0f} ms, "
                    f"p99 {part['p99_ms']:.0f} ms, max {part['max_ms']:.0f} ms"
                )
        lines.append("")
    lines.append("Settings: " + ", ".join(f"{k}={v}" for k, v in asdict(s).items()))
    return "\n".join(lines)


def run_rows(runs: list[dict[str, Any]], unit: str) -> list[str]:
    """The Markdown table of throughput runs (header included)."""
    rows = [
        f"| analyzers | from spawn s | from ready s | {unit}/s (ready) | all-busy {unit}/s "
        "| balanced at s | CPU s per process (after ready) | nats-server CPU s | partitions |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        cpu = ", ".join(
            f"{c:.1f} ({a:.1f})"
            for c, a in zip(r["cpu_seconds"], r["cpu_after_ready"], strict=True)
        )
        balanced = "-" if r["balanced_at"] is None else f"{r['balanced_at']:.1f}"
        held = " / ".join(",".join(h) for h in r["partitions_held"])
        rows.append(
            f"| {r['processes']} | {r['seconds_from_spawn']:.1f} | "
            f"{r['seconds_from_ready']:.1f} | {r['rate_from_ready']:,.0f} | "
            f"{r['busy_rate']:,.0f} ({r['busy_seconds']:.1f}s) | {balanced} | {cpu} | "
            f"{r['nats_cpu_seconds']:.1f} | {held} |"
        )
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", choices=["throughput", "latency"], help="run one part")
    parser.add_argument(
        "--stages",
        type=lambda v: [x.strip() for x in v.split(",") if x.strip()],
        default=list(STAGES),
        help="throughput stages, comma-separated (anomaly,spanmetrics)",
    )
    parser.add_argument(
        "--span-requests",
        type=int,
        default=4000,
        help="trace requests of 512 spans pre-filled for span metrics (4000: ~2 M spans, "
        "~15 s for one analyzer at the ~140k spans/s it reaches from the store on 2 CPUs; "
        "K=2 spends ~5 s balancing, so fewer leave it a short all-busy window)",
    )
    parser.add_argument(
        "--flush-interval", default="3s", help="analytics.spanmetrics.flush_interval (3s)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run (~1 minute): 1000 points per gauge, 32 spikes; K=2 then spends "
        "much of its run balancing, so its all-busy window is short or empty",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--series", type=int, default=2000, help="gauges pre-filled (2000)")
    parser.add_argument("--services", type=int, default=50, help="their services (50)")
    parser.add_argument("--points", type=int, default=2000, help="points per gauge (2000)")
    parser.add_argument(
        "--ks",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, 2],
        help="analyzer counts to run (1,2; efficiency needs exactly 1,2)",
    )
    parser.add_argument("--timeline", action="store_true", help="--json: add the timelines")
    parser.add_argument("--spikes", type=int, default=40, help="latency samples (40)")
    parser.add_argument("--bg-series", type=int, default=500, help="background gauges (500)")
    parser.add_argument("--gap", type=float, default=0.5, help="seconds between spikes (0.5)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds before spikes (3)")
    parser.add_argument(
        "--lease", default="15s", help="store.nats.partition_lease (keiko's default, 15s)"
    )
    parser.add_argument(
        "--fetch-timeout", default="100ms", help="analytics.anomaly.fetch_timeout (100ms)"
    )
    parser.add_argument("--group-wait", default="100ms", help="the route's group_wait (100ms)")
    parser.add_argument("--log-level", default="warning", help="keiko's logging.level")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.points, args.spikes, args.settle = 1000, 32, 2.0
        args.span_requests = min(args.span_requests, 600)
    unknown = [x for x in args.stages if x not in STAGES]
    if unknown:
        parser.error(f"--stages: unknown {unknown}; give any of {','.join(STAGES)}")
    if args.series < args.services or args.points < 1 or args.spikes < 1:
        parser.error("--series must be >= --services; --points and --spikes >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(
        partition_lease=args.lease,
        anomaly_fetch_timeout=args.fetch_timeout,
        group_wait=args.group_wait,
        log_level=args.log_level,
        spanmetrics_flush_interval=args.flush_interval,
    )
    results: dict[str, Any] = {"settings": asdict(settings), "cpus": os.cpu_count()}
    work = Path(tempfile.mkdtemp(prefix="keiko-bench-scale-"))
    progress(f"work dir {work}")
    server = NatsServer(work / "nats").start()
    try:
        if args.only in (None, "throughput") and "anomaly" in args.stages:
            results["throughput"] = bench_throughput(server, work, args, settings)
        if args.only in (None, "throughput") and "spanmetrics" in args.stages:
            results["spanmetrics"] = bench_spans(server, work, args, settings)
        if args.only in (None, "latency"):
            results["latency"] = bench_latency(server.url, work, args, settings)
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(table(results, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
