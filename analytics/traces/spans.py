"""Spans as columns: the interface between trace decoding and span metrics, the service
graph, trace analysis and root-cause analysis.

Decoding touches each span once and copies only the fields analysis needs, column by
column (protobuf's upb backend makes attribute access the cost, about 1.3 µs per span for
these fields); attributes are scanned only on client and producer spans, for the peer a
call went to when the callee sends no spans of its own (a database, an external API).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from keiko.partitioning import value_text as any_value_text


class SpanKind(IntEnum):
    """OTLP's span kinds (``Span.SpanKind``)."""

    UNSPECIFIED = 0
    INTERNAL = 1
    SERVER = 2
    CLIENT = 3
    PRODUCER = 4
    CONSUMER = 5


KIND_NAMES = {
    SpanKind.UNSPECIFIED: "SPAN_KIND_UNSPECIFIED",
    SpanKind.INTERNAL: "SPAN_KIND_INTERNAL",
    SpanKind.SERVER: "SPAN_KIND_SERVER",
    SpanKind.CLIENT: "SPAN_KIND_CLIENT",
    SpanKind.PRODUCER: "SPAN_KIND_PRODUCER",
    SpanKind.CONSUMER: "SPAN_KIND_CONSUMER",
}
STATUS_ERROR = 2  # Status.StatusCode.STATUS_CODE_ERROR

# Where a client span names its callee, best first (semantic conventions, old and new).
PEER_KEYS = (
    "peer.service",
    "db.system",
    "messaging.system",
    "rpc.service",
    "server.address",
    "net.peer.name",
    "network.peer.address",
    "net.peer.ip",
    "http.host",
)
# The pod (or process) and the node a span ran on, best first.
INSTANCE_KEYS = ("k8s.pod.name", "service.instance.id", "host.name")
NODE_KEYS = ("k8s.node.name", "host.name")
UNKNOWN_SERVICE = "unknown_service"


@dataclass(slots=True)
class SpanBatch:
    """Spans as columns; row ``i`` of every column is one span.

    Ids are raw bytes (16-byte trace ids, 8-byte span ids; ``b""`` for a root's parent).
    ``peer`` is the callee named by a client or producer span's attributes ("" otherwise);
    ``instance`` and ``node`` come from the resource ("" when unknown).
    """

    trace_id: list[bytes] = field(default_factory=list)
    span_id: list[bytes] = field(default_factory=list)
    parent_id: list[bytes] = field(default_factory=list)
    service: list[str] = field(default_factory=list)
    name: list[str] = field(default_factory=list)
    kind: np.ndarray = field(default_factory=lambda: np.empty(0, np.int8))
    start_ns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    end_ns: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    error: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    peer: list[str] = field(default_factory=list)
    instance: list[str] = field(default_factory=list)
    node: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.trace_id)

    @property
    def duration_ns(self) -> np.ndarray:
        """End minus start, never negative (clock skew within a span is clamped)."""
        return np.maximum(self.end_ns - self.start_ns, 0)

    def take(self, rows: np.ndarray | list[int]) -> SpanBatch:
        """The rows ``rows`` (indices, in that order) as a new batch."""
        idx = np.asarray(rows, dtype=np.int64)
        pick = idx.tolist()
        return SpanBatch(
            [self.trace_id[i] for i in pick],
            [self.span_id[i] for i in pick],
            [self.parent_id[i] for i in pick],
            [self.service[i] for i in pick],
            [self.name[i] for i in pick],
            self.kind[idx],
            self.start_ns[idx],
            self.end_ns[idx],
            self.error[idx],
            [self.peer[i] for i in pick],
            [self.instance[i] for i in pick],
            [self.node[i] for i in pick],
        )

    @staticmethod
    def concat(batches: Iterable[SpanBatch]) -> SpanBatch:
        """One batch with the rows of ``batches`` in order."""
        parts = [b for b in batches if len(b)]
        if not parts:
            return SpanBatch()
        if len(parts) == 1:
            return parts[0]
        out = SpanBatch()
        for b in parts:
            out.trace_id += b.trace_id
            out.span_id += b.span_id
            out.parent_id += b.parent_id
            out.service += b.service
            out.name += b.name
            out.peer += b.peer
            out.instance += b.instance
            out.node += b.node
        out.kind = np.concatenate([b.kind for b in parts])
        out.start_ns = np.concatenate([b.start_ns for b in parts])
        out.end_ns = np.concatenate([b.end_ns for b in parts])
        out.error = np.concatenate([b.error for b in parts])
        return out


def _first(attributes: Iterable[KeyValue], keys: tuple[str, ...]) -> str:
    found = {kv.key: kv.value for kv in attributes if kv.key in keys}
    for key in keys:
        if key in found:
            text = any_value_text(found[key])
            if text:
                return text
    return ""


def _peer(attributes: Iterable[KeyValue]) -> str:
    return _first(attributes, PEER_KEYS)


def decode_spans(payload: bytes | ExportTraceServiceRequest) -> SpanBatch:
    """The spans of one OTLP ExportTraceServiceRequest (protobuf bytes or message)."""
    request = (
        payload
        if isinstance(payload, ExportTraceServiceRequest)
        else ExportTraceServiceRequest.FromString(payload)
    )
    out = SpanBatch()
    kinds: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    errors: list[bool] = []
    for rs in request.resource_spans:
        attrs = rs.resource.attributes
        service = _first(attrs, ("service.name",)) or UNKNOWN_SERVICE
        instance = _first(attrs, INSTANCE_KEYS)
        node = _first(attrs, NODE_KEYS)
        for ss in rs.scope_spans:
            spans = ss.spans
            n = len(spans)
            if not n:
                continue
            out.trace_id += [s.trace_id for s in spans]
            out.span_id += [s.span_id for s in spans]
            out.parent_id += [s.parent_span_id for s in spans]
            out.name += [s.name for s in spans]
            k = [s.kind for s in spans]
            kinds += k
            starts += [s.start_time_unix_nano for s in spans]
            ends += [s.end_time_unix_nano for s in spans]
            errors += [s.status.code == STATUS_ERROR for s in spans]
            out.peer += [
                _peer(s.attributes) if kind in (3, 4) else ""
                for s, kind in zip(spans, k, strict=True)
            ]
            out.service += [service] * n
            out.instance += [instance] * n
            out.node += [node] * n
    out.kind = np.array(kinds, np.int8)
    out.start_ns = np.array(starts, np.int64)
    out.end_ns = np.array(ends, np.int64)
    out.error = np.array(errors, bool)
    return out
