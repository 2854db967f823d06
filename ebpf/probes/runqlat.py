"""Run-queue latency (scheduling delay) per cgroup and context switches per cgroup."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ebpf.points import Collected, MetricPoint, PointKind
from ebpf.probes import register
from ebpf.probes.base import BccProbe, log2_histogram


@dataclass(frozen=True, slots=True)
class CgroupSched:
    """One cgroup's ``struct cgroup_sched``, summed over the CPUs."""

    slots: tuple[int, ...]
    total_us: int
    switches: int


def summed(per_cpu: Sequence[Any]) -> CgroupSched:
    """The per-CPU copies of a ``runq`` entry (a percpu hash value) added up."""
    return CgroupSched(
        tuple(sum(s) for s in zip(*(cpu.slots for cpu in per_cpu), strict=True)),
        sum(cpu.total_us for cpu in per_cpu),
        sum(cpu.switches for cpu in per_cpu),
    )


@register("runqlat")
class RunqlatProbe(BccProbe):
    """sched_wakeup/_new stamp a task; sched_switch measures its wait until it runs.

    Raw tracepoints (same names, listed for ``keiko ebpf check``); ``runq`` is per CPU.
    """

    name = "runqlat"
    tracepoints: tuple[str, ...] = (
        "sched:sched_wakeup",
        "sched:sched_wakeup_new",
        "sched:sched_switch",
    )

    def collect(self) -> Collected:
        points = []
        for cgroup, per_cpu in self.drain("runq"):
            sched = summed(per_cpu)
            if any(sched.slots):
                points.append(
                    MetricPoint(
                        "keiko.ebpf.runq.latency",
                        PointKind.HISTOGRAM,
                        log2_histogram(sched.slots, "us", float(sched.total_us)),
                        cgroup_id=cgroup,
                        unit="us",
                        description="Time runnable tasks waited in a CPU run queue",
                    )
                )
            points.append(
                MetricPoint(
                    "keiko.ebpf.sched.switches",
                    PointKind.COUNTER,
                    float(sched.switches),
                    cgroup_id=cgroup,
                    unit="1",
                    description="Context switches away from the cgroup's tasks",
                )
            )
        return Collected(points + self.map_full_points())
