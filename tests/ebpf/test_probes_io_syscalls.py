"""biolatency and syscalls probes in the kernel: real disk writes, real failing syscalls."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.cgroups import Cgroup, v2_cgroup
from fixtures.probes import loaded

from ebpf.points import Collected, Log2Histogram
from ebpf.probes import biolatency, syscalls  # noqa: F401  (importing registers)
from ebpf.probes.biolatency import device_name

pytestmark = pytest.mark.requires_bpf

FAILED_OPENS = 1000


@pytest.fixture
def cg() -> Iterator[Cgroup]:
    with v2_cgroup() as made:
        yield made


def disk_dir() -> Path:
    """A directory on a real block device (/tmp may be a tmpfs)."""
    for candidate in ("/tmp", "/var/tmp", "/"):
        if os.stat(candidate).st_dev >> 8 != 0:  # major 0: tmpfs, overlay, other virtual fs
            return Path(candidate)
    pytest.skip("no directory on a block device to write to")


def disks_of(path: Path) -> set[str]:
    """Names of the whole disks behind ``path`` (block tracepoints report whole disks)."""
    dev = os.stat(path).st_dev
    sysfs = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}").resolve()
    if (sysfs / "partition").exists():
        sysfs = sysfs.parent
    slaves = sysfs / "slaves"  # device-mapper: the disks underneath
    found = {p.name for p in slaves.iterdir()} if slaves.is_dir() else set()
    major, minor = (sysfs / "dev").read_text().strip().split(":")
    return found | {device_name(int(major), int(minor))}


def per_device(collected: Collected, name: str, op: str) -> dict[str, float]:
    return {
        p.labels["device"]: float(p.value)  # type: ignore[arg-type]
        for p in collected.points
        if p.name == name and p.labels.get("op") == op
    }


def test_biolatency_sees_written_and_fsynced_bytes() -> None:
    target = disk_dir() / f"keiko-biolatency-{os.getpid()}"
    disks = disks_of(target.parent)
    size = 8 << 20
    probe = loaded("biolatency")
    try:
        probe.collect()
        with open(target, "wb") as f:
            for _ in range(8):
                f.write(os.urandom(size // 8))
            f.flush()
            os.fsync(f.fileno())
        first = probe.collect()
    finally:
        target.unlink(missing_ok=True)
        probe.close()
    written = per_device(first, "keiko.ebpf.block.bytes", "write")
    requests = per_device(first, "keiko.ebpf.block.requests", "write")
    (disk,) = disks & written.keys()
    assert written[disk] >= size
    assert requests[disk] >= 1
    (latency,) = [
        p
        for p in first.points
        if p.name == "keiko.ebpf.block.latency" and p.labels["device"] == disk
    ]
    hist = latency.value
    assert isinstance(hist, Log2Histogram) and hist.unit == "us"
    assert hist.count >= requests[disk] * 0.5  # all ops of the disk, less those issued before load
    assert hist.total is not None and hist.total > 0


def test_syscalls_counts_failed_opens_of_a_cgroup(cg: Cgroup) -> None:
    missing = f"/nonexistent/keiko-{os.getpid()}"
    script = f"""
import os
for _ in range({FAILED_OPENS}):
    try:
        os.open({missing!r}, os.O_RDONLY)
    except FileNotFoundError:
        pass
"""
    probe = loaded("syscalls")
    try:
        probe.collect()
        done = cg.run([sys.executable, "-c", script])
        assert done.returncode == 0, done.stderr
        first, second = probe.collect(), probe.collect()
    finally:
        probe.close()
    mine = {
        (p.labels["syscall"], p.labels["errno"]): float(p.value)
        for p in first.points
        if p.cgroup_id == cg.id and p.name == "keiko.ebpf.syscalls.failed"
    }
    # Python's start-up probes a few paths that do not exist, too.
    assert FAILED_OPENS <= mine[("openat", "ENOENT")] <= FAILED_OPENS + 300, mine
    assert not [p for p in second.points if p.cgroup_id == cg.id], "collect() must reset"
