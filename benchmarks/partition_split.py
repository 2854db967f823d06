"""Cost of keiko.partitioning.split: µs per span (traces) and per data point (metrics).

The NATS store calls split on every append to a partitioned stream, on the path that
acknowledges an OTLP export, so its cost is paid per item received. The requests are made
with the OpenTelemetry SDK and encoded by its OTLP exporter's encoders:

- traces: 512 spans (server + client pairs, ~10 attributes each) from 3 resources;
- metrics: 8 services x 64 points (a counter, a histogram, a gauge) = 512 points.

Two rows rebuild the pieces from parsed messages with upb (``spans.extend`` and
``add().CopyFrom``) and serialise them, the obvious alternative to split's cutting of the
wire bytes, for comparison. The time of the upb parse alone is shown too.

    .venv/bin/python benchmarks/partition_split.py [--iterations 300] [--profile traces]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData, ResourceMetrics
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.util.types import AttributeValue

from keiko.partitioning import partition_of, split
from keiko.records import Kind, NewRecord

SERVER_ATTRS: dict[str, AttributeValue] = {
    "http.request.method": "GET",
    "http.route": "/cart/{id}",
    "http.response.status_code": 200,
    "url.scheme": "https",
    "url.path": "/cart/42",
    "server.address": "shop.example.com",
    "server.port": 443,
    "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) bench/1.0",
    "network.protocol.version": "1.1",
    "client.address": "10.1.2.3",
}
CLIENT_ATTRS: dict[str, AttributeValue] = {
    "db.system": "postgresql",
    "db.namespace": "carts",
    "db.operation.name": "SELECT",
    "db.query.text": "SELECT * FROM carts WHERE id = $1",
    "db.response.returned_rows": 3,
    "server.address": "db.internal",
    "server.port": 5432,
    "retry": False,
    "cache.hit_ratio": 0.25,
    "tags": ("a", "b"),
}


def resource(n: int) -> Resource:
    """An SDK resource of service n, as the k8s resource detectors would fill it."""
    return Resource.create(
        {
            "service.name": f"svc{n}",
            "service.namespace": "shop",
            "service.version": "1.4.2",
            "host.name": f"node-{n % 3}",
            "k8s.namespace.name": "shop",
            "k8s.pod.name": f"svc{n}-7d9f-{n:05d}",
        }
    )


def traces_request(spans: int = 512, resources: int = 3) -> bytes:
    """``spans`` SDK spans (server/client pairs, one trace each) from ``resources`` services."""
    finished: list[ReadableSpan] = []
    for r in range(resources):
        memory = InMemorySpanExporter()
        provider = TracerProvider(resource=resource(r))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = provider.get_tracer("bench.http", "1.0")
        want = spans // resources + (r < spans % resources)
        while len(memory.get_finished_spans()) < want:
            server = tracer.start_as_current_span(
                "GET /cart", kind=SpanKind.SERVER, attributes=SERVER_ATTRS
            )
            with server:
                if len(memory.get_finished_spans()) < want - 1:
                    with tracer.start_as_current_span(
                        "SELECT", kind=SpanKind.CLIENT, attributes=CLIENT_ATTRS
                    ):
                        pass
        finished.extend(memory.get_finished_spans())
        provider.shutdown()
    return encode_spans(finished).SerializeToString()


def metrics_request(services: int = 8) -> bytes:
    """64 points per service: a counter and a histogram of 20 series each, 24 gauges."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("bench.metrics", "1.0")
    requests = meter.create_counter("http.server.requests")
    latency = meter.create_histogram("http.server.duration", unit="ms")
    depth = meter.create_gauge("queue.depth")
    for s in range(20):
        labels: dict[str, str | int] = {
            "http.route": f"/r{s}",
            "http.response.status_code": 200 + s % 3,
        }
        requests.add(s + 1, labels)
        latency.record(5.0 + s, labels)
    for q in range(24):
        depth.set(q, {"queue": f"q{q}"})
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    (template,) = data.resource_metrics
    per_service = [
        ResourceMetrics(resource(n), template.scope_metrics, "") for n in range(services)
    ]
    return encode_metrics(MetricsData(per_service)).SerializeToString()


