"""tcplife and tcpretrans in the kernel, driven by real connections from throwaway cgroups:
on loopback, and through a veth into a network namespace with nftables dropping packets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.cgroups import Cgroup, v2_cgroup, v2_root
from netns import Netns, NetnsUnavailable, veth_netns

from ebpf.points import Collected, Log2Histogram, MetricPoint
from ebpf.probes import PROBES, tcplife, tcpretrans  # noqa: F401  (importing registers)
from ebpf.probes.base import BccProbe

pytestmark = pytest.mark.requires_bpf

CONNECTS = 200
# Runs in the test cgroup: CONNECTS connects to the test's listener, then one connect to a
# port that is bound but not listening (refused).
CLIENT = f"""
import socket, sys
port = int(sys.argv[1])
for _ in range({CONNECTS}):
    socket.create_connection(("127.0.0.1", port)).close()
closed = socket.socket()
closed.bind(("127.0.0.1", 0))
try:
    socket.create_connection(closed.getsockname())
except ConnectionRefusedError:
    pass
else:
    sys.exit("the connect to a closed port was not refused")
"""


@pytest.fixture
def cg() -> Iterator[Cgroup]:
    with v2_cgroup() as made:
        yield made


def loaded(name: str) -> BccProbe:
    probe = PROBES[name]({"max_connections": 4096, "max_remote_endpoints": 1024})
    assert isinstance(probe, BccProbe)
    started = time.monotonic()
    probe.load()
    assert time.monotonic() - started < 1.0, "loading must stay well under a second"
    return probe


def own_cgroup_id() -> int:
    """The v2 cgroup id of this (pytest) process."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return os.stat(v2_root() / line[3:].strip().lstrip("/")).st_ino
    raise AssertionError("no cgroup v2 line in /proc/self/cgroup")


def point(collected: Collected, name: str, cgroup_id: int, **labels: str) -> MetricPoint:
    found = [
        p
        for p in collected.points
        if p.name == name and p.cgroup_id == cgroup_id and p.labels == labels
    ]
    assert len(found) == 1, f"{name} {cgroup_id} {labels}: {found}"
    return found[0]


def serve(listener: socket.socket, count: int) -> threading.Thread:
    def accept_all() -> None:
        for _ in range(count):
            conn, _ = listener.accept()
            conn.close()

    thread = threading.Thread(target=accept_all, daemon=True)
    thread.start()
    return thread


def test_tcplife_connects_failures_accepts_latency_lifetime_and_edges(cg: Cgroup) -> None:
    probe = loaded("tcplife")
    try:
        probe.collect()
        with socket.create_server(("127.0.0.1", 0), backlog=CONNECTS) as listener:
            port = listener.getsockname()[1]
            server = serve(listener, CONNECTS)
            done = cg.run([sys.executable, "-c", CLIENT, str(port)])
            assert done.returncode == 0, done.stderr
            server.join(10)
        time.sleep(0.05)  # the last closes finish in softirq
        first, second = probe.collect(), probe.collect()
    finally:
        probe.close()
    remote = f"127.0.0.1:{port}"
    connects = point(first, "keiko.ebpf.tcp.connects", cg.id, remote=remote)
    assert connects.value == CONNECTS
    failures = [
        p
        for p in first.points
        if p.name == "keiko.ebpf.tcp.connect_failures" and p.cgroup_id == cg.id
    ]
    assert len(failures) == 1 and failures[0].value == 1, failures
    latency = point(first, "keiko.ebpf.tcp.connect.latency", cg.id, remote=remote).value
    assert isinstance(latency, Log2Histogram) and latency.unit == "us"
    assert latency.count == CONNECTS and latency.total is not None
    assert 0 < latency.total / CONNECTS < 10_000, latency  # loopback: microseconds
    lifetime = point(first, "keiko.ebpf.tcp.lifetime", cg.id, remote=remote).value
    assert isinstance(lifetime, Log2Histogram) and lifetime.unit == "ms"
    assert lifetime.count == CONNECTS
    # Accepts run in softirq, on loopback in the client's context: they must still go to
    # the listener's cgroup (this process), keyed by the listening address.
    accepts = point(first, "keiko.ebpf.tcp.accepts", own_cgroup_id(), local=remote)
    assert accepts.value == CONNECTS
    assert not [
        p for p in first.points if p.name == "keiko.ebpf.tcp.accepts" and p.cgroup_id == cg.id
    ]
    edges = [e for e in first.edges if e.cgroup_id == cg.id and e.remote_port == port]
    assert len(edges) == 1 and edges[0].remote_addr == "127.0.0.1"
    assert edges[0].connects == CONNECTS and edges[0].latency_us_total == latency.total
    assert not [p for p in second.points if p.cgroup_id == cg.id], "collect() must reset"
    assert not [e for e in second.edges if e.cgroup_id == cg.id]


