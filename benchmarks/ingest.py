#!/usr/bin/env python3
"""OTLP ingest benchmark: throughput, ack latency, durability after kill -9, memory.

keiko runs pinned to core 0 (``taskset -c 0``) on the embedded store; the shared load
generator ``../shared/tools/otlp_load.py`` runs on core 1, so the figures compare with
other receivers measured by the same tool. Every acknowledged request is durable against
a process crash (SQLite WAL, synchronous=NORMAL: the data is in the OS before the ack).

    .venv/bin/python benchmarks/ingest.py                 # everything (~3 minutes)
    .venv/bin/python benchmarks/ingest.py --only grpc     # one part: grpc http durability memory

Writes a Markdown summary to stdout and the raw reports to benchmarks/out/.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LOAD = ROOT.parent / "shared" / "tools" / "otlp_load.py"
OUT = ROOT / "benchmarks" / "out"
KEIKO = [sys.executable, "-m", "keiko.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Keiko:
    """`keiko run` pinned to core 0 with a fresh data directory and free ports."""

    def __init__(self, data: Path, extra: str = "") -> None:
        self.data = data
        self.grpc, self.http, self.api = free_port(), free_port(), free_port()
        self.config = data.parent / f"{data.name}.yaml"
        self.config.write_text(
            f"store:\n  embedded:\n    path: {data}\n{extra}"
            f"receivers:\n  otlp:\n    grpc: {{endpoint: 127.0.0.1:{self.grpc}}}\n"
            f"    http: {{endpoint: 127.0.0.1:{self.http}}}\n"
            f"api:\n  endpoint: 127.0.0.1:{self.api}\nlogging:\n  level: warning\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> int:
        # Flush what earlier parts wrote: kernel writeback of their dirty pages would
        # otherwise compete for the core under test and blur the figures.
        os.sync()
        cmd = ["taskset", "-c", "0", *KEIKO, "run", "--config", str(self.config)]
        with open(self.data.parent / "keiko.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.api}/readyz", timeout=1):
                    return self.proc.pid
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"keiko did not become ready; see {self.data.parent / 'keiko.log'}")

    def rss_kib(self, field: str = "VmHWM") -> int:
        assert self.proc
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        return 0

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)


def load(args: list[str], name: str) -> dict[str, Any]:
    """Run otlp_load.py on core 1 and return its JSON report."""
    OUT.mkdir(parents=True, exist_ok=True)
    report = OUT / f"{name}.json"
    cmd = [sys.executable, str(LOAD), "--client-cpu", "1", "--quiet", "--json", str(report), *args]
    print(f"$ {' '.join(cmd[1:])}", file=sys.stderr)
    subprocess.run(cmd, check=False, stdout=sys.stderr)
    return json.loads(report.read_text()) if report.exists() else {}


def throughput(tmp: Path, transport: str, duration: float) -> dict[str, Any]:
    """The maximum rate, then the ack latency at half of it (each on a fresh keiko and store,
    so the second run does not pay for flushing what the first one wrote)."""
    reports: dict[str, Any] = {}
    for part in ("max", "half"):
        k = Keiko(tmp / f"data-{transport}-{part}")
        pid = k.start()
        try:
            ep = (
                ["--endpoint", f"127.0.0.1:{k.grpc}"]
                if transport == "grpc"
                else ["--transport", "http", "--endpoint", f"http://127.0.0.1:{k.http}/v1/traces"]
            )
            args = [*ep, "--duration", str(duration), "--server-pid", str(pid)]
            if part == "half":
                half = max(1, int(reports["max"].get("acked_requests_per_s", 0) / 2))
                args += ["--rate", str(half), "--concurrency", "32"]
            reports[part] = load(args, f"{part}-{transport}")
            reports[f"{part}_peak_rss_kib"] = k.rss_kib()
        finally:
            k.stop()
    return {
        "max": reports["max"],
        "half": reports["half"],
        "peak_rss_kib": max(reports["max_peak_rss_kib"], reports["half_peak_rss_kib"]),
    }


def durability(tmp: Path) -> dict[str, Any]:
    """Load, kill -9 mid-stream, restart, compare acked trace ids with what keiko holds."""
    k = Keiko(tmp / "data-crash")
    k.start()
    ids = OUT / "acked-ids.json"
    loader = subprocess.Popen(
        [
            sys.executable,
            str(LOAD),
            "--client-cpu",
            "1",
            "--quiet",
            "--endpoint",
            f"127.0.0.1:{k.grpc}",
            "--duration",
            "8",
            "--ids-file",
            str(ids),
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(5)
    k.stop(signal.SIGKILL)
    loader.wait()
    k.start()
    dump = OUT / "store-trace-ids.txt"
    with open(dump, "w") as f:
        subprocess.run(
            [*KEIKO, "store", "trace-ids", "--config", str(k.config)], stdout=f, check=True
        )
    check = subprocess.run(
        [sys.executable, str(LOAD), "--check-ids", str(ids), str(dump)],
        capture_output=True,
        text=True,
    )
    k.stop()
    return {"exit": check.returncode, "report": check.stdout.strip() + check.stderr.strip()}


def memory(tmp: Path, backlog_gib: float) -> dict[str, Any]:
    """RSS as the backlog grows to ``backlog_gib`` on disk: it must not grow with it.

    Nothing consumes the traces stream here, so all of it is backlog. With compression,
    1 GiB on disk holds about ten times as much OTLP as appended.
    """
    k = Keiko(tmp / "data-mem")
    pid = k.start()
    points = []
    while True:
        load(
            [
                "--endpoint",
                f"127.0.0.1:{k.grpc}",
                "--duration",
                "4",
                "--warmup",
                "0.5",
                "--server-pid",
                str(pid),
            ],
            "memory-fill",
        )
        out = subprocess.run(
            [*KEIKO, "store", "stats", "--json", "--config", str(k.config)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        stats = json.loads(out)
        point = {
            "appended_bytes": sum(s["bytes"] for s in stats["streams"]),
            "disk_bytes": stats["disk_bytes"],
            "rss_kib": k.rss_kib("VmRSS"),
            "peak_rss_kib": k.rss_kib(),
        }
        points.append(point)
        print(
            f"backlog {point['disk_bytes'] / 1024**3:.2f} GiB on disk "
            f"({point['appended_bytes'] / 1024**3:.1f} GiB appended), "
            f"RSS {point['rss_kib'] / 1024:.0f} MiB",
            file=sys.stderr,
        )
        if point["disk_bytes"] >= backlog_gib * 1024**3:
            break
    k.stop()
    return {"points": points}


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", choices=["grpc", "http", "durability", "memory"], action="append")
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--backlog-gib", type=float, default=1.0)
    args = ap.parse_args()
    parts = args.only or ["grpc", "http", "durability", "memory"]
    results: dict[str, Any] = {"machine": f"{os.cpu_count()} cores, {os.uname().release}"}
    with tempfile.TemporaryDirectory(prefix="keiko-bench-") as tmp:
        for part in parts:
            if part in ("grpc", "http"):
                results[part] = throughput(Path(tmp), part, args.duration)
            elif part == "durability":
                results[part] = durability(Path(tmp))
            else:
                results[part] = memory(Path(tmp), args.backlog_gib)
    (OUT / "ingest.json").write_text(json.dumps(results, indent=2))
    print(summary(results))
    return 0


def summary(r: dict[str, Any]) -> str:
    lines = [
        "| transport | acked spans/s | server CPU (core 0) | spans per server CPU-s "
        "| p50 / p99 ack ms at half load | peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    for t in ("grpc", "http"):
        if t not in r:
            continue
        m, h = r[t]["max"], r[t]["half"]
        cpu = m.get("server_cpu", {})
        lines.append(
            f"| {t} | {m.get('acked_spans_per_s', 0):,.0f} | "
            f"{cpu.get('core_share', 0):.0%} | {cpu.get('spans_per_cpu_s') or 0:,.0f} | "
            f"{h.get('latency_ms', {}).get('p50', 0):.1f} / "
            f"{h.get('latency_ms', {}).get('p99', 0):.1f} | "
            f"{r[t]['peak_rss_kib'] / 1024:.0f} MiB |"
        )
    if "durability" in r:
        lines.append(
            f"\ndurability after kill -9: exit {r['durability']['exit']}: "
            f"{r['durability']['report']}"
        )
    if "memory" in r:
        lines.append("\n| backlog on disk | OTLP appended | RSS | peak RSS |\n|---|---|---|---|")
        lines += [
            f"| {p['disk_bytes'] / 1024**3:.2f} GiB | {p['appended_bytes'] / 1024**3:.1f} GiB "
            f"| {p['rss_kib'] / 1024:.0f} MiB | {p['peak_rss_kib'] / 1024:.0f} MiB |"
            for p in r["memory"]["points"]
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
