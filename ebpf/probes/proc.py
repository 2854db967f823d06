"""Process execs and exits per cgroup, and OOM kills per cgroup of the victim."""

from __future__ import annotations

import logging
import signal

from ebpf.btf import BtfError, offsets_cflags
from ebpf.points import Collected, MetricPoint, PointKind
from ebpf.probes import register
from ebpf.probes.base import BccProbe

log = logging.getLogger(__name__)

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

    def cflags(self) -> list[str]:
        try:
            offsets = offsets_cflags({"TASK_EXIT_CODE": ("task_struct", "exit_code")})
        except BtfError as exc:
            log.warning("proc: no deaths by signal (%s)", exc)
            offsets = []
        return super().cflags() + offsets

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
        points += [
            MetricPoint(
                "keiko.ebpf.process.signaled",
                PointKind.COUNTER,
                float(count),
                cgroup_id=death.cgroup,
                labels={"signal": signal_name(death.sig)},
                unit="1",
                description="Processes that died of a signal (SIGKILL, SIGSEGV, ...)",
            )
            for death, count in self.drain("signaled")
        ]
        return Collected(points + self.map_full_points())


def signal_name(number: int) -> str:
    """SIGKILL for 9; the number for what Python does not know."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
