"""Block I/O latency per device as a log2 histogram; requests and bytes per device and op."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from ebpf.points import Collected, MetricPoint, PointKind
from ebpf.probes import register
from ebpf.probes.base import BccProbe, log2_histogram

OPS = {"R": "read", "W": "write", "D": "discard", "F": "flush"}
SYS_DEV_BLOCK = Path("/sys/dev/block")


def split_dev(dev: int) -> tuple[int, int]:
    """The kernel-internal dev_t of block tracepoints (12-bit major, 20-bit minor)."""
    return dev >> 20, dev & 0xFFFFF


@cache
def device_name(major: int, minor: int) -> str:
    """DEVNAME from sysfs (e.g. "vda", "nvme0n1"), else "major:minor"."""
    try:
        uevent = (SYS_DEV_BLOCK / f"{major}:{minor}" / "uevent").read_text()
    except OSError:
        return f"{major}:{minor}"
    for line in uevent.splitlines():
        if line.startswith("DEVNAME="):
            return line.removeprefix("DEVNAME=")
    return f"{major}:{minor}"


@register("biolatency")
class BiolatencyProbe(BccProbe):
    """block_rq_issue stamps a request, block_rq_complete measures and counts it."""

    name = "biolatency"
    tracepoints: tuple[str, ...] = ("block:block_rq_issue", "block:block_rq_complete")

    def collect(self) -> Collected:
        points = [
            MetricPoint(
                "keiko.ebpf.block.latency",
                PointKind.HISTOGRAM,
                log2_histogram(hist.slots, "us", float(hist.total_us)),
                labels={"device": device_name(*split_dev(dev))},
                unit="us",
                description="Block I/O latency from issue to the driver until completion",
            )
            for dev, hist in self.drain("io_hist")
        ]
        for io, count in self.drain("io_counts"):
            labels = {"device": device_name(*split_dev(io.dev)), "op": OPS.get(chr(io.op), "other")}
            points += [
                MetricPoint(
                    "keiko.ebpf.block.requests",
                    PointKind.COUNTER,
                    float(count.requests),
                    labels=labels,
                    unit="1",
                    description="Block I/O requests completed",
                ),
                MetricPoint(
                    "keiko.ebpf.block.bytes",
                    PointKind.COUNTER,
                    float(count.bytes),
                    labels=labels,
                    unit="By",
                    description="Bytes of completed block I/O requests",
                ),
            ]
        return Collected(points + self.map_full_points())
