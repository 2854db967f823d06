#!/usr/bin/env python3
"""Alert ingest through the Alertmanager API v2, keiko side by side with Alertmanager 0.25,
and event-to-delivery latency to a webhook receiver.

Both servers run pinned to core 0 (``taskset -c 0``), one at a time, and get the same
client on core 1: ``--connections`` keep-alive HTTP/1.1 connections each posting
Prometheus-shaped batches of ``--batch`` alerts (64) drawn in turn from a pool of
``--alerts`` distinct alerts, as Prometheus re-sends its firing alerts. keiko stores every
accepted request durably before it answers (embedded store, SQLite WAL); Alertmanager
keeps alerts in memory (its silences and notification log are snapshotted to disk every
15 minutes).

Latency: a webhook receiver in this process; every ``--interval`` a new alert whose own
group has ``group_wait: 0s`` is posted; the time from the POST to the webhook's arrival.

    .venv/bin/python benchmarks/alert_ingest.py                  # both, ~1 minute
    .venv/bin/python benchmarks/alert_ingest.py --only keiko     # or: alertmanager

Prints a Markdown summary; raw figures go to benchmarks/out/alert_ingest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
sys.path.insert(0, str(ROOT / "benchmarks"))
from ingest import free_port  # noqa: E402


def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def alert_pool(n: int) -> list[dict[str, Any]]:
    """Distinct alerts shaped like Prometheus' (labels, annotations, times, generatorURL)."""
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        out.append(
            {
                "labels": {
                    "alertname": f"Alert{i % 50}",
                    "instance": f"10.0.{i // 256 % 256}.{i % 256}:9100",
                    "job": "node",
                    "service": f"svc{i % 200}",
                    "severity": ("page", "ticket", "info")[i % 3],
                },
                "annotations": {"summary": f"alert {i} on svc{i % 200} is firing"},
                "startsAt": rfc3339(now - timedelta(minutes=5)),
                "endsAt": rfc3339(now + timedelta(hours=2)),
                "generatorURL": f"http://prometheus:9090/graph?g0.expr=up%7Bi%3D{i}%7D",
            }
        )
    return out


def requests(pool: list[dict[str, Any]], batch: int) -> list[bytes]:
    """Pre-built POST requests, so the client spends its time on the wire."""
    out = []
    for k in range(0, len(pool), batch):
        body = json.dumps(pool[k : k + batch]).encode()
        head = (
            "POST /api/v2/alerts HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        out.append(head + body)
    return out


async def _response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    if length:
        await reader.readexactly(length)
    return status


async def hammer(port: int, reqs: list[bytes], connections: int, seconds: float) -> dict[str, Any]:
    """Post ``reqs`` round-robin on ``connections`` connections for ``seconds``."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    stop = time.monotonic() + seconds
    counter = 0

    async def one(k: int) -> None:
        nonlocal counter
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k
        while time.monotonic() < stop:
            began = time.perf_counter()
            writer.write(reqs[i % len(reqs)])
            status = await _response(reader)
            latencies.append(time.perf_counter() - began)
            statuses[status] = statuses.get(status, 0) + 1
            counter += 1
            i += connections
        writer.close()

    began = time.monotonic()
    await asyncio.gather(*(one(k) for k in range(connections)))
    took = time.monotonic() - began
    latencies.sort()
    ok = statuses.get(200, 0)
    return {
        "requests": counter,
        "statuses": statuses,
        "seconds": round(took, 2),
        "requests_per_s": round(ok / took, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2) if latencies else None,
    }


class Hook:
    """A webhook receiver: notes when each alertname arrives."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.port = free_port()

    async def serve(self) -> asyncio.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = next(
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    )
                    body = json.loads(await reader.readexactly(length))
                    now = time.perf_counter()
                    for a in body.get("alerts", []):
                        self.arrived.setdefault(a["labels"]["alertname"], now)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                writer.close()

        return await asyncio.start_server(handle, "127.0.0.1", self.port)


async def latency(port: int, hook: Hook, count: int, interval: float) -> dict[str, Any]:
    """Post a new single-alert group every ``interval``; POST-to-webhook times."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent: dict[str, float] = {}
    tag = int(time.time())
    for i in range(count):
        name = f"Latency{tag}x{i}"
        body = json.dumps([{"labels": {"alertname": name, "probe": "latency"}}]).encode()
        sent[name] = time.perf_counter()
        writer.write(
            f"POST /api/v2/alerts HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await _response(reader)
        await asyncio.sleep(interval)
    deadline = time.monotonic() + 10
    while len(hook.arrived) < count and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    writer.close()
    times = sorted((hook.arrived[n] - t) * 1000 for n, t in sent.items() if n in hook.arrived)
    if not times:
        return {"delivered": 0}
    return {
        "delivered": len(times),
        "sent": count,
        "p50_ms": round(statistics.median(times), 1),
        "p90_ms": round(times[int(len(times) * 0.9)], 1),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
    }


async def drained(port: int) -> float:
    """Seconds until keiko's alert engine has no lag on the alerts stream."""
    began = time.monotonic()
    while time.monotonic() - began < 120:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/store/stats") as r:
            stats = json.loads(r.read())
        stream = next(s for s in stats["streams"] if s["name"] == "alerts")
        group = next((g for g in stream["groups"] if g["group"] == "alerting"), None)
        if group is not None and group["lag_records"] == 0:
            return round(time.monotonic() - began, 2)
        await asyncio.sleep(0.1)
    return float("nan")


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.2)
    raise SystemExit(f"server did not become ready; see {log}")


