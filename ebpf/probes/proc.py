"""Process execs and exits per cgroup, and OOM kills per cgroup of the victim."""

from __future__ import annotations

from ebpf.points import Collected, MetricPoint, PointKind
from ebpf.probes import register
from ebpf.probes.base import BccProbe

# map name -> (metric name, description)
COUNTERS = {
    "execs": ("keiko.ebpf.process.execs", "Successful execve() calls"),
    "exits": ("keiko.ebpf.process.exits", "Processes that exited (thread group leaders)"),
    "oom_kills": ("keiko.ebpf.oom.kills", "Processes the OOM killer chose (counted at exit)"),
}


@register("proc")
class ProcProbe(BccProbe):
    """Counts execs, exits and OOM kills in the kernel; all attributed in the task itself."""

    name = "proc"
    tracepoints: tuple[str, ...] = (
        "sched:sched_process_exec",
        "sched:sched_process_exit",
        "oom:mark_victim",
    )

    def collect(self) -> Collected:
        points = [
            MetricPoint(
                metric,
                PointKind.COUNTER,
                float(count),
                cgroup_id=cgroup,
                unit="1",
                description=description,
            )
            for table, (metric, description) in COUNTERS.items()
            for cgroup, count in self.drain(table)
        ]
        return Collected(points + self.map_full_points())
