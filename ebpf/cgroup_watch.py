"""cgroup v2 ids -> paths as the kernel creates and removes cgroups (not a metrics probe).

The agent resolves a point's cgroup id by walking the v2 hierarchy when it collects, so a
cgroup created and removed within one interval (a short job, a crash-looping container)
would be labelled ``unknown:<id>``. :class:`CgroupWatch` runs ``programs/cgroup_watch.c``
on ``cgroup:cgroup_mkdir`` and ``cgroup:cgroup_rmdir``; every collect drains what it saw
into :meth:`ebpf.attribution.CgroupIndex.learn` before the points are attributed.

It is deliberately not in the PROBES registry: it exports nothing and `keiko ebpf check`
counts metric probes only. The component loads it with the probes and closes it with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ebpf.probes.base import BccProbe, drain

MOUNTINFO = Path("/proc/self/mountinfo")
PATH_LEN = 320  # WATCH_PATH_LEN in cgroup_watch.c


@dataclass(frozen=True, slots=True)
class CgroupEvent:
    """A v2 cgroup the kernel created (or removed: ``removed``) since the last drain."""

    cgroup_id: int
    path: str  # relative to the agent's v2 mount, like CgroupIndex's walk ("/a/b")
    removed: bool = False


class CgroupWatch(BccProbe):
    """Drains the kernel's record of created and removed v2 cgroups."""

    name = "cgroup_watch"
    tracepoints: tuple[str, ...] = ("cgroup:cgroup_mkdir", "cgroup:cgroup_rmdir")

    def __init__(self, max_watched: int = 4096, mount_prefix: str = "/") -> None:
        super().__init__({})
        self.max_watched = max_watched
        self.mount_prefix = mount_prefix.rstrip("/")
        self.truncated = 0  # paths longer than PATH_LEN, dropped (the walk may find them)

    def cflags(self) -> list[str]:
        return [f"-DMAX_WATCHED={int(self.max_watched)}"]

    def drain_events(self) -> list[CgroupEvent]:
        """Every cgroup created or removed since the last call, read and cleared."""
        events = []
        for key, value in drain(self.table("watched")):
            event = self._event(key, value)
            if event is not None:
                events.append(event)
        return events

    def _event(self, cgroup_id: int, value: Any) -> CgroupEvent | None:
        if value.len >= PATH_LEN:
            self.truncated += 1
            return None
        path = relative(value.path.decode(errors="replace"), self.mount_prefix)
        if path is None:
            return None
        return CgroupEvent(int(cgroup_id), path, bool(value.removed))


def relative(path: str, prefix: str) -> str | None:
    """The kernel's path (from the hierarchy root) as seen below the agent's mount.

    ``prefix`` is the hierarchy path the mount shows ("" for the whole hierarchy; a
    subtree when /sys/fs/cgroup is a bind mount of one). None: outside the mount.
    """
    if not prefix:
        return path or "/"
    if path == prefix:
        return "/"
    if path.startswith(prefix + "/"):
        return path[len(prefix) :]
    return None


def mount_prefix(mount: Path, mountinfo: Path = MOUNTINFO) -> str:
    """The hierarchy path at ``mount`` (its mountinfo root field; "/" when unknown).

    Inside a cgroup namespace the kernel shows this relative to the namespace while the
    tracepoint's paths are absolute: run the agent in the host's cgroup namespace.
    """
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return "/"
    for line in lines:
        fields = line.split()
        if len(fields) > 4 and fields[4] == str(mount) and " - cgroup2 " in line:
            return fields[3].replace("\\040", " ")
    return "/"