def start_keiko(tmp: Path, hook_port: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    api = free_port()
    config = {
        "store": {"embedded": {"path": str(tmp / "keiko-data")}},
        "api": {"endpoint": f"127.0.0.1:{api}"},
        "logging": {"level": "warning"},
        "receivers": {"otlp": {"enabled": False}},
        "probes": {"ebpf": {"enabled": False}},
        "alerting": {"router": _routing(hook_port)},
    }
    path = tmp / "keiko.yaml"
    path.write_text(json.dumps(config))
    log = tmp / "keiko.log"
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "keiko.cli", "run", "--config", str(path)]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stderr=out)
    wait_ready(f"http://127.0.0.1:{api}/readyz", proc, log)
    return proc, api, log


def _routing(hook_port: int) -> dict[str, Any]:
    """The same routing for both: the load goes to a receiver with no integrations, the
    latency probe to the webhook with group_wait 0s."""
    return {
        "route": {
            "receiver": "blackhole",
            "group_by": ["alertname"],
            "group_wait": "30s",
            "routes": [
                {
                    "receiver": "hook",
                    "matchers": ['probe="latency"'],
                    "group_wait": "0s",
                }
            ],
        },
        "receivers": [
            {"name": "blackhole"},
            {"name": "hook", "webhook_configs": [{"url": f"http://127.0.0.1:{hook_port}/"}]},
        ],
    }


def start_alertmanager(tmp: Path, hook_port: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    port, cluster = free_port(), free_port()
    path = tmp / "alertmanager.yml"
    path.write_text(json.dumps(_routing(hook_port)))
    log = tmp / "alertmanager.log"
    cmd = [
        "taskset",
        "-c",
        "0",
        ALERTMANAGER,
        f"--config.file={path}",
        f"--storage.path={tmp / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--cluster.listen-address=127.0.0.1:{cluster}",
    ]
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out)
    wait_ready(f"http://127.0.0.1:{port}/-/ready", proc, log)
    return proc, port, log


async def measure(
    name: str, tmp: Path, args: argparse.Namespace, reqs: list[bytes]
) -> dict[str, Any]:
    hook = Hook()
    server = await hook.serve()
    starter = start_keiko if name == "keiko" else start_alertmanager
    os.sync()
    (tmp / name).mkdir()
    proc, port, _ = starter(tmp / name, hook.port)
    try:
        await hammer(port, reqs, args.connections, 2.0)  # warm-up: every alert known
        load = await hammer(port, reqs, args.connections, args.seconds)
        load["alerts_per_s"] = round(load["requests_per_s"] * args.batch)
        if name == "keiko":  # accepted is stored; how long until the engine has read it all
            load["engine_drain_s"] = await drained(port)
            total = load["statuses"].get(200, 0) * args.batch
            load["processed_alerts_per_s"] = round(
                total / (load["seconds"] + load["engine_drain_s"])
            )
        idle = await latency(port, hook, args.probes, args.interval)
        return {"load": load, "latency": idle, "rss_mib": _rss_mib(proc.pid)}
    finally:
        server.close()
        proc.terminate()
        proc.wait(30)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", choices=["keiko", "alertmanager"])
    p.add_argument("--alerts", type=int, default=10_000, help="distinct alerts in the pool")
    p.add_argument("--batch", type=int, default=64, help="alerts per request")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--seconds", type=float, default=15.0, help="load duration per server")
    p.add_argument("--probes", type=int, default=100, help="latency probes per server")
    p.add_argument("--interval", type=float, default=0.05, help="seconds between probes")
    args = p.parse_args()
    os.sched_setaffinity(0, {1})  # the client on core 1, the servers on core 0
    reqs = requests(alert_pool(args.alerts), args.batch)
    results: dict[str, Any] = {"args": vars(args), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="alert-ingest-") as tmp:
        for name in ("alertmanager", "keiko"):
            if args.only in (None, name):
                print(f"measuring {name} ...", file=sys.stderr)
                results[name] = asyncio.run(measure(name, Path(tmp), args, reqs))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "alert_ingest.json").write_text(json.dumps(results, indent=2))
    print("| server | alerts/s | requests/s | request p50 / p99 | POST→webhook p50 / p90 / p99 |")
    print("|---|---|---|---|---|")
    for name in ("alertmanager", "keiko"):
        if name in results:
            r = results[name]
            ld, lt = r["load"], r["latency"]
            print(
                f"| {name} | {ld['alerts_per_s']:,} | {ld['requests_per_s']} | "
                f"{ld['p50_ms']} / {ld['p99_ms']} ms | {lt.get('p50_ms')} / {lt.get('p90_ms')} / "
                f"{lt.get('p99_ms')} ms ({lt.get('delivered')}/{args.probes}) |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
