"""Anomaly detection throughput and memory per series (issue target: >= 200,000 points/s on
one core with 10,000 live series; <= 2 KiB per series).

Two measurements, both single-threaded:

* **detector**: `DetectorBank.score_learn` on batches holding one point of each of the
  10,000 series (the per-series path: score, then learn), values a noisy daily pattern with
  occasional spikes so every code path runs;
* **decode + detect**: the streaming component's work per record without the store: OTLP
  metrics requests of 1,000 gauge points (100 series x 10 points) decoded into series and
  scored, over the same 10,000 series.

Memory: the detector state per series (exact), and the Python heap growth per series of the
series table + decoder once 10,000 series were seen (tracemalloc).

    .venv/bin/python benchmarks/detect_throughput.py [--series 10000] [--seconds 5] [--steps 12]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from analytics.anomaly.bank import DetectorBank
from analytics.series import build
from analytics.series.decode import MetricsDecoder
from analytics.series.table import SeriesTable

T0 = 1_700_000_000.0


def values(step: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """A daily pattern per series plus noise, with a spike in 0.1% of points."""
    daily = 10 * np.sin(2 * np.pi * (step * 60 % 86400) / 86400 + np.arange(n) * 0.01)
    out = 100 + daily + rng.normal(0, 2, n)
    out[rng.random(n) < 0.001] += 50
    return out


def bench_detector(n: int, seconds: float) -> float:
    """Points/s through DetectorBank.score_learn, one point per series per batch."""
    bank = DetectorBank(n)
    ids = np.arange(n)
    rng = np.random.default_rng(1)
    batches = [values(s, n, rng) for s in range(64)]
    for s in range(200):  # past the warm-up, so scoring runs in full
        bank.score_learn(ids, np.full(n, T0 + 60 * s), batches[s % 64])
    points, step = 0, 200
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        bank.score_learn(ids, np.full(n, T0 + 60 * step), batches[step % 64])
        points += n
        step += 1
    return points / (time.perf_counter() - started)


def request(step: int, first: int, rng: np.random.Generator) -> bytes:
    """1,000 gauge points: series first..first+99, 10 points each (10 s apart)."""
    req, scope = build.request({"service.name": "bench", "host.name": "node-1"})
    for m in range(10):
        pts = [
            ({"pod": f"p{first + m * 10 + s}"}, T0 + step * 100 + k * 10, float(v))
            for s in range(10)
            for k, v in enumerate(values(step, 10, rng))
        ]
        build.gauge(scope, f"bench.metric{(first // 100) % 100}.{m}", pts)
    return req.SerializeToString()


def bench_pipeline(n: int, steps: int) -> tuple[float, float]:
    """Points/s through decode + detect (request building not timed), and the heap bytes
    per series of the series table + decoder (the detector's state is counted exactly)."""
    rng = np.random.default_rng(2)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table = SeriesTable(max_series=2 * n)
    decoder = MetricsDecoder(table)
    for first in range(0, n, 100):  # every series seen once: its table row and decoder state
        decoder.decode(request(0, first, rng))
    heap = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    bank = DetectorBank(n)
    points, elapsed = 0, 0.0
    for step in range(1, steps + 1):  # 10 points per series per step: 6 steps pass the warm-up
        payloads = [request(step, first, rng) for first in range(0, n, 100)]
        started = time.perf_counter()
        for payload in payloads:
            points += _detect(decoder, bank, payload)
        if step > 6:
            elapsed += time.perf_counter() - started
        else:
            points = 0
    assert len(table) == n, f"{len(table)} series, expected {n}"
    return points / elapsed, heap / n


def _detect(decoder: MetricsDecoder, bank: DetectorBank, payload: bytes) -> int:
    batch = decoder.decode(payload)
    bank.score_learn(batch.series, batch.times, batch.values)
    return len(batch)


def main() -> None:
    """Run both measurements and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="detector run time")
    parser.add_argument("--steps", type=int, default=12, help="decode+detect steps (6 warm)")
    args = parser.parse_args()
    detector = bench_detector(args.series, args.seconds)
    pipeline, heap_per_series = bench_pipeline(args.series, args.steps)
    state = DetectorBank(1).bytes_per_series
    print(f"{args.series:,} live series, one core")
    print(f"  detector (score_learn, batches of {args.series:,})   {detector:>12,.0f} points/s")
    print(f"  decode + detect (1,000-point OTLP requests)     {pipeline:>12,.0f} points/s")
    print(f"  detector state per series                       {state:>12,} bytes")
    print(f"  series table + decoder heap per series          {heap_per_series:>12,.0f} bytes")


if __name__ == "__main__":
    main()
