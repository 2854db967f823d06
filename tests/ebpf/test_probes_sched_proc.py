"""runqlat and proc probes in the kernel, driven by real processes in throwaway cgroups."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pytest
from fixtures.cgroups import Cgroup, v2_cgroup

from ebpf.points import Collected, Log2Histogram, MetricPoint
from ebpf.probes import PROBES, runqlat  # noqa: F401  (importing registers)
from ebpf.probes.base import BccProbe

pytestmark = pytest.mark.requires_bpf

ROUND_TRIPS = 20_000
# Two processes pinned to one CPU bounce a byte over two pipes: every message wakes the
# blocked peer, so the run queue sees exactly one wakeup per message.
PING_PONG = f"""
import os
os.sched_setaffinity(0, {{0}})
a_r, a_w = os.pipe(); b_r, b_w = os.pipe()
if os.fork() == 0:
    for _ in range({ROUND_TRIPS}):
        os.read(a_r, 1); os.write(b_w, b"x")
    os._exit(0)
for _ in range({ROUND_TRIPS}):
    os.write(a_w, b"x"); os.read(b_r, 1)
os.wait()
"""


@pytest.fixture
def cg() -> Iterator[Cgroup]:
    with v2_cgroup() as made:
        yield made


def loaded(name: str) -> BccProbe:
    probe = PROBES[name]({"max_cgroups": 1024})
    assert isinstance(probe, BccProbe)
    started = time.monotonic()
    probe.load()
    assert time.monotonic() - started < 1.0, "loading must stay well under a second"
    return probe


def of(collected: Collected, name: str, cgroup_id: int) -> list[MetricPoint]:
    return [p for p in collected.points if p.name == name and p.cgroup_id == cgroup_id]


def test_runqlat_histogram_and_switches_of_a_cgroup(cg: Cgroup) -> None:
    probe = loaded("runqlat")
    try:
        probe.collect()
        done = cg.run([sys.executable, "-c", PING_PONG])
        assert done.returncode == 0, done.stderr
        first, second = probe.collect(), probe.collect()
    finally:
        probe.close()
    (latency,) = of(first, "keiko.ebpf.runq.latency", cg.id)
    hist = latency.value
    assert isinstance(hist, Log2Histogram) and hist.unit == "us"
    wakeups = 2 * ROUND_TRIPS
    # Python start-up and exit add a few hundred of their own.
    assert wakeups <= hist.count <= wakeups * 1.05 + 500, hist
    assert hist.total is not None and 0 < hist.total / hist.count < 1000, hist
    busiest = max(range(len(hist.counts)), key=hist.counts.__getitem__)
    assert busiest <= 9, f"most waits should be under 1 ms on an idle CPU: {hist}"
    (switches,) = of(first, "keiko.ebpf.sched.switches", cg.id)
    assert switches.value >= wakeups
    assert not of(second, "keiko.ebpf.runq.latency", cg.id), "collect() must reset"
    assert not of(second, "keiko.ebpf.sched.switches", cg.id)
