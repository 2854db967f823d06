"""Throughput of per-trace analysis (analytics.traces): spans/s for summarise (self-time,
critical path, error origins per trace), for profile over the summaries, and for reading
a spans CSV.

Traces are call trees of 10-30 spans over 12 services: each call is a client span in the
caller and a server span in the callee, calls of one span run partly in parallel and partly
in sequence, 2% of traces fail somewhere deep; rows are shuffled across traces as they
arrive from many services.

    .venv/bin/python benchmarks/trace_analysis.py [--traces 20000] [--csv] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from analytics.traces.analysis import summarise
from analytics.traces.profile import profile
from analytics.traces.readers import read_spans_csv, write_spans_csv
from analytics.traces.spans import SpanBatch

T0 = 1_700_000_000 * 10**9
SERVICES = [f"svc-{i}" for i in range(12)]


class Builder:
    """Rows of a SpanBatch built one span at a time."""

    def __init__(self) -> None:
        self.rows: list[tuple[bytes, bytes, bytes, str, str, int, int, int, bool]] = []
        self.next_id = 1

    def span(
        self, trace: bytes, parent: bytes, service: str, name: str, kind: int, t: int, d: int
    ) -> bytes:
        sid = self.next_id.to_bytes(8, "big")
        self.next_id += 1
        self.rows.append((trace, sid, parent, service, name, kind, t, t + d, False))
        return sid

    def batch(self, rng: random.Random) -> SpanBatch:
        rng.shuffle(self.rows)
        cols = list(zip(*self.rows, strict=True))
        n = len(self.rows)
        return SpanBatch(
            trace_id=list(cols[0]),
            span_id=list(cols[1]),
            parent_id=list(cols[2]),
            service=list(cols[3]),
            name=list(cols[4]),
            kind=np.array(cols[5], np.int8),
            start_ns=np.array(cols[6], np.int64),
            end_ns=np.array(cols[7], np.int64),
            error=np.array(cols[8], bool),
            peer=[""] * n,
            instance=[""] * n,
            node=[""] * n,
        )


def one_trace(b: Builder, rng: random.Random, number: int, size: int) -> None:
    trace = number.to_bytes(16, "big")
    start = T0 + number * 1_000_000
    first = len(b.rows)
    root = b.span(trace, b"", SERVICES[0], "GET /", 2, start, 0)
    open_calls = [(root, SERVICES[0], start)]
    while len(b.rows) - first < size - 1 and open_calls:
        parent, service, t = open_calls.pop(0)
        for _ in range(rng.randint(1, 3)):
            if len(b.rows) - first >= size - 1:
                break
            callee = rng.choice(SERVICES[1:])
            at = t + rng.randint(10_000, 500_000)
            d = rng.randint(100_000, 20_000_000)
            client = b.span(trace, parent, service, f"call {callee}", 3, at, d)
            server = b.span(trace, client, callee, f"handle {callee}", 2, at + 50_000, d - 100_000)
            open_calls.append((server, callee, at + 50_000))
    rows = b.rows
    end = max(r[7] for r in rows[first:])
    rows[first] = (*rows[first][:7], end + 200_000, False)
    if rng.random() < 0.02:  # fail the last span and its caller
        rows[-1] = (*rows[-1][:8], True)
        rows[-2] = (*rows[-2][:8], True)


def build(traces: int, seed: int = 1) -> SpanBatch:
    rng = random.Random(seed)
    b = Builder()
    for number in range(traces):
        one_trace(b, rng, number, rng.randint(10, 30))
    return b.batch(rng)


def best_of(runs: int, work: object) -> float:
    assert callable(work)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        work()
        times.append(time.perf_counter() - t)
    return min(times)


def time_profile(batch: SpanBatch, runs: int) -> None:
    summaries = summarise(batch)
    took = best_of(runs, lambda: profile(summaries))
    print(f"profile:   {took:.3f} s, {len(summaries) / took:,.0f} traces/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=20_000, help="traces to analyse")
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs")
    parser.add_argument("--csv", action="store_true", help="also time reading a spans CSV")
    parser.add_argument("--profile", action="store_true", help="cProfile summarise")
    args = parser.parse_args()
    batch = build(args.traces)
    n = len(batch)
    print(f"{args.traces} traces, {n} spans ({n / args.traces:.1f} per trace)")
    if args.profile:
        cProfile.runctx("summarise(batch)", globals(), {"batch": batch}, "/tmp/trace_prof")
        pstats.Stats("/tmp/trace_prof").sort_stats("cumulative").print_stats(15)
    took = best_of(args.runs, lambda: summarise(batch))
    print(f"summarise: {took:.3f} s, {n / took:,.0f} spans/s, {args.traces / took:,.0f} traces/s")
    # In a function so the summaries are freed before the CSV is read: millions of live
    # objects would slow the reader's garbage collection.
    time_profile(batch, args.runs)
    if args.csv:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "spans.csv"
            write_spans_csv(path, batch)
            took = best_of(args.runs, lambda: read_spans_csv(path))
            print(f"read CSV:  {took:.3f} s, {n / took:,.0f} spans/s")


if __name__ == "__main__":
    main()
