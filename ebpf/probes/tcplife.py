"""TCP connection lifecycle (sock:inet_sock_set_state): connects, failed connects, accepts,
connect latency and lifetime per cgroup and endpoint, plus the client → server edges.

Client-side series carry ``remote`` (the server's ip:port) and belong to the connecting
task's cgroup; accepts and server-side lifetimes carry ``local`` (the listening ip:port,
not the client's ephemeral port, which would be unbounded) and belong to the listening
socket's cgroup. See ebpf/programs/tcplife.c for the state machine.
"""

from __future__ import annotations

from typing import Any

from ebpf.points import Collected, MetricPoint, PointKind, TcpEdge
from ebpf.probes import register
from ebpf.probes.base import log2_histogram
from ebpf.probes.tcpsock import (
    SockCgroupProbe,
    address,
    drop_points,
    endpoint,
)

DROP_MAPS = ("socks", "stats")  # index i of the C drops[] array


@register("tcplife")
class TcpLife(SockCgroupProbe):
    """TCP connects, accepts, failures, connect latency and lifetime per cgroup/endpoint."""

    name = "tcplife"
    program = "tcplife"
    tracepoints: tuple[str, ...] = ("sock:inet_sock_set_state",)

    def collect(self) -> Collected:
        out = Collected()
        for ep, s in self.drain("stats"):
            if ep.side:
                out.points.extend(_server_points(ep, s))
            else:
                out.points.extend(_client_points(ep, s))
                if s.connects or s.failed:
                    out.edges.append(_edge(ep, s))
        out.points.extend(drop_points(self.name, self.table("drops"), DROP_MAPS, self._drops_seen))
        out.points.extend(self.map_full_points())
        return out


def _counter(name: str, value: int, ep: Any, label: str, description: str) -> MetricPoint:
    return MetricPoint(
        name,
        PointKind.COUNTER,
        float(value),
        cgroup_id=ep.cgroup,
        labels={label: endpoint(ep)},
        unit="1",
        description=description,
    )


def _lifetime(s: Any, ep: Any, label: str) -> MetricPoint:
    return MetricPoint(
        "keiko.ebpf.tcp.lifetime",
        PointKind.HISTOGRAM,
        log2_histogram(s.lifetime_ms, "ms", None),
        cgroup_id=ep.cgroup,
        labels={label: endpoint(ep)},
        unit="ms",
        description="Lifetime of TCP connections, from ESTABLISHED to CLOSE",
    )


def _client_points(ep: Any, s: Any) -> list[MetricPoint]:
    points = []
    if s.connects:
        points.append(
            _counter("keiko.ebpf.tcp.connects", s.connects, ep, "remote", "TCP connects made")
        )
        points.append(
            MetricPoint(
                "keiko.ebpf.tcp.connect.latency",
                PointKind.HISTOGRAM,
                log2_histogram(s.latency_us, "us", float(s.latency_us_total)),
                cgroup_id=ep.cgroup,
                labels={"remote": endpoint(ep)},
                unit="us",
                description="TCP connect latency, from SYN sent to ESTABLISHED",
            )
        )
    if s.failed:
        points.append(
            _counter(
                "keiko.ebpf.tcp.connect_failures",
                s.failed,
                ep,
                "remote",
                "TCP connects that never got ESTABLISHED (refused, timed out)",
            )
        )
    if s.closed:
        points.append(_lifetime(s, ep, "remote"))
    return points


def _server_points(ep: Any, s: Any) -> list[MetricPoint]:
    points = []
    if s.accepts:
        points.append(
            _counter("keiko.ebpf.tcp.accepts", s.accepts, ep, "local", "TCP connections accepted")
        )
    if s.closed:
        points.append(_lifetime(s, ep, "local"))
    return points


def _edge(ep: Any, s: Any) -> TcpEdge:
    return TcpEdge(
        cgroup_id=ep.cgroup,
        remote_addr=address(ep),
        remote_port=ep.port,
        connects=s.connects,
        failed=s.failed,
        latency_us_total=float(s.latency_us_total),
    )
