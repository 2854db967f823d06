#!/usr/bin/env python3
"""Append throughput of the NATS JetStream store: 250 KB records (one OTLP batch of about
1,000 spans each), acknowledged by JetStream (file storage, one local nats-server -js).

    .venv/bin/python benchmarks/nats_append.py               # 5 s per case
    .venv/bin/python benchmarks/nats_append.py --seconds 20

Cases: appends of 1 and of 8 records, one at a time and several concurrently (as a
receiver serving several clients does). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fixtures.nats import NatsServer  # noqa: E402

from keiko.records import NewRecord  # noqa: E402
from keiko.store.config import StoreConfig  # noqa: E402
from keiko.store.nats import NatsStore  # noqa: E402

RECORD_BYTES = 250_000
CASES = [(1, 1), (8, 1), (1, 8), (8, 4)]  # (records per append, concurrent appenders)
HEADER = (
    "| records per append | concurrent appends | records/s | MB/s | p50 ms | p99 ms |\n"
    "|---|---|---|---|---|---|"
)


async def measure(url: str, batch: int, concurrency: int, seconds: float) -> str:
    config = StoreConfig.model_validate(
        {
            "backend": "nats",
            "nats": {"servers": [url], "stream_prefix": f"BENCH{batch}X{concurrency}"},
            "retention": {"max_bytes": "1GiB"},  # JetStream reserves it per stream
        }
    )
    store = NatsStore(config)
    await store.start()
    records = [NewRecord("otlp.traces.v1+proto", os.urandom(RECORD_BYTES), 1000)] * batch
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def appender() -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            await store.append("traces", records)
            latencies.append(time.perf_counter() - started)

    started = time.monotonic()
    await asyncio.gather(*(appender() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    await store.shutdown()
    latencies.sort()
    rate = len(latencies) * batch / elapsed
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    return (
        f"| {batch} | {concurrency} | {rate:,.0f} | {rate * RECORD_BYTES / 1e6:,.0f} "
        f"| {p50 * 1000:.1f} | {p99 * 1000:.1f} |"
    )


async def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory(prefix="keiko-bench-nats-") as directory:
        server = NatsServer(Path(directory)).start()
        try:
            print(f"nats-server -js (file storage) on this machine ({os.cpu_count()} CPUs)\n")
            print(HEADER)
            for batch, concurrency in CASES:
                print(await measure(server.url, batch, concurrency, seconds), flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per case (default 5)")
    asyncio.run(main(parser.parse_args().seconds))
