"""Failed syscalls per cgroup, syscall and errno (raw_syscalls:sys_exit with ret < 0)."""

from __future__ import annotations

import errno
import logging
import platform
import re
from functools import cache
from pathlib import Path

from ebpf.btf import BtfError, offsets_cflags
from ebpf.points import Collected, MetricPoint, PointKind
from ebpf.probes import register
from ebpf.probes.base import BccProbe

# Kernel-internal codes that leak to sys_exit (include/linux/errno.h); userspace sees them
# translated (a restart, EINTR) but the tracepoint reports them as the kernel returned them.
KERNEL_ERRNOS = {
    512: "ERESTARTSYS",
    513: "ERESTARTNOINTR",
    514: "ERESTARTNOHAND",
    515: "ENOIOCTLCMD",
    516: "ERESTART_RESTARTBLOCK",
    517: "EPROBE_DEFER",
    518: "EOPENSTALE",
    519: "ENOPARAM",
    524: "ENOTSUPP",
}

# Where the syscall numbers of this architecture are #defined (kernel headers, libc).
_UNISTD = {
    "x86_64": (
        "arch/x86/include/generated/uapi/asm/unistd_64.h",
        "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
        "/usr/include/asm/unistd_64.h",
    ),
    "aarch64": ("include/uapi/asm-generic/unistd.h", "/usr/include/asm-generic/unistd.h"),
}
_DEFINE = re.compile(r"^#define\s+__NR_(\w+)\s+(\d+)\s*$", re.MULTILINE)
# The struct pt_regs member holding the syscall number (what syscall_get_nr() reads).
_REGS_NR = {"x86_64": "orig_ax", "aarch64": "syscallno"}

log = logging.getLogger(__name__)


@cache
def syscall_names(machine: str = "", release: str = "") -> dict[int, str]:
    """nr -> name for this architecture, from the first unistd header found ({} if none)."""
    machine, release = machine or platform.machine(), release or platform.release()
    build = Path("/lib/modules", release, "build")
    for candidate in _UNISTD.get(machine, ()):
        path = build / candidate if not candidate.startswith("/") else Path(candidate)
        try:
            text = path.read_text()
        except OSError:
            continue
        names = {int(nr): name for name, nr in _DEFINE.findall(text)}
        if names:
            return names
    return {}


def errno_name(code: int) -> str:
    """ENOENT for 2; kernel-internal names; else the number."""
    return errno.errorcode.get(code) or KERNEL_ERRNOS.get(code) or str(code)


@register("syscalls")
class SyscallsProbe(BccProbe):
    """Counts failing syscalls in the kernel; successes cost one compare."""

    name = "syscalls"
    tracepoints: tuple[str, ...] = ("raw_syscalls:sys_exit",)

    def cflags(self) -> list[str]:
        """Adds REGS_SYSCALL_NR: the program then runs on the raw tracepoint."""
        member = _REGS_NR.get(platform.machine())
        try:
            offsets = offsets_cflags({"REGS_SYSCALL_NR": ("pt_regs", member)}) if member else []
        except BtfError as exc:
            log.info("syscalls: on the tracepoint, not the raw one (%s)", exc)
            offsets = []
        return super().cflags() + offsets

    def load(self) -> None:
        super().load()
        self._names = syscall_names()

    def collect(self) -> Collected:
        points = [
            MetricPoint(
                "keiko.ebpf.syscalls.failed",
                PointKind.COUNTER,
                float(count),
                cgroup_id=key.cgroup,
                labels={
                    "syscall": self._names.get(key.nr, str(key.nr)),
                    "errno": errno_name(key.err),
                },
                unit="1",
                description="Syscalls that returned an error",
            )
            for key, count in self.drain("failed")
        ]
        return Collected(points + self.map_full_points())
