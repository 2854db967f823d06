"""How long one root-cause ranking takes on a large case: N services in a call tree, M
series (per service: CPU, memory, latency p99, error ratio, request rate ...), P points
per series (half before the fault), and optionally traces; one service degrades.

    .venv/bin/python benchmarks/rca_speed.py                  # 50 services, 1000 series
    .venv/bin/python benchmarks/rca_speed.py --points 600 --traces 2000

Prints the time of `analytics.rca.rank.rank` (best of --repeat runs) and whether the
faulty service ranked first.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from analytics.rca.model import Case
from analytics.rca.rank import rank
from analytics.traces.spans import SpanBatch

METRICS = (
    "cpu",
    "mem",
    "latency_p99",
    "latency_p50",
    "error_ratio",
    "requests",
    "gc_pause",
    "threads",
    "disk_io",
    "net_bytes",
)


def make_case(
    services: int, series: int, points: int, traces: int, seed: int
) -> tuple[Case, float, str]:
    rng = np.random.default_rng(seed)
    names = [f"svc-{i:02d}" for i in range(services)]
    graph = [(names[(i - 1) // 2], names[i]) for i in range(1, services)]  # a binary call tree
    culprit = names[services // 2 + 1]
    at = 1_700_000_000.0
    times = at + np.arange(points, dtype=float) - points // 2
    per_service = max(1, series // services)
    frames = []
    for s in names:
        for k in range(per_service):
            metric = METRICS[k % len(METRICS)] + ("" if k < len(METRICS) else f"_{k}")
            level = rng.uniform(1, 100)
            values = level * (1 + 0.05 * rng.standard_normal(points))
            if s == culprit and metric.startswith(("cpu", "latency")):
                values[points // 2 :] *= 3
            frames.append(
                pd.DataFrame(
                    {
                        "time": times,
                        "service": s,
                        "metric": metric,
                        "value": values,
                        "instance": f"{s}-0",
                    }
                )
            )
    metrics = pd.concat(frames, ignore_index=True)
    spans = _spans(names, graph, culprit, times, traces, rng) if traces else None
    return Case(metrics, spans, graph), at, culprit


def _spans(
    names: list[str],
    graph: list[tuple[str, str]],
    culprit: str,
    times: np.ndarray,
    traces: int,
    rng: np.random.Generator,
) -> SpanBatch:
    out = SpanBatch()
    path = [names[0], names[1], names[3], names[len(names) // 2 + 1]]
    kinds, starts, ends, errors = [], [], [], []
    for t in rng.choice(times, traces):
        tid = os.urandom(16)
        parent = b""
        start = int(t * 1e9)
        for depth, s in enumerate(path):
            sid = os.urandom(8)
            slow = s == culprit and t >= times[len(times) // 2]
            out.trace_id.append(tid)
            out.span_id.append(sid)
            out.parent_id.append(parent)
            out.service.append(s)
            out.name.append("op")
            out.peer.append("")
            out.instance.append("")
            out.node.append("")
            kinds.append(2)
            starts.append(start + depth * 1000)
            ends.append(start + (200_000_000 if slow else 20_000_000) - depth * 1000)
            errors.append(False)
            parent = sid
    out.kind = np.array(kinds, np.int8)
    out.start_ns = np.array(starts, np.int64)
    out.end_ns = np.array(ends, np.int64)
    out.error = np.array(errors, bool)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument(
        "--points", type=int, default=600, help="per series (default: 10 min at 1 s)"
    )
    parser.add_argument("--traces", type=int, default=0, help="traces of 4 spans (default: none)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    case, at, culprit = make_case(args.services, args.series, args.points, args.traces, 1)
    best = float("inf")
    for _ in range(args.repeat):
        began = time.perf_counter()
        got = rank(case, at, 5)
        best = min(best, time.perf_counter() - began)
    spans = len(case.spans) if case.spans is not None else 0
    series = case.metrics[["service", "metric"]].drop_duplicates().shape[0]
    print(
        f"{args.services} services, {series} "
        f"series x {args.points} points ({len(case.metrics):,} rows), {spans:,} spans: "
        f"rank in {best:.3f}s (best of {args.repeat}); top: {[c.service for c in got[:3]]}, "
        f"culprit {culprit} {'first' if got and got[0].service == culprit else 'NOT first'}"
    )


if __name__ == "__main__":
    main()
