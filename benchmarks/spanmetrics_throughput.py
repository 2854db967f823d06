#!/usr/bin/env python3
"""Span metrics + service graph throughput on one core: spans per second through decoding
(analytics.traces.spans.decode_spans), span metrics and the service graph, the stage's
work per fetch without the store.

The workload: 50 services in a call tree (each calls 2 others), traces of ~10 spans (a
root SERVER span, CLIENT -> SERVER pairs across services, INTERNAL spans, a database
CLIENT span with db.system), 512 spans per request grouped by service the way a collector
forwards them (several resources per request), traces 2 ms apart in span time so that
the unpaired database spans expire into virtual-node edges during the run. Requests are
built once, serialized, then timed through the stage's per-fetch path (``--fetch``
requests per fetch); the figure is the median of ``--repeat`` runs.

    .venv/bin/python benchmarks/spanmetrics_throughput.py [--requests 400] [--fetch 20]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue  # noqa: E402
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status  # noqa: E402

from analytics.spanmetrics.config import SpanMetricsConfig  # noqa: E402
from analytics.spanmetrics.stage import SpanStage  # noqa: E402

MS = 1_000_000


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def trace_spans(rng: random.Random, services: int, t0: int) -> list[tuple[str, Span]]:
    """(service, span) of one trace of about 10 spans."""
    tid = os.urandom(16)
    out: list[tuple[str, Span]] = []

    def span(
        svc: str, name: str, kind: Span.SpanKind.ValueType, parent: bytes, start: int, dur: int
    ) -> bytes:
        sid = os.urandom(8)
        s = Span(
            trace_id=tid,
            span_id=sid,
            parent_span_id=parent,
            name=name,
            kind=kind,
            start_time_unix_nano=start,
            end_time_unix_nano=start + dur,
        )
        if rng.random() < 0.02:
            s.status.code = Status.STATUS_CODE_ERROR
        if kind == Span.SPAN_KIND_CLIENT:
            s.attributes.append(_kv("server.address", name.split(" ")[-1]))
            s.attributes.append(_kv("http.request.method", "GET"))
        out.append((svc, s))
        return sid

    def serve(svc_i: int, parent: bytes, start: int, depth: int) -> None:
        svc = f"svc-{svc_i:02d}"
        dur = rng.randint(2, 40) * MS
        server = span(svc, f"GET /api/{svc_i % 7}", Span.SPAN_KIND_SERVER, parent, start, dur)
        span(svc, "handler", Span.SPAN_KIND_INTERNAL, server, start + MS // 10, dur // 2)
        if depth >= 2 or svc_i * 2 + 1 >= services:
            db = span(svc, "SELECT orders", Span.SPAN_KIND_CLIENT, server, start + MS, MS)
            out[-1][1].attributes.append(_kv("db.system", "postgresql"))
            del db
            return
        child = rng.choice((svc_i * 2 + 1, min(svc_i * 2 + 2, services - 1)))
        callee = f"svc-{child:02d}"
        client = span(svc, f"GET {callee}", Span.SPAN_KIND_CLIENT, server, start + MS, dur // 2)
        serve(child, client, start + MS + MS // 5, depth + 1)

    serve(rng.randrange(0, 3), b"", t0, 0)
    return out


def _request(spans: list[tuple[str, Span]]) -> bytes:
    request = ExportTraceServiceRequest()
    by_service: dict[str, list[Span]] = {}
    for svc, s in spans:
        by_service.setdefault(svc, []).append(s)
    for svc, group in by_service.items():
        rs = request.resource_spans.add()
        rs.resource.attributes.append(_kv("service.name", svc))
        rs.scope_spans.add().spans.extend(group)
    return request.SerializeToString()


def build_requests(n: int, services: int = 50, per: int = 512, sdk: bool = False) -> list[bytes]:
    """``n`` serialized requests of ``per`` spans each: spans in trace order, grouped by
    service within a request (a collector forwarding); with ``sdk``, one service per
    request, sent when that service has ``per`` spans (each SDK's batch processor), so a
    busy service's spans arrive long before its rarely called callees'."""
    rng = random.Random(7)
    t0 = time.time_ns() - 3600 * 10**9
    pending: list[tuple[str, Span]] = []
    buffers: dict[str, list[tuple[str, Span]]] = {}
    out: list[bytes] = []
    while len(out) < n:
        t0 += 2 * MS  # 500 traces per second of span time: waiting spans expire
        spans = trace_spans(rng, services, t0)
        if not sdk:
            pending += spans
            if len(pending) >= per:
                out.append(_request(pending[:per]))
                pending = pending[per:]
            continue
        for svc, span in spans:
            buffer = buffers.setdefault(svc, [])
            buffer.append((svc, span))
            if len(buffer) == per:
                out.append(_request(buffer))
                buffers[svc] = []
    return out[:n]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests of 512 spans")
    parser.add_argument("--fetch", type=int, default=20, help="requests per fetch")
    parser.add_argument(
        "--sdk", action="store_true", help="one service per request, as SDKs send them"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs (a fresh stage each)")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the run")
    args = parser.parse_args()
    payloads = build_requests(args.requests, sdk=args.sdk)
    spans = args.requests * 512
    fetches = [payloads[i : i + args.fetch] for i in range(0, len(payloads), args.fetch)]
    stage = SpanStage(SpanMetricsConfig())

    def run() -> float:
        nonlocal stage
        stage = SpanStage(SpanMetricsConfig())
        began = time.perf_counter()
        for fetch in fetches:
            stage.observe_payloads(fetch)
        return time.perf_counter() - began

    if args.profile:
        import cProfile
        import pstats

        with cProfile.Profile() as prof:
            run()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        return 0
    runs = sorted(run() for _ in range(args.repeat))
    seconds = runs[len(runs) // 2]
    g = stage.graph
    print(
        f"{spans} spans in {len(payloads)} requests, median of {len(runs)} runs {seconds:.2f}s: "
        f"{spans / seconds:,.0f} spans/s (best {spans / runs[0]:,.0f}; one core); "
        f"{len(stage.metrics)} series, "
        f"{len(g.edges)} edges, {g.stats.pairs} pairs, {g.pending} waiting, "
        f"{g.stats.virtual} virtual, {sum(g.stats.unpaired.values())} unpaired"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