SINK, HOLD, CLOSED = 7000, 7001, 7002
# Inside the namespace: SINK reads everything until EOF, HOLD reads until the peer resets.
SERVER = f"""
import socket, threading
def serve(port):
    with socket.create_server(("0.0.0.0", port)) as listener:
        while True:
            conn, _ = listener.accept()
            try:
                while conn.recv(1 << 16):
                    pass
            except ConnectionResetError:
                pass
            conn.close()
for port in ({SINK}, {HOLD}):
    threading.Thread(target=serve, args=(port,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""
# In the test cgroup: 256 KB through the lossy SINK port, a reset sent (SO_LINGER 0 close on
# HOLD), a reset received (connect to CLOSED).
SENDER = f"""
import socket, struct, sys
addr = sys.argv[1]
with socket.create_connection((addr, {SINK}), timeout=20) as c:
    c.sendall(b"x" * (256 << 10))
    c.shutdown(socket.SHUT_WR)
    c.recv(1)
c = socket.create_connection((addr, {HOLD}), timeout=5)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
c.close()
try:
    socket.create_connection((addr, {CLOSED}), timeout=5)
except ConnectionRefusedError:
    pass
else:
    sys.exit("the connect to a closed port was not refused")
"""


@pytest.fixture
def lossy_netns() -> Iterator[Netns]:
    """A namespace whose server drops 30% of the segments arriving on SINK."""
    try:
        with veth_netns() as ns:
            ns.drop_input(SINK, 3)
            server = subprocess.Popen(
                ns.argv([sys.executable, "-c", SERVER]), stdout=subprocess.PIPE, text=True
            )
            try:
                assert server.stdout is not None and server.stdout.readline() == "ready\n"
                yield ns
            finally:
                server.kill()
                server.wait()
    except NetnsUnavailable as exc:
        pytest.skip(f"network namespaces unusable: {exc}")


def test_tcpretrans_retransmits_and_resets_of_a_cgroup(cg: Cgroup, lossy_netns: Netns) -> None:
    probe = loaded("tcpretrans")
    try:
        probe.collect()
        done = cg.run([sys.executable, "-c", SENDER, lossy_netns.addr])
        assert done.returncode == 0, done.stderr
        time.sleep(0.05)
        first, second = probe.collect(), probe.collect()
    finally:
        probe.close()
    addr = lossy_netns.addr
    retransmits = point(first, "keiko.ebpf.tcp.retransmits", cg.id, remote=f"{addr}:{SINK}")
    assert retransmits.value >= 1
    sent = point(first, "keiko.ebpf.tcp.resets.sent", cg.id, remote=f"{addr}:{HOLD}")
    assert sent.value == 1
    received = point(first, "keiko.ebpf.tcp.resets.received", cg.id, remote=f"{addr}:{CLOSED}")
    assert received.value == 1
    # The namespace's kernel answered the SYN to CLOSED without a socket: host, local side.
    refused = point(first, "keiko.ebpf.tcp.resets.sent", 0, local=f"{addr}:{CLOSED}")
    assert refused.value == 1
    assert not [p for p in second.points if p.cgroup_id == cg.id], "collect() must reset"
