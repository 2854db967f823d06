"""Metrics without BPF: CPU, memory and disk per cgroup from cgroupfs, network from procfs.

Shaped as a probe (load / collect / close) so the agent treats it like any other. Every
cgroup is read from the v2 file when the v2 hierarchy has the controller, else from the
v1 controller's directory at the same relative path (hybrid nodes). Points name their
cgroup by path (label ``cgroup.path``), which the agent attributes like a cgroup id.
Network per cgroup: a pod's containers share a network namespace, and /proc/<pid>/net/dev
shows the interfaces of the namespace of <pid>; so each cgroup that has a task in a
namespace other than the host's reports that namespace's traffic, once per namespace (the
first cgroup found in it). The host's own interfaces are reported apart.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from ebpf.agent import PATH_LABEL
from ebpf.attribution import CGROUP_FS, v2_root
from ebpf.points import Collected, MetricPoint, PointKind

# v1 controller -> a file every cgroup of it has (to tell a mounted controller).
V1 = {"cpuacct": "cpuacct.usage", "memory": "memory.usage_in_bytes", "blkio": "blkio.reset_stats"}


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, ValueError):
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def parse_io_stat(text: str) -> tuple[int, int]:
    """cgroup v2 io.stat -> (read bytes, written bytes) summed over devices."""
    read = written = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _, value = field.partition("=")
            if key == "rbytes":
                read += int(value)
            elif key == "wbytes":
                written += int(value)
    return read, written


def parse_blkio(text: str) -> tuple[int, int]:
    """cgroup v1 blkio.throttle.io_service_bytes -> (read bytes, written bytes)."""
    read = written = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "Read":
            read += int(parts[2])
        elif len(parts) == 3 and parts[1] == "Write":
            written += int(parts[2])
    return read, written


def parse_net_dev(text: str) -> dict[str, tuple[int, int]]:
    """/proc/net/dev -> interface: (received bytes, transmitted bytes)."""
    found = {}
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if len(fields) >= 9:
            found[name.strip()] = (int(fields[0]), int(fields[8]))
    return found


class CgroupFallback:
    """Per-cgroup CPU, memory, disk and network, and the host's network, as deltas."""

    name = "fallback"
    tracepoints: tuple[str, ...] = ()

    def __init__(
        self, max_cgroups: int = 2000, base: Path = CGROUP_FS, proc: Path = Path("/proc")
    ) -> None:
        self.max_cgroups = max_cgroups
        self.base = base
        self.proc = proc
        self.v2 = v2_root(base)
        self.v1 = {c: base / c for c, f in V1.items() if (base / c / f).is_file()}
        self._prev: dict[tuple[str, ...], int] = {}
        self.skipped = 0  # cgroups beyond max_cgroups in the last collect

    def load(self) -> None:
        """Nothing to load: cgroupfs and procfs are read on every collect."""

    def close(self) -> None:
        """Nothing to detach."""

    def cgroups(self) -> Iterator[str]:
        """Relative cgroup paths of every hierarchy read (breadth first, bounded)."""
        roots = [r for r in (self.v2, *self.v1.values()) if r is not None]
        seen: set[str] = set()
        queue = deque([(root, "") for root in roots])
        while queue and len(seen) < self.max_cgroups:
            directory, rel = queue.popleft()
            key = rel or "/"
            if key not in seen:
                seen.add(key)
                yield key
            try:
                children = [e for e in os.scandir(directory) if e.is_dir(follow_symlinks=False)]
            except OSError:
                continue
            queue.extend((Path(e.path), f"{rel}/{e.name}") for e in children)
        self.skipped = len(queue)

    def _v2(self, rel: str, name: str) -> str | None:
        return _read(self.v2 / rel.lstrip("/") / name) if self.v2 is not None else None

    def _v1(self, rel: str, controller: str, name: str) -> str | None:
        root = self.v1.get(controller)
        return _read(root / rel.lstrip("/") / name) if root is not None else None

    def _delta(self, key: tuple[str, ...], value: int) -> int | None:
        old = self._prev.get(key)
        self._prev[key] = value
        if old is None:
            return None  # the first reading is the baseline
        return value - old if value >= old else value  # a reset (re-created cgroup)

    def collect(self) -> Collected:
        """One reading of every bounded cgroup and of the host's interfaces."""
        points: list[MetricPoint] = []
        live: set[tuple[str, ...]] = set()
        host_netns = _netns(self.proc / "self")
        netns_seen: set[int] = set() if host_netns is None else {host_netns}
        for rel in self.cgroups():
            points += self._cgroup_points(rel, live)
            points += self._cgroup_net_points(rel, live, netns_seen)
        points += self._net_points(live)
        self._prev = {k: v for k, v in self._prev.items() if k in live}
        return Collected(points)

    def _counter(
        self, live: set[tuple[str, ...]], key: tuple[str, ...], value: int | None, **kw: object
    ) -> list[MetricPoint]:
        if value is None:
            return []
        live.add(key)
        delta = self._delta(key, value)
        if delta is None:
            return []
        return [MetricPoint(kind=PointKind.COUNTER, value=float(delta), **kw)]  # type: ignore[arg-type]

    def _cgroup_points(self, rel: str, live: set[tuple[str, ...]]) -> list[MetricPoint]:
        points: list[MetricPoint] = []
        usage_us = None
        if (text := self._v2(rel, "cpu.stat")) is not None:
            usage_us = _int(dict(_pairs(text)).get("usage_usec"))
        elif (ns := _int(self._v1(rel, "cpuacct", "cpuacct.usage"))) is not None:
            usage_us = ns // 1000
        labels = {PATH_LABEL: rel}
        points += self._counter(
            live,
            ("cpu", rel),
            usage_us,
            name="keiko.cgroup.cpu.time",
            labels=labels,
            unit="us",
            description="CPU time used by the cgroup's tasks (cgroupfs)",
        )
        memory = _int(self._v2(rel, "memory.current"))
        if memory is None:
            memory = _int(self._v1(rel, "memory", "memory.usage_in_bytes"))
        if memory is not None:
            points.append(
                MetricPoint(
                    "keiko.cgroup.memory.usage",
                    PointKind.GAUGE,
                    float(memory),
                    labels=labels,
                    unit="By",
                    description="Memory charged to the cgroup (cgroupfs)",
                )
            )
        io = self._v2(rel, "io.stat")
        if io is not None:
            rw: tuple[int, int] | None = parse_io_stat(io)
        else:
            v1 = self._v1(rel, "blkio", "blkio.throttle.io_service_bytes")
            rw = parse_blkio(v1) if v1 is not None else None
        for direction, value in zip(("read", "write"), rw or (), strict=False):
            points += self._counter(
                live,
                ("io", rel, direction),
                value,
                name="keiko.cgroup.io.bytes",
                labels={**labels, "direction": direction},
                unit="By",
                description="Bytes read from and written to block devices (cgroupfs)",
            )
        return points

    def _cgroup_net_points(
        self, rel: str, live: set[tuple[str, ...]], netns_seen: set[int]
    ) -> list[MetricPoint]:
        """Traffic of the network namespace of the cgroup's tasks, if not counted yet."""
        pid = self._first_pid(rel)
        if pid is None:
            return []
        netns = _netns(self.proc / pid)
        if netns is None or netns in netns_seen:
            return []
        netns_seen.add(netns)
        devices = parse_net_dev(_read(self.proc / pid / "net" / "dev") or "")
        totals = [sum(v[i] for dev, v in devices.items() if dev != "lo") for i in (0, 1)]
        points: list[MetricPoint] = []
        for direction, value in zip(("receive", "transmit"), totals, strict=True):
            points += self._counter(
                live,
                ("cgnet", rel, direction),
                value,
                name="keiko.cgroup.network.io",
                labels={PATH_LABEL: rel, "direction": direction},
                unit="By",
                description="Bytes through the interfaces (not lo) of the network namespace "
                "of the cgroup's tasks (procfs)",
            )
        return points

    def _first_pid(self, rel: str) -> str | None:
        text = self._v2(rel, "cgroup.procs")
        if not text:
            text = next((t for c in self.v1 if (t := self._v1(rel, c, "cgroup.procs"))), None)
        return text.split(None, 1)[0] if text and text.strip() else None

    def _net_points(self, live: set[tuple[str, ...]]) -> list[MetricPoint]:
        points: list[MetricPoint] = []
        for dev, rx_tx in parse_net_dev(_read(self.proc / "net" / "dev") or "").items():
            for direction, value in zip(("receive", "transmit"), rx_tx, strict=True):
                points += self._counter(
                    live,
                    ("net", dev, direction),
                    value,
                    name="keiko.host.network.io",
                    labels={"device": dev, "direction": direction},
                    unit="By",
                    description="Bytes through the host's network interfaces (/proc/net/dev)",
                )
        return points


def _netns(proc_pid: Path) -> int | None:
    """The inode of the network namespace of a /proc/<pid> (None if it is gone)."""
    try:
        return os.stat(proc_pid / "ns" / "net").st_ino
    except OSError:
        return None


def _pairs(text: str) -> Iterator[tuple[str, str]]:
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        yield key, value
