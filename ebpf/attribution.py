"""cgroup id -> cgroup path -> container id and pod UID (-> pod name via ebpf.kube).

``bpf_get_current_cgroup_id()`` returns the id of the task's cgroup in the v2 hierarchy,
which is the inode number of that cgroup's directory. ``CgroupIndex`` walks the v2
hierarchy to map inodes to paths. ``parse_path`` reads container and pod ids out of the
paths that containerd, CRI-O and Docker create (systemd and cgroupfs drivers).
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from ebpf.cgroup_watch import CgroupEvent
    from ebpf.kube import PodCache

CGROUP_FS = Path("/sys/fs/cgroup")
OTHER = "other"

# One path component that names a container: the runtime's scope unit (systemd driver)
# or the bare 64-hex id (cgroupfs driver). crio-conmon-<id> (the monitor) is not matched.
_CONTAINER = re.compile(
    r"^(?:(?P<rt>cri-containerd|crio|docker|libpod)-)?(?P<id>[0-9a-f]{64})(?:\.scope)?$"
)
_RUNTIMES = {
    "cri-containerd": "containerd",
    "crio": "cri-o",
    "docker": "docker",
    "libpod": "podman",
}
# kubepods-burstable-pod<uid with _>.slice (systemd) or pod<uid> (cgroupfs).
_POD = re.compile(
    r"pod(?P<uid>[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
    r"(?:\.slice)?$"
)


def v2_root(base: Path = CGROUP_FS) -> Path | None:
    """The cgroup v2 mount: ``base`` on pure v2, ``base/unified`` on hybrid, else None."""
    for candidate in (base, base / "unified"):
        if (candidate / "cgroup.controllers").is_file():
            return candidate
    return None


@dataclass(frozen=True, slots=True)
class Owner:
    """What a cgroup path says about who runs in it."""

    container_id: str = ""
    pod_uid: str = ""
    runtime: str = ""  # containerd, cri-o, docker, podman ("" when unknown)


def parse_path(path: str) -> Owner:
    """Container id, pod UID and runtime from a cgroup path (empty fields when absent)."""
    container = pod = runtime = ""
    parts = path.strip("/").split("/")
    for part in parts:
        if m := _POD.search(part):
            pod = m.group("uid").replace("_", "-")
    for part in reversed(parts):
        if m := _CONTAINER.match(part):
            container = m.group("id")
            rt = m.group("rt")
            if rt:
                runtime = _RUNTIMES[rt]
            elif "docker" in parts[:-1]:
                runtime = "docker"
            break
    return Owner(container, pod, runtime)


class CgroupIndex:
    """Inode (= v2 cgroup id) -> path relative to the v2 root, refreshed on a miss.

    A walk stats every cgroup directory; misses (a cgroup created since) trigger a new walk
    at most once per ``min_refresh`` seconds, so a burst of unknown ids costs one walk.
    A walk cannot find a cgroup that is already gone: :meth:`learn` takes the kernel's
    record of created and removed cgroups (``ebpf.cgroup_watch``) before each collect is
    attributed. Removed ones are kept through one more interval (:meth:`end_interval`);
    at most ``max_learned`` are held, oldest dropped first. Thread-safe.
    """

    def __init__(self, root: Path | None, min_refresh: float = 2.0, max_learned: int = 8192):
        self.root = root
        self.min_refresh = min_refresh
        self.max_learned = max_learned
        self._paths: dict[int, str] = {}
        self._learned: dict[int, str] = {}  # insertion order = age, for the bound
        self._removed: dict[int, int] = {}  # id -> interval it was removed in
        self._interval = 0
        self._walked_at = -float("inf")
        self._lock = threading.Lock()
        self.walks = 0

    def path(self, cgroup_id: int) -> str | None:
        """The cgroup's path ("/" for the root, "/a/b" below), or None if unknown."""
        found = self._paths.get(cgroup_id) or self._learned.get(cgroup_id)
        if found is not None or self.root is None:
            return found
        with self._lock:
            if time.monotonic() - self._walked_at >= self.min_refresh:
                self._paths = self._walk(self.root)
                self._walked_at = time.monotonic()
                self.walks += 1
        return self._paths.get(cgroup_id)

    def learn(self, events: Iterable[CgroupEvent]) -> None:
        """Remember the paths of cgroups the kernel created or removed."""
        with self._lock:
            for event in events:
                self._learned.pop(event.cgroup_id, None)  # re-inserted as the newest
                self._learned[event.cgroup_id] = event.path
                if event.removed:
                    self._removed.setdefault(event.cgroup_id, self._interval)
            while len(self._learned) > self.max_learned:
                oldest = next(iter(self._learned))
                del self._learned[oldest]
                self._removed.pop(oldest, None)

    def end_interval(self) -> None:
        """After a collect: forget cgroups removed before this interval began."""
        with self._lock:
            gone = [cid for cid, at in self._removed.items() if at < self._interval]
            for cid in gone:
                del self._removed[cid]
                self._learned.pop(cid, None)
                self._paths.pop(cid, None)
            self._interval += 1

    @property
    def learned(self) -> int:
        """Paths held from the kernel's events (bounded by ``max_learned``)."""
        return len(self._learned)

    @staticmethod
    def _walk(root: Path) -> dict[int, str]:
        paths = {root.stat().st_ino: "/"}
        stack = [(str(root), "")]
        while stack:
            directory, rel = stack.pop()
            try:
                entries = list(os.scandir(directory))
            except OSError:  # removed while walking
                continue
            for entry in entries:
                try:
                    if not entry.is_dir(follow_symlinks=False):
                        continue
                    child = f"{rel}/{entry.name}"
                    paths[entry.inode()] = child
                except OSError:
                    continue
                stack.append((entry.path, child))
        return paths


@dataclass(frozen=True, slots=True)
class Attribution:
    """The labels of one cgroup (OTel semantic-convention names)."""

    cgroup_path: str
    container_id: str = ""
    pod_uid: str = ""
    pod_name: str = ""
    namespace: str = ""
    container_name: str = ""

    def attributes(self) -> dict[str, str]:
        """Non-empty OTLP attributes."""
        pairs = {
            "cgroup.path": self.cgroup_path,
            "container.id": self.container_id,
            "k8s.pod.uid": self.pod_uid,
            "k8s.pod.name": self.pod_name,
            "k8s.namespace.name": self.namespace,
            "k8s.container.name": self.container_name,
        }
        return {k: v for k, v in pairs.items() if v}


FOLDED = Attribution(cgroup_path=OTHER)


class Attributor:
    """cgroup id or path -> :class:`Attribution`, cached until the pod metadata changes."""

    def __init__(self, index: CgroupIndex, pods: PodCache | None = None) -> None:
        self.index = index
        self.pods = pods

    def by_id(self, cgroup_id: int) -> Attribution:
        """Labels of a v2 cgroup id; one neither walked nor learnt from events gets its number."""
        path = self.index.path(cgroup_id)
        return self.by_path(path if path is not None else f"unknown:{cgroup_id}")

    def by_path(self, path: str) -> Attribution:
        """Labels of a cgroup path."""
        owner = parse_path(path)
        name = namespace = container_name = ""
        if owner.pod_uid and self.pods is not None:
            pod = self.pods.lookup(owner.pod_uid)
            if pod is not None:
                name, namespace = pod.name, pod.namespace
                container_name = pod.containers.get(owner.container_id, "")
        return Attribution(path, owner.container_id, owner.pod_uid, name, namespace, container_name)
