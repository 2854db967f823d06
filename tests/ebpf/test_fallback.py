"""The cgroupfs/procfs fallback on this machine's real cgroup files, and the agent running
it (with its warning said once) when BPF is reported unusable."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_harness import running, v2_cgroup
from netns import NetnsUnavailable, veth_netns

from ebpf import component
from ebpf.attribution import CGROUP_FS
from ebpf.diagnose import Problem
from ebpf.fallback import CgroupFallback, parse_blkio, parse_io_stat, parse_net_dev

BURN = (
    "import sys, time\nblob = bytearray(48 * 1024 * 1024)\n"
    "sys.stdout.write('x'); sys.stdout.flush()\n"
    "end = time.time() + 3\nwhile time.time() < end: pass"
)


def test_parsers() -> None:
    io = "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2\n"
    assert parse_io_stat(io) == (4097, 8194)
    blkio = "8:0 Read 100\n8:0 Write 200\n8:0 Sync 300\n8:0 Total 300\nTotal 300\n"
    assert parse_blkio(blkio) == (100, 200)
    dev = (
        "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed "
        "multicast|bytes\n    lo: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n"
    )
    assert parse_net_dev(dev) == {"lo": (1000, 2000)}


def test_fallback_reads_real_cgroups_of_this_machine() -> None:
    fb = CgroupFallback()
    assert fb.v2 is not None or fb.v1, "neither cgroup v2 nor v1 controllers found"
    fb.collect()  # baseline
    with socket_traffic():
        time.sleep(0.2)
    got = fb.collect().points
    names = {p.name for p in got}
    assert {"keiko.cgroup.cpu.time", "keiko.host.network.io"} <= names
    lo_rx = [p for p in got if p.labels == {"device": "lo", "direction": "receive"}]
    assert lo_rx and lo_rx[0].value >= 100_000  # what socket_traffic sent over loopback
    assert all(p.value >= 0 for p in got)
    assert len({p.labels.get("cgroup.path") for p in got}) <= fb.max_cgroups + 1


@pytest.mark.requires_bpf  # root: it creates cgroups
def test_fallback_sees_a_child_burn_cpu_and_memory_in_its_cgroup() -> None:
    memory_v1 = CGROUP_FS / "memory"
    with v2_cgroup("keiko-test-fb") as cg:
        v1 = memory_v1 / cg.name if (memory_v1 / "memory.usage_in_bytes").exists() else None
        if v1 is not None:
            v1.mkdir()
        try:
            fb = CgroupFallback()
            child = subprocess.Popen(
                [sys.executable, "-c", "import sys; sys.stdin.readline()\n" + BURN],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            (cg / "cgroup.procs").write_text(str(child.pid))
            if v1 is not None:
                (v1 / "cgroup.procs").write_text(str(child.pid))
            fb.collect()
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write(b"go\n")
            child.stdin.flush()
            child.stdout.read(1)  # allocated
            time.sleep(0.5)
            mine = [p for p in fb.collect().points if p.labels.get("cgroup.path") == f"/{cg.name}"]
            child.kill()
            child.wait()
        finally:
            if v1 is not None:
                for _ in range(50):
                    try:
                        v1.rmdir()
                        break
                    except OSError:
                        time.sleep(0.05)
    by_name = {p.name: p.value for p in mine}
    assert by_name["keiko.cgroup.cpu.time"] >= 200_000  # us: it spun for >= 0.5 s
    assert by_name["keiko.cgroup.memory.usage"] >= 40 * 1024 * 1024


def test_agent_falls_back_and_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    problem = Problem("tracefs is not mounted", "mount -t tracefs tracefs /sys/kernel/tracing")
    monkeypatch.setattr(component, "diagnose", lambda: [problem])

    async def scenario() -> None:
        async with running(tmp_path) as r:
            for _ in range(50):
                if len(await r.metrics()) >= 2:
                    break
                await asyncio.sleep(0.1)
            assert r.agent.mode == "fallback"
            names = {
                m.name
                for req in await r.metrics()
                for rm in req.resource_metrics
                for sm in rm.scope_metrics
                for m in sm.metrics
            }
            assert "keiko.cgroup.cpu.time" in names
            assert (
                r.sample(
                    "keiko_cgroup_cpu_time_seconds_total",
                    pod="",
                    namespace="",
                    container="",
                    cgroup="/",
                )
                is not None
            )

    with caplog.at_level(logging.WARNING, logger="ebpf"):
        asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if "eBPF unusable" in r.getMessage()]
    assert len(warnings) == 1
    assert "tracefs is not mounted" in warnings[0] and "cgroupfs" in warnings[0]


class socket_traffic:
    """Send 200 KB over a loopback TCP connection."""

    def __enter__(self) -> None:
        import socket

        srv = socket.create_server(("127.0.0.1", 0))
        c = socket.create_connection(srv.getsockname())
        s, _ = srv.accept()
        c.sendall(b"x" * 200_000)
        got = 0
        while got < 200_000:
            got += len(s.recv(65536))
        for sock in (c, s, srv):
            sock.close()

    def __exit__(self, *exc: object) -> None:
        pass


def test_fallback_counts_a_cgroups_network_namespace_traffic() -> None:
    """A task in its own cgroup and network namespace (a veth to this one, as a pod has)
    receives 2 MB: the cgroup's network counters show it, and the host's namespace is not
    reported per cgroup."""
    try:
        ns_cm = veth_netns()
        ns = ns_cm.__enter__()
    except NetnsUnavailable as exc:
        pytest.skip(f"network namespaces unavailable: {exc}")
    try:
        with v2_cgroup("keiko-test-net") as cg:
            server = subprocess.Popen(
                ns.argv([sys.executable, "-c", SINK, ns.addr]),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            assert server.stdout is not None
            server.stdout.readline()  # listening
            (cg / "cgroup.procs").write_text(str(server.pid))
            fb = CgroupFallback()
            fb.collect()  # the baseline
            with socket.create_connection((ns.addr, 7001), timeout=10) as conn:
                conn.sendall(b"x" * 2_000_000)
            server.stdout.readline()  # all received; it waits to be told to exit
            points = fb.collect().points
            server.kill()
            server.wait(10)
    finally:
        ns_cm.__exit__(None, None, None)
    mine = {
        p.labels["direction"]: p.value
        for p in points
        if p.name == "keiko.cgroup.network.io" and p.labels.get("cgroup.path") == f"/{cg.name}"
    }
    assert mine.get("receive", 0) >= 2_000_000


SINK = """
import socket, sys
srv = socket.create_server((sys.argv[1], 7001))
print("ready", flush=True)
conn, _ = srv.accept()
while conn.recv(65536):
    pass
print("received", flush=True)
sys.stdin.readline()
"""
