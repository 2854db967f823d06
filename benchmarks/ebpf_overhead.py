#!/usr/bin/env python3
"""eBPF agent overhead: its CPU and RSS, and the workload's slowdown with probes attached.

The workload runs on core 1: TCP connections on loopback (connect, accept, close) and
context switches (two processes ping-ponging a byte over pipes), once at the issue's rates
(10,000 connections/s and 100,000 switches/s, "paced") and once as fast as they can
("flat_out", the worst case: every extra nanosecond per event shows as lost throughput).
Each is measured without keiko, then with `keiko run` (the eBPF probes on, receivers and
API off) pinned to core 0. Reported per kind: throughput and the workload's own CPU per
operation (the probes' cost lands there, in the kernel); the agent's CPU and RSS from
/proc. Needs root (BPF).

    .venv/bin/python benchmarks/ebpf_overhead.py                    # 20 s per phase
    .venv/bin/python benchmarks/ebpf_overhead.py --probes tcplife,proc --duration 10
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KEIKO = [sys.executable, "-m", "keiko.cli"]
TCP_RATE = 10_000  # connections/s (the load)
SWITCH_RATE = 100_000  # context switches/s


def pace(n: int, rate: float, started: float) -> None:
    """Sleep until operation ``n`` is due (no-op when ``rate`` is 0: flat out)."""
    if rate:
        delay = started + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def cpu_of_self_and_children() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def tcp_worker(seconds: float, rate: float, out: Any) -> None:
    """Connect/accept/close on loopback, at ``rate`` per second or as fast as it can."""
    os.sched_setaffinity(0, {1})
    srv = socket.create_server(("127.0.0.1", 0), backlog=1024)
    addr = srv.getsockname()
    n, started = 0, time.monotonic()
    end = started + seconds
    while time.monotonic() < end:
        pace(n, rate, started)
        for _ in range(100):
            c = socket.create_connection(addr)
            s, _ = srv.accept()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")  # no TIME_WAIT
            c.close()
            s.close()
        n += 100
    out.put(("tcp_connections", n / seconds, cpu_of_self_and_children() / n))


def switch_worker(seconds: float, rate: float, out: Any) -> None:
    """Two processes bounce a byte through pipes: two context switches per round trip
    (``rate``: switches per second, 0 = as fast as they can)."""
    os.sched_setaffinity(0, {1})
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        while os.read(a_r, 1) == b"x":
            os.write(b_w, b"x")
        os._exit(0)
    n, started = 0, time.monotonic()
    end = started + seconds
    while time.monotonic() < end:
        pace(2 * n, rate, started)
        for _ in range(1000):
            os.write(a_w, b"x")
            os.read(b_r, 1)
        n += 1000
    os.write(a_w, b"q")
    os.waitpid(pid, 0)
    out.put(("context_switches", 2 * n / seconds, cpu_of_self_and_children() / (2 * n)))


def workload(seconds: float, paced: bool) -> dict[str, dict[str, float]]:
    """Both workers at once on core 1 (they share it, as services on a node do): at the
    issue's rates (``paced``) or flat out. Per kind: ops/s and CPU microseconds per op."""
    out: Any = mp.Queue()
    rates = {tcp_worker: TCP_RATE, switch_worker: SWITCH_RATE}
    procs = [mp.Process(target=f, args=(seconds, rates[f] if paced else 0, out)) for f in rates]
    for p in procs:
        p.start()
    result = {}
    for _ in procs:
        kind, per_s, cpu_per_op = out.get()
        result[kind] = {"per_s": per_s, "cpu_us_per_op": cpu_per_op * 1e6}
    for p in procs:
        p.join()
    return result


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib(pid: int) -> float:
    return status_mib(pid, "VmHWM")


def rss_mib(pid: int) -> float:
    return status_mib(pid, "VmRSS")


ALL_PROBES = ("runqlat", "biolatency", "syscalls", "proc", "tcplife", "tcpretrans")


def start_agent(tmp: Path, probes: list[str]) -> subprocess.Popen[bytes]:
    switches = ", ".join(f"{p}: {str(p in probes).lower()}" for p in ALL_PROBES)
    config = tmp / "keiko.yaml"
    config.write_text(
        f"store: {{embedded: {{path: {tmp / 'data'}}}}}\n"
        "api: {enabled: false}\n"
        "receivers: {otlp: {enabled: false}}\n"
        f"probes: {{ebpf: {{interval: 10s, probes: {{{switches}}}}}}}\n"
        "logging: {level: info}\n"
    )
    log = open(tmp / "keiko.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *KEIKO, "run", "--config", str(config)], stderr=log, stdout=log
    )
    deadline = time.monotonic() + 120
    # Measure from when every probe is loaded (compiling them is start-up, not steady state).
    while "probes loaded" not in (tmp / "keiko.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(
                f"keiko did not load its probes:\n{(tmp / 'keiko.log').read_text()[-3000:]}"
            )
        time.sleep(0.2)
    return proc


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument(
        "--probes",
        default=",".join(ALL_PROBES),
        help="comma-separated probes to attach (default: all)",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root: the probes are loaded into the kernel")
    modes = ("paced", "flat_out")
    base = {m: workload(args.duration, m == "paced") for m in modes}
    with tempfile.TemporaryDirectory(prefix="keiko-ebpf-bench-") as tmp:
        agent = start_agent(Path(tmp), args.probes.split(","))
        cpu0 = cpu_seconds(agent.pid)
        t0 = time.monotonic()
        probed = {m: workload(args.duration, m == "paced") for m in modes}
        agent_cpu = (cpu_seconds(agent.pid) - cpu0) / (time.monotonic() - t0)
        rss, rss_now = peak_rss_mib(agent.pid), rss_mib(agent.pid)
        agent.terminate()
        agent.wait(30)
    result: dict[str, Any] = {
        "duration_s": args.duration,
        "probes": args.probes,
        "agent_cpu_share_of_one_core": agent_cpu,
        "agent_rss_mib": rss_now,
        "agent_peak_rss_mib": rss,
    }
    for m in modes:
        for kind, before in base[m].items():
            after = probed[m][kind]
            result[f"{m}.{kind}"] = {
                "without": before,
                "with": after,
                "throughput_change": after["per_s"] / before["per_s"] - 1,
                "cpu_per_op_change": after["cpu_us_per_op"] / before["cpu_us_per_op"] - 1,
            }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"probes: {args.probes}")
    for key, r in result.items():
        if isinstance(r, dict):
            w, p = r["without"], r["with"]
            print(
                f"{key:26s} {w['per_s']:>9,.0f}/s -> {p['per_s']:>9,.0f}/s "
                f"({r['throughput_change']:+.1%}); CPU per op {w['cpu_us_per_op']:.2f} -> "
                f"{p['cpu_us_per_op']:.2f} us ({r['cpu_per_op_change']:+.1%})"
            )
    print(f"agent: {agent_cpu:.2%} of one core, RSS {rss_now:.0f} MiB (peak {rss:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
