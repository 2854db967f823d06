"""TCP retransmissions and resets (tcp:tcp_retransmit_skb, tcp_send_reset,
tcp_receive_reset) per cgroup and endpoint.

The owner is the socket's cgroup (sk_cgrp_data, see ebpf/programs/sock_cgroup.h), since
these tracepoints fire in softirq/timer context. Series carry ``remote`` (the peer's
ip:port) or, for sockets seen accepted and for resets sent without a socket, ``local``
(our listening ip:port; without a socket the cgroup is 0, "host").
"""

from __future__ import annotations

from typing import Any

from ebpf.points import Collected, MetricPoint, PointKind
from ebpf.probes import register
from ebpf.probes.tcpsock import SockCgroupProbe, drop_points, endpoint

DROP_MAPS = ("servers", "counts")  # index i of the C drops[] array
SERIES = (
    ("retransmits", "keiko.ebpf.tcp.retransmits", "TCP segments retransmitted"),
    ("resets_sent", "keiko.ebpf.tcp.resets.sent", "TCP resets (RST) sent"),
    ("resets_received", "keiko.ebpf.tcp.resets.received", "TCP resets (RST) received"),
)


@register("tcpretrans")
class TcpRetrans(SockCgroupProbe):
    """TCP retransmits, resets sent and resets received per cgroup and endpoint."""

    name = "tcpretrans"
    program = "tcpretrans"
    tracepoints: tuple[str, ...] = (
        "tcp:tcp_retransmit_skb",
        "tcp:tcp_send_reset",
        "tcp:tcp_receive_reset",
        "sock:inet_sock_set_state",
    )

    def collect(self) -> Collected:
        points = [point for ep, counts in self.drain("counts") for point in _points(ep, counts)]
        points += drop_points(self.name, self.table("drops"), DROP_MAPS, self._drops_seen)
        return Collected(points + self.map_full_points())


def _points(ep: Any, counts: Any) -> list[MetricPoint]:
    labels = {"local" if ep.side else "remote": endpoint(ep)}
    return [
        MetricPoint(
            name,
            PointKind.COUNTER,
            float(getattr(counts, field)),
            cgroup_id=ep.cgroup,
            labels=labels,
            unit="1",
            description=description,
        )
        for field, name, description in SERIES
        if getattr(counts, field)
    ]
