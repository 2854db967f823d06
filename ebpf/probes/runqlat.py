"""Run-queue latency (scheduling delay) per cgroup and context switches per cgroup."""

from __future__ import annotations

from ebpf.points import Collected, MetricPoint, PointKind
from ebpf.probes import register
from ebpf.probes.base import BccProbe, log2_histogram


@register("runqlat")
class RunqlatProbe(BccProbe):
    """sched_wakeup/_new stamp a task; sched_switch measures its wait until it runs."""

    name = "runqlat"
    tracepoints: tuple[str, ...] = (
        "sched:sched_wakeup",
        "sched:sched_wakeup_new",
        "sched:sched_switch",
    )

    def collect(self) -> Collected:
        points = []
        for cgroup, sched in self.drain("runq"):
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
