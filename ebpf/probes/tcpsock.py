"""What the two TCP probes share: the socket → cgroup lookup and endpoint formatting.

Both programs ``#include "sock_cgroup.h"`` (ebpf/programs; the loader inlines it, see
``with_sock_cgroup``): ``sock_cgroup_id(sk)`` reads
``sk->sk_cgrp_data.cgroup->kn->id`` with member offsets taken from the running kernel's
BTF, because the headers bcc compiles against may be another kernel's (on the test machine
Debian's 6.1 headers serve a 6.18 kernel: struct sock differs by 24 bytes there).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ebpf.btf import BtfError, offsets_cflags
from ebpf.points import MetricPoint, PointKind
from ebpf.probe import ProbeError
from ebpf.probes.base import PROGRAMS, BccProbe

SOCK_CGROUP_OFFSETS = {
    "OFF_SOCK_CGRP_DATA": ("sock", "sk_cgrp_data"),
    "OFF_SKCD_CGROUP": ("sock_cgroup_data", "cgroup"),
    "OFF_CGROUP_KN": ("cgroup", "kn"),
    "OFF_KERNFS_NODE_ID": ("kernfs_node", "id"),
}


INCLUDE = '#include "sock_cgroup.h"'


def with_sock_cgroup(source: str) -> str:
    """``source`` with its ``#include "sock_cgroup.h"`` replaced by the header's text.

    Inlined so that the program is one self-contained text, whatever bcc's include path.
    """
    header = (PROGRAMS / "sock_cgroup.h").read_text()
    return source.replace(INCLUDE, header, 1)


def sock_cgroup_cflags(probe: str) -> list[str]:
    """The struct offsets sock_cgroup.h needs, from the running kernel's BTF."""
    try:
        return offsets_cflags(SOCK_CGROUP_OFFSETS)
    except BtfError as exc:
        raise ProbeError(
            probe, str(exc), "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distros)"
        ) from exc


def endpoint(ep: Any) -> str:
    """``ip:port`` of a C ``struct endpoint_t`` (``[v6]:port`` for IPv6; v4-mapped as v4)."""
    raw = bytes(ep.addr)
    if not ep.v6:
        return f"{ipaddress.IPv4Address(raw[:4])}:{ep.port}"
    addr = ipaddress.IPv6Address(raw)
    if addr.ipv4_mapped is not None:
        return f"{addr.ipv4_mapped}:{ep.port}"
    return f"[{addr}]:{ep.port}"


def address(ep: Any) -> str:
    """The IP alone of a C ``struct endpoint_t`` (the service graph's server address)."""
    return endpoint(ep).rsplit(":", 1)[0].strip("[]")


def drop_points(
    probe: str, drops: Any, maps: tuple[str, ...], seen: dict[str, int]
) -> list[MetricPoint]:
    """``keiko.ebpf.map.drops`` {probe, map}: new entries a full map refused since last call.

    The C ``drops`` array only grows (atomic adds); the delta is taken here against
    ``seen``, so no drop is lost to a read-then-zero race.
    """
    points = []
    for index, name in enumerate(maps):
        total = int(drops[drops.Key(index)].value)
        delta, seen[name] = total - seen.get(name, 0), total
        if delta > 0:
            points.append(
                MetricPoint(
                    "keiko.ebpf.map.drops",
                    PointKind.COUNTER,
                    float(delta),
                    labels={"probe": probe, "map": name},
                    unit="1",
                    description="New entries a full BPF map refused (raise its size in config)",
                )
            )
    return points


class SockCgroupProbe(BccProbe):
    """A TCP probe whose program includes sock_cgroup.h (the socket's cgroup, read at
    offsets from the running kernel's BTF) and whose ``drops`` array counts what full maps
    refused (see drop_points)."""

    def __init__(self, sizes: dict[str, Any] | None = None) -> None:
        super().__init__(sizes)
        self._drops_seen: dict[str, int] = {}

    def cflags(self) -> list[str]:
        return super().cflags() + sock_cgroup_cflags(self.name)

    def source(self) -> str:
        return with_sock_cgroup(super().source())
