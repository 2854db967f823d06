#!/usr/bin/env python3
"""eBPF agent overhead: its CPU and RSS, and the workload's slowdown with probes attached.

The workload runs on core 1: TCP connections on loopback (connect, accept, close) and
context switches (two processes ping-ponging a byte over pipes). It is measured twice for
the same time, without keiko and with `keiko run` (every eBPF probe on, receivers and API
off, embedded store) pinned to core 0; the agent's CPU and peak RSS come from /proc.
Needs root (BPF).

    .venv/bin/python benchmarks/ebpf_overhead.py            # 20 s per phase
    .venv/bin/python benchmarks/ebpf_overhead.py --duration 10 --json out.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KEIKO = [sys.executable, "-m", "keiko.cli"]


def tcp_worker(seconds: float, out: Any) -> None:
    """Connect/accept/close on loopback as fast as one process can."""
    os.sched_setaffinity(0, {1})
    srv = socket.create_server(("127.0.0.1", 0), backlog=1024)
    addr = srv.getsockname()
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(100):
            c = socket.create_connection(addr)
            s, _ = srv.accept()
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")  # no TIME_WAIT
            c.close()
            s.close()
        n += 100
    out.put(("tcp_connections", n / seconds))


def switch_worker(seconds: float, out: Any) -> None:
    """Two processes bounce a byte through pipes: two context switches per round trip."""
    os.sched_setaffinity(0, {1})
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        while os.read(a_r, 1) == b"x":
            os.write(b_w, b"x")
        os._exit(0)
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(1000):
            os.write(a_w, b"x")
            os.read(b_r, 1)
        n += 1000
    os.write(a_w, b"q")
    os.waitpid(pid, 0)
    out.put(("context_switches", 2 * n / seconds))


def workload(seconds: float) -> dict[str, float]:
    """Both workers at once on core 1 (they share it, as services on a node do)."""
    out: Any = mp.Queue()
    procs = [mp.Process(target=f, args=(seconds, out)) for f in (tcp_worker, switch_worker)]
    for p in procs:
        p.start()
    result = dict(out.get() for _ in procs)
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
    deadline = time.monotonic() + 60
    while "keiko ready" not in (tmp / "keiko.log").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"keiko did not start:\n{(tmp / 'keiko.log').read_text()[-3000:]}")
        time.sleep(0.2)
    time.sleep(2)  # let every probe finish loading
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
    base = workload(args.duration)
    with tempfile.TemporaryDirectory(prefix="keiko-ebpf-bench-") as tmp:
        agent = start_agent(Path(tmp), args.probes.split(","))
        cpu0 = cpu_seconds(agent.pid)
        t0 = time.monotonic()
        probed = workload(args.duration)
        agent_cpu = (cpu_seconds(agent.pid) - cpu0) / (time.monotonic() - t0)
        rss = peak_rss_mib(agent.pid)
        rss_now = rss_mib(agent.pid)
        agent.terminate()
        agent.wait(30)
        log_tail = (Path(tmp) / "keiko.log").read_text()[-2000:]
    result = {
        "duration_s": args.duration,
        "without_probes": base,
        "with_probes": probed,
        "slowdown": {k: 1 - probed[k] / base[k] for k in base},
        "agent_cpu_share_of_one_core": agent_cpu,
        "agent_peak_rss_mib": rss,
        "agent_rss_mib": rss_now,
        "probes": args.probes,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(
        f"workload without probes: {base['tcp_connections']:,.0f} TCP connections/s, "
        f"{base['context_switches']:,.0f} context switches/s"
    )
    print(
        f"workload with probes:    {probed['tcp_connections']:,.0f} TCP connections/s, "
        f"{probed['context_switches']:,.0f} context switches/s"
    )
    print("slowdown: " + ", ".join(f"{k} {v:+.1%}" for k, v in result["slowdown"].items()))
    print(f"probes: {args.probes}")
    print(f"agent: {agent_cpu:.2%} of one core, RSS {rss_now:.0f} MiB (peak {rss:.0f} MiB)")
    if "probe" not in log_tail:
        print("note: see the agent log for which probes loaded", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