def rebuild(payload: bytes, count: int, extend: bool) -> list[bytes]:
    """The alternative: parse, group spans per partition, copy them into new requests."""
    request = ExportTraceServiceRequest.FromString(payload)
    groups: dict[int, list[tuple[object, object, list[Span]]]] = {}
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            by_part: dict[int, list[Span]] = {}
            for span in ss.spans:
                by_part.setdefault(partition_of(span.trace_id, count), []).append(span)
            for p, spans in by_part.items():
                groups.setdefault(p, []).append((rs, ss, spans))
    out = []
    for _, items in sorted(groups.items()):
        piece = ExportTraceServiceRequest()
        last = None
        for rs, ss, spans in items:
            if rs is not last:
                new_rs = piece.resource_spans.add()
                new_rs.resource.CopyFrom(rs.resource)  # type: ignore[attr-defined]
                new_rs.schema_url = rs.schema_url  # type: ignore[attr-defined]
                last = rs
            new_ss = new_rs.scope_spans.add()
            new_ss.scope.CopyFrom(ss.scope)  # type: ignore[attr-defined]
            new_ss.schema_url = ss.schema_url  # type: ignore[attr-defined]
            if extend:
                new_ss.spans.extend(spans)
            else:
                for span in spans:
                    new_ss.spans.add().CopyFrom(span)
        out.append(piece.SerializeToString())
    return out


def cases(traces: bytes, metrics: bytes) -> dict[str, tuple[Callable[[], object], int]]:
    """Name -> (one run, items per run)."""
    trace_record = NewRecord(Kind.OTLP_TRACES, traces, 512)
    metric_record = NewRecord(Kind.OTLP_METRICS, metrics, 512)
    return {
        "traces, split into 4": (lambda: split(trace_record, 4), 512),
        "traces, split into 8": (lambda: split(trace_record, 8), 512),
        "traces, upb rebuild (extend), 4": (lambda: rebuild(traces, 4, True), 512),
        "traces, upb rebuild (CopyFrom), 4": (lambda: rebuild(traces, 4, False), 512),
        "traces, upb parse only": (lambda: ExportTraceServiceRequest.FromString(traces), 512),
        "metrics, split into 4": (lambda: split(metric_record, 4), 512),
        "metrics, split into 8": (lambda: split(metric_record, 8), 512),
    }


def timed(run: Callable[[], object], iterations: int, repeat: int) -> float:
    """Best seconds per run over ``repeat`` rounds of ``iterations`` runs."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(iterations):
            run()
        best = min(best, (time.perf_counter() - start) / iterations)
    return best


def main() -> int:
    """Print µs per item and per request for each case."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--iterations", type=int, default=300, help="runs per round (default 300)")
    ap.add_argument("--repeat", type=int, default=5, help="rounds per case, best kept (default 5)")
    ap.add_argument(
        "--profile", choices=["traces", "metrics"], help="cProfile split into 4 instead"
    )
    args = ap.parse_args()
    traces, metrics = traces_request(), metrics_request()
    table = cases(traces, metrics)
    if args.profile:
        run = table[f"{args.profile}, split into 4"][0]
        profile = cProfile.Profile()
        profile.runcall(lambda: [run() for _ in range(args.iterations)])
        pstats.Stats(profile).sort_stats("tottime").print_stats(12)
        return 0
    print(f"traces: 512 spans, {len(traces):,} bytes; metrics: 512 points, {len(metrics):,} bytes")
    print(f"{'case':36} {'µs/item':>8} {'µs/request':>11}")
    for name, (run, items) in table.items():
        seconds = timed(run, args.iterations, args.repeat)
        print(f"{name:36} {seconds * 1e6 / items:8.2f} {seconds * 1e6:11.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
