"""The service graph on hand-built OTLP trace requests: pairs within and across fetches,
cross-service internal spans, root spans, virtual nodes, unpaired and dropped spans, eBPF
edges, ageing, checkpoints, the node-graph JSON and trace partitioning."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from analytics.spanmetrics.api import node_graph
from analytics.spanmetrics.config import SpanMetricsConfig
from analytics.spanmetrics.edges import EdgeView
from analytics.spanmetrics.partition import partition_of, split
from analytics.spanmetrics.stage import SpanStage, service_of_owner
from analytics.traces.spans import decode_spans

MS = 1_000_000
T0 = 1_700_000_000 * 10**9
SERVER, CLIENT, INTERNAL = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT, Span.SPAN_KIND_INTERNAL
PRODUCER, CONSUMER = Span.SPAN_KIND_PRODUCER, Span.SPAN_KIND_CONSUMER


@dataclass
class S:
    """One span to build: service, kind, parent (another S), times in ms after T0."""

    service: str
    kind: int
    start_ms: float
    end_ms: float
    parent: S | None = None
    error: bool = False
    attrs: dict[str, str] = field(default_factory=dict)
    name: str = "op"
    trace: bytes = b""
    span_id: bytes = field(default_factory=lambda: os.urandom(8))

    def __post_init__(self) -> None:
        if self.parent is not None:
            self.trace = self.parent.trace
        elif not self.trace:
            self.trace = os.urandom(16)


def request(spans: Sequence[S]) -> bytes:
    """One ExportTraceServiceRequest, a resource per service."""
    req = ExportTraceServiceRequest()
    by: dict[str, list[S]] = {}
    for s in spans:
        by.setdefault(s.service, []).append(s)
    for service, group in by.items():
        rs = req.resource_spans.add()
        rs.resource.attributes.append(
            KeyValue(key="service.name", value=AnyValue(string_value=service))
        )
        out = rs.scope_spans.add().spans
        for s in group:
            span = out.add(
                trace_id=s.trace,
                span_id=s.span_id,
                parent_span_id=s.parent.span_id if s.parent else b"",
                name=s.name,
                kind=s.kind,
                start_time_unix_nano=T0 + int(s.start_ms * MS),
                end_time_unix_nano=T0 + int(s.end_ms * MS),
            )
            if s.error:
                span.status.code = 2
            for k, v in s.attrs.items():
                span.attributes.append(KeyValue(key=k, value=AnyValue(string_value=v)))
    return req.SerializeToString()


def stage(**graph: object) -> SpanStage:
    return SpanStage(SpanMetricsConfig.model_validate({"graph": {"root_client": "", **graph}}))


def edges(st: SpanStage) -> dict[tuple[str, str, str], EdgeView]:
    return {(e.client, e.server, e.connection_type): e for e in st.edges.views()}


def call(
    t: float = 0, error: bool = False, client: str = "front", server: str = "cart"
) -> tuple[S, S]:
    """A client span and its server child: 30 ms at the client, 20 ms at the server."""
    c = S(client, CLIENT, t, t + 30, attrs={"server.address": server})
    s = S(server, SERVER, t + 5, t + 25, parent=c, error=error)
    return c, s


def test_client_server_pair_in_one_request() -> None:
    st = stage()
    pairs = [call(i * 100, error=(i == 0)) for i in range(4)]
    st.observe_payloads([request([x for p in pairs for x in p])])
    (e,) = edges(st).values()
    assert (e.client, e.server, e.connection_type) == ("front", "cart", "")
    assert (e.requests, e.failed, e.seen_by) == (4, 1, ("spans",))
    # 20 ms server, 30 ms client: both in the first bucket (<= 0.1 s)
    assert e.server_buckets[0] == e.client_buckets[0] == 4
    assert e.server_sum == pytest.approx(0.080) and e.client_sum == pytest.approx(0.120)
    assert st.graph.pending == 0


@pytest.mark.parametrize("client_first", [True, False])
def test_pair_across_fetches_either_order(client_first: bool) -> None:
    st = stage()
    c, s = call()
    first, second = (c, s) if client_first else (s, c)
    st.observe_payloads([request([first])])
    assert st.graph.pending == 1 and not edges(st)
    st.observe_payloads([request([second])])
    assert st.graph.pending == 0
    assert edges(st)[("front", "cart", "")].requests == 1


def test_internal_span_with_a_parent_in_another_service_is_an_edge() -> None:
    st = stage()
    root = S("front", INTERNAL, 0, 50)
    child = S("worker", INTERNAL, 10, 20, parent=root)
    same = S("front", INTERNAL, 1, 2, parent=root)  # same service: no edge
    st.observe_payloads([request([root, child, same])])
    e = edges(st)
    assert list(e) == [("front", "worker", "")]
    assert e[("front", "worker", "")].client_sum == 0  # an internal parent has no client time
    assert e[("front", "worker", "")].server_sum == pytest.approx(0.010)


def test_producer_consumer_pair() -> None:
    st = stage()
    p = S("orders", PRODUCER, 0, 2)
    c = S("mailer", CONSUMER, 100, 150, parent=p)
    st.observe_payloads([request([p]), request([c])])
    assert edges(st)[("orders", "mailer", "")].requests == 1


def test_root_server_spans_come_from_the_root_client() -> None:
    st = stage(root_client="user")
    st.observe_payloads([request([S("front", SERVER, 0, 10), S("front", SERVER, 20, 30)])])
    assert edges(st)[("user", "front", "virtual_node")].requests == 2


def test_expired_client_spans_become_virtual_nodes_or_unpaired() -> None:
    st = stage(wait="1s")
    db = S("cart", CLIENT, 0, 3, attrs={"db.system": "postgresql"})
    kafka = S("cart", PRODUCER, 0, 1, attrs={"messaging.system": "kafka"})
    api = S("cart", CLIENT, 0, 4, attrs={"server.address": "api.example.com"})
    lonely_client = S("cart", CLIENT, 0, 5)
    lonely_server = S("pay", SERVER, 0, 5, parent=S("gone", CLIENT, 0, 6))
    st.observe_payloads([request([db, kafka, api, lonely_client, lonely_server])])
    assert st.graph.pending == 5 and not edges(st)
    st.observe_payloads([request([S("x", INTERNAL, 2000, 2001)])])  # time moves on by 2 s
    e = edges(st)
    assert e[("cart", "postgresql", "database")].client_buckets[0] == 1
    assert e[("cart", "kafka", "messaging")].requests == 1
    assert e[("cart", "api.example.com", "virtual_node")].requests == 1
    assert dict(st.graph.stats.unpaired) == {("client", "cart"): 1, ("server", "pay"): 1}
    assert st.graph.pending == 0


def test_max_pending_drops_and_counts() -> None:
    st = stage(max_pending=3)
    st.observe_payloads([request([S("a", CLIENT, i, i + 1) for i in range(5)])])
    assert st.graph.pending == 3 and st.graph.stats.dropped == 2


def ebpf_record(edges_: list[dict[str, object]], t_ms: float = 0) -> bytes:
    """An `edges` stream record as ebpf/component.py writes it."""
    body = {
        "time_unix_nano": T0 + int(t_ms * MS),
        "start_time_unix_nano": T0,
        "resource": {"host.name": "node-1"},
        "edges": edges_,
    }
    return json.dumps(body).encode()


def tcp(pod: str, address: str, port: int, connects: int, failed: int = 0) -> dict[str, object]:
    return {
        "client": {"k8s.pod.name": pod, "k8s.namespace.name": "shop", "container.id": "abc"},
        "server": {"address": address, "port": port},
        "connects": connects,
        "failed": failed,
        "latency_us_total": 120.0,
    }


def test_ebpf_edges_confirm_span_edges_and_add_tcp_edges() -> None:
    st = stage()
    c = S("front", CLIENT, 0, 30, attrs={"server.address": "10.0.0.7"})
    s = S("cart", SERVER, 5, 25, parent=c)
    st.observe_payloads([request([c, s])])
    merged = st.observe_edges(
        ebpf_record(
            [
                tcp("front-7d9f8b6c4-x2k9q", "10.0.0.7", 8080, 3),  # the span edge's peer
                tcp("front-7d9f8b6c4-x2k9q", "10.0.0.9", 6379, 5, failed=1),  # no spans
                {"client": {}, "server": {"address": "10.0.0.1", "port": 1}, "connects": 1},
                tcp("front-7d9f8b6c4-x2k9q", "other", 0, 2),  # folded by the agent
            ],
            t_ms=40,
        )
    )
    assert merged == 2 and st.graph.stats.ebpf_unattributed == 2
    e = edges(st)
    assert e[("front", "cart", "")].seen_by == ("spans", "ebpf")
    assert e[("front", "cart", "")].requests == 1  # spans count requests, eBPF confirms
    tcp_edge = e[("front", "10.0.0.9:6379", "tcp")]
    assert (tcp_edge.requests, tcp_edge.failed, tcp_edge.seen_by) == (5, 1, ("ebpf",))
    with pytest.raises(ValueError):
        st.observe_edges(b"not json")


@pytest.mark.parametrize(
    ("owner", "service"),
    [
        ({"k8s.pod.name": "cart-5f7c9d8b6-abcde"}, "cart"),
        ({"k8s.pod.name": "db-0"}, "db"),
        ({"k8s.deployment.name": "pay", "k8s.pod.name": "x-1"}, "pay"),
        ({"k8s.container.name": "redis"}, "redis"),
        ({"cgroup.path": "/system.slice/foo"}, ""),
    ],
)
def test_service_of_an_ebpf_owner(owner: dict[str, str], service: str) -> None:
    assert service_of_owner(owner) == service


def test_edges_age_out_after_edge_ttl() -> None:
    st = stage(edge_ttl="60s")
    st.observe_payloads([request(list(call(0)))])
    st.observe_payloads([request(list(call(30_000, client="a", server="b")))])
    assert st.evict() == (0, 0)
    st.observe_payloads([request(list(call(70_000, client="a", server="b")))])
    assert st.evict() == (0, 1)
    assert list(edges(st)) == [("a", "b", "")]
    assert edges(st)[("a", "b", "")].requests == 2


def test_checkpoint_round_trip_keeps_edges_and_counters() -> None:
    st = stage(wait="1s")
    st.observe_payloads([request([*call(0, error=True), S("cart", CLIENT, 0, 1)])])
    st.observe_payloads([request([S("x", INTERNAL, 5000, 5001)])])
    again = stage(wait="1s")
    again.restore_parts(st.snapshot_parts())
    assert edges(again) == edges(st)
    assert again.graph.stats.unpaired == st.graph.stats.unpaired
    assert len(again.metrics) == len(st.metrics) == 4
    again.observe_payloads([request(list(call(6000)))])
    assert edges(again)[("front", "cart", "")].requests == 2


def test_node_graph_shape_and_rates() -> None:
    st = stage(root_client="user")
    root = S("front", SERVER, 0, 40)
    c = S("front", CLIENT, 1, 35, parent=root)
    s = S("cart", SERVER, 2, 30, parent=c, error=True)
    st.observe_payloads([request([root, c, s])])
    st.edges.mark(T0)
    for i in range(1, 11):  # 10 more requests over 10 s, one failed at the server
        root = S("front", SERVER, i * 1000, i * 1000 + 40)
        c = S("front", CLIENT, i * 1000 + 1, i * 1000 + 35, parent=root)
        s = S("cart", SERVER, i * 1000 + 2, i * 1000 + 30, parent=c, error=i == 5)
        st.observe_payloads([request([root, c, s])])
    st.edges.mark(T0 + 10 * 10**9)
    graph = node_graph(st.edges.views())
    nodes = {n["id"]: n for n in graph["nodes"]}
    assert set(nodes) == {"user", "front", "cart"}
    assert nodes["cart"]["mainStat"] == pytest.approx(1.0)  # 10 requests in 10 s
    assert nodes["cart"]["secondaryStat"] == pytest.approx(10.0)  # 1 of 10 failed
    assert nodes["cart"]["arc__failed"] == pytest.approx(0.1)
    assert nodes["user"]["mainStat"] == pytest.approx(1.0)  # serves none: what it sent
    by_id = {e["id"]: e for e in graph["edges"]}
    edge = by_id["front->cart"]
    assert (edge["source"], edge["target"], edge["seen_by"]) == ("front", "cart", ["spans"])
    assert (edge["requests"], edge["failed"]) == (11, 2)
    assert by_id["user->front/virtual_node"]["connection_type"] == "virtual_node"


def test_partition_of_is_stable_and_split_keeps_traces_together() -> None:
    tid = bytes(range(16))
    assert partition_of(tid, 4) == int.from_bytes(bytes(range(8)), "big") % 4 == 3
    with pytest.raises(ValueError):
        partition_of(tid, 0)
    spans = [x for i in range(40) for x in call(i)]
    batch = decode_spans(request(spans))
    parts = split(batch, 3)
    assert sum(len(p) for p in parts) == len(batch)
    for k, part in enumerate(parts):
        assert all(partition_of(t, 3) == k for t in part.trace_id)
    # each partition's graph pairs its own traces: the totals match one graph's
    one, many = stage(), [stage() for _ in parts]
    one.observe(batch)
    for st, part in zip(many, parts, strict=True):
        st.observe(part)
    total = sum(edges(st)[("front", "cart", "")].requests for st in many if edges(st))
    assert total == edges(one)[("front", "cart", "")].requests == 40


def test_rates_need_two_marks_at_different_span_times() -> None:
    st = stage()
    st.edges.mark(0)  # before any span: ignored
    st.observe_payloads([request(list(call(0)))])
    st.edges.mark(T0 + 30 * MS)
    st.observe_payloads([request([x for i in range(1, 5) for x in call(i * 500)])])
    st.edges.mark(T0 + 2030 * MS)
    st.edges.mark(T0 + 2030 * MS)  # no newer spans: replaces, does not add
    (edge,) = st.edges.views()
    assert edge.rate == pytest.approx(4 / 2.0)


def test_a_message_with_several_consumers_and_duplicate_spans() -> None:
    st = stage(wait="1s")
    p = S("orders", PRODUCER, 0, 2, attrs={"messaging.system": "kafka"})
    consumers = [S(svc, CONSUMER, 100, 150, parent=p) for svc in ("mailer", "billing")]
    st.observe_payloads([request([p])])
    st.observe_payloads([request(consumers)])
    c, s = call(0)
    st.observe_payloads([request([s])])
    st.observe_payloads([request([c, c])])  # delivered twice in one fetch
    st.observe_payloads([request([S("x", INTERNAL, 5000, 5001)])])  # the producer expires
    e = edges(st)
    assert e[("orders", "mailer", "")].requests == e[("orders", "billing", "")].requests == 1
    assert ("orders", "kafka", "messaging") not in e  # it met its consumers: no virtual edge
    assert e[("front", "cart", "")].requests == 1
    assert not st.graph.stats.unpaired


def test_the_expiry_queue_stays_bounded_by_max_pending() -> None:
    st = stage(max_pending=10)
    for i in range(1500):  # every client pairs a fetch later: queued, no longer waiting
        c, s = call(i)
        st.observe_payloads([request([c])])
        st.observe_payloads([request([s])])
    assert st.graph.pending == 0
    assert len(st.graph._expiry) <= 2 * 10 + 1024
    assert edges(st)[("front", "cart", "")].requests == 1500
