"""Decode throughput of analytics.series.MetricsDecoder: points/s for gauges, sums, histograms.

Each case decodes a stream of requests of ~1000 points from ~100 series (5 attributes each,
like the eBPF agent's cgroup/container/pod labels), the same series in every request with
advancing times, so the steady state (ids cached, counter state warm) is what is measured.

    .venv/bin/python benchmarks/series_decode.py [--requests 300] [--profile gauge]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable

from analytics.series import build
from analytics.series.decode import MetricsDecoder
from analytics.series.table import SeriesTable

T0 = 1_700_000_000.0
BOUNDS = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0]


def attrs(s: int) -> dict[str, str]:
    """Five eBPF-agent-like labels of series s."""
    return {
        "cgroup.path": f"/kubepods/burstable/pod{s}/c{s}",
        "container.id": f"{s:064x}",
        "k8s.pod.name": f"web-{s}",
        "k8s.namespace.name": "default",
        "k8s.pod.uid": f"uid-{s}",
    }


def gauges(i: int, series: int, per: int) -> bytes:
    req, scope = build.request({"service.name": "keiko-ebpf", "host.name": "node-1"})
    for m in range(series // 10):
        pts = [
            (attrs(m * 10 + s), T0 + i * per + k, float(k + s))
            for s in range(10)
            for k in range(per)
        ]
        build.gauge(scope, f"keiko.ebpf.metric{m}", pts)
    return req.SerializeToString()


def sums(i: int, series: int, per: int) -> bytes:
    req, scope = build.request({"service.name": "app", "host.name": "node-1"})
    for m in range(series // 10):
        pts = [
            (attrs(m * 10 + s), T0, T0 + i * per + k + 1, 10.0 * (i * per + k + 1))
            for s in range(10)
            for k in range(per)
        ]
        build.monotonic_sum(scope, f"app.requests{m}", pts)
    return req.SerializeToString()


def histograms(i: int, series: int, per: int) -> bytes:
    req, scope = build.request({"service.name": "app", "host.name": "node-1"})
    for m in range(series // 10):
        pts = []
        for s in range(10):
            for k in range(per):
                n = i * per + k + 1
                pts.append((attrs(m * 10 + s), T0, T0 + n, [n * (j + 1) for j in range(12)]))
        build.histogram(scope, f"app.latency{m}", BOUNDS, pts)
    return req.SerializeToString()


CASES: dict[str, Callable[[int, int, int], bytes]] = {
    "gauge": gauges,
    "cumulative sum": sums,
    "histogram (rate+p50/p95/p99)": histograms,
}


def payloads(
    make: Callable[[int, int, int], bytes], requests: int, series: int, per: int
) -> list[bytes]:
    """The request stream of one case, built beforehand (building is not measured)."""
    return [make(i, series, per) for i in range(requests)]


def run(stream: list[bytes], points_per_request: int) -> tuple[float, int]:
    """Input points/s of decode over the stream after a warm-up request, and points out."""
    decoder = MetricsDecoder(SeriesTable(100_000))
    decoder.decode(stream[0])  # warm: ids interned, counter state set
    out = 0
    start = time.perf_counter()
    for p in stream[1:]:
        out += len(decoder.decode(p))
    elapsed = time.perf_counter() - start
    return (len(stream) - 1) * points_per_request / elapsed, out


def main() -> int:
    """Print a table of points/s per case."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--requests", type=int, default=300, help="requests per case (default 300)")
    ap.add_argument("--series", type=int, default=100, help="series per request (default 100)")
    ap.add_argument(
        "--per", type=int, default=10, help="points per series per request (default 10)"
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs per case, best kept (default 3)")
    ap.add_argument("--profile", choices=["gauge", "sum", "histogram"], help="cProfile one case")
    args = ap.parse_args()
    if args.profile:
        cases: dict[str, Callable[[int, int, int], bytes]] = {
            "gauge": gauges,
            "sum": sums,
            "histogram": histograms,
        }
        stream = payloads(cases[args.profile], args.requests, args.series, args.per)
        n = args.series * args.per
        cProfile.runctx("run(stream, n)", globals(), locals(), "/tmp/series.prof")
        pstats.Stats("/tmp/series.prof").sort_stats("tottime").print_stats(15)
        return 0
    print(
        f"{args.series} series x {args.per} points per request, {args.requests} requests, one core"
    )
    print(f"{'case':30} {'input points/s':>15} {'points out/req':>15}")
    for name, make in CASES.items():
        stream = payloads(make, args.requests, args.series, args.per)
        rate, out = min(
            (run(stream, args.series * args.per) for _ in range(args.repeat)), key=lambda r: -r[0]
        )
        print(f"{name:30} {rate:15,.0f} {out / (args.requests - 1):15,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
