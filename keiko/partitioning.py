"""Cut a store record into per-partition records, for analysis workers that share a stream.

When several ``keiko analyze`` workers share the ``traces`` and ``metrics`` streams, each
owns some partitions, and the NATS store publishes every record as pieces, one per
partition present, each on its partition's subject (issue 8). What a partition must keep
together decides the cut:

- traces: every span of a trace (the service graph pairs a client span with its server
  child), so spans go by :func:`partition_of` their trace id;
- metrics and logs: every series of a service (per-service models need all of them), so
  whole ``Resource*`` messages go by :func:`resource_partition`;
- other records: by their key (:func:`partition_of_text`), uncut.

The functions never change between releases: pieces of one trace or one service in flight
across an upgrade must still meet the same worker.

Pieces are cut out of the payload's wire bytes rather than rebuilt from parsed messages:
spans, resources and scopes are copied byte for byte (unknown fields included), and only
the few length prefixes around them are written anew. That is about twice as fast as
copying messages and serialising each piece (see ``benchmarks/partition_split.py``). The
payload is still parsed once with the upb parser first: it is the validation (a payload it
refuses goes whole to partition 0, for the consumer to count as skipped) and it reads the
trace ids and resource attributes with protobuf's own rules.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import ResourceLogs
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric, ResourceMetrics

from keiko.records import Kind, NewRecord

PARTITIONED_STREAMS: frozenset[str] = frozenset({"traces", "metrics"})
"""The streams whose records the NATS store publishes as per-partition pieces."""

# Resource attributes that identify where telemetry came from when service.name is unset.
IDENTIFYING_ATTRIBUTES = frozenset({"host.name", "container.id"})
IDENTIFYING_PREFIX = "k8s."


def partition_of(trace_id: bytes, count: int) -> int:
    """The partition (0 .. count-1) of a trace: its first 8 bytes, big-endian, mod count.

    Trace ids are random (W3C), so their first 8 bytes spread traces evenly.
    """
    if count <= 0:
        raise ValueError(f"partition count must be positive, got {count}")
    return int.from_bytes(trace_id[:8], "big") % count


def partition_of_text(key: str, count: int) -> int:
    """The partition (0 .. count-1) of a text key: blake2b (8 bytes) of its UTF-8, mod count.

    Python's ``hash()`` of a str changes with every process; blake2b does not.
    """
    if count <= 0:
        raise ValueError(f"partition count must be positive, got {count}")
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


def resource_partition(attributes: Iterable[KeyValue], count: int) -> int:
    """The partition of an OTLP Resource, given its attributes (see :func:`resource_key`)."""
    key = resource_key(attributes)
    if not key:
        if count <= 0:
            raise ValueError(f"partition count must be positive, got {count}")
        return 0
    return partition_of_text(key, count)


def resource_key(attributes: Iterable[KeyValue]) -> str:
    """The text a Resource is partitioned by.

    ``service.namespace/service.name`` when ``service.name`` is set, so every series of a
    service meets one worker whatever host or pod sent it; otherwise the identifying
    attributes (``host.name``, ``container.id``, ``k8s.*``) as sorted ``key=value`` lines;
    "" when there are none.
    """
    values = {kv.key: kv.value for kv in attributes}  # a repeated key: the last one wins
    name = values.get("service.name")
    if name is not None and (name_text := value_text(name)):
        namespace = values.get("service.namespace")
        return f"{value_text(namespace) if namespace is not None else ''}/{name_text}"
    return "\n".join(
        f"{key}={value_text(values[key])}"
        for key in sorted(values)
        if key in IDENTIFYING_ATTRIBUTES or key.startswith(IDENTIFYING_PREFIX)
    )


def value_text(value: AnyValue) -> str:
    """An attribute value as stable text: strings as they are, other kinds in a fixed form."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "int_value":
        return str(value.int_value)
    if which == "double_value":
        return repr(value.double_value)  # the shortest text that round-trips
    if which == "bytes_value":
        return value.bytes_value.hex()
    if which == "array_value":
        return json.dumps([value_text(v) for v in value.array_value.values])
    if which == "kvlist_value":
        return json.dumps({kv.key: value_text(kv.value) for kv in value.kvlist_value.values})
    return ""


def data_points(metric: Metric) -> int:
    """Data points of a metric, the receivers' rule: a metric without data has none.

    The OTLP receivers store ``count`` = these points summed over a request (a metric with
    no data is answered as rejected and stored with no points).
    """
    which = metric.WhichOneof("data")
    if which is None:
        return 0
    points: int = len(getattr(metric, which).data_points)
    return points


def split(record: NewRecord, count: int) -> list[tuple[int, NewRecord]]:
    """``record`` as (partition, piece) pairs, one per partition present, by partition.

    A record that falls in one partition comes back as it is (the same object); so does
    a payload the protobuf parser refuses, in partition 0. Pieces keep the record's kind
    and key; their ``count`` is the items (spans, points, log records) they hold. Trace
    pieces leave out scopes and resources without spans. Never raises but for
    ``count <= 0``.
    """
    if count <= 0:
        raise ValueError(f"partition count must be positive, got {count}")
    if count == 1:
        return [(0, record)]
    try:
        if record.kind == Kind.OTLP_TRACES:
            return _split_traces(record, count)
        if record.kind == Kind.OTLP_METRICS:
            metrics = ExportMetricsServiceRequest.FromString(record.payload)
            return _split_resources(record, count, _metrics_units(metrics.resource_metrics))
        if record.kind == Kind.OTLP_LOGS:
            logs = ExportLogsServiceRequest.FromString(record.payload)
            return _split_resources(record, count, _logs_units(logs.resource_logs))
    except (DecodeError, _Malformed, IndexError):
        # DecodeError: upb refused it. The other two mean the wire scan disagrees with upb,
        # which should not happen; either way the record goes whole, for the consumer.
        return [(0, record)]
    return [(partition_of_text(record.key, count) if record.key else 0, record)]


def _piece(record: NewRecord, payload: bytes, count: int) -> NewRecord:
    return NewRecord(kind=record.kind, payload=payload, count=count, key=record.key)


# --- traces ------------------------------------------------------------------------------


def _split_traces(record: NewRecord, count: int) -> list[tuple[int, NewRecord]]:
    request = ExportTraceServiceRequest.FromString(record.payload)
    from_bytes = int.from_bytes  # partition_of, inlined: this runs once per span
    parts = [
        [from_bytes(span.trace_id[:8], "big") % count for span in scope.spans]
        for resource in request.resource_spans
        for scope in resource.scope_spans
    ]
    present = {p for scope_parts in parts for p in scope_parts}
    if len(present) <= 1:
        return [(present.pop() if present else 0, record)]
    buf = record.payload
    head, resources = _cut(buf, 0, len(buf), _FIELD_1)
    pieces: dict[int, list[bytes]] = {p: [head] for p in present}
    counts = dict.fromkeys(present, 0)
    scope_index = 0
    for _, start, end in resources:
        resource_head, scopes = _cut(buf, start, end, _FIELD_2)
        by_part: dict[int, list[bytes]] = {}
        for _, scope_start, scope_end in scopes:
            if scope_index >= len(parts):
                raise _Malformed
            scope_parts = parts[scope_index]
            scope_index += 1
            for p, spans in _cut_scope(buf, scope_start, scope_end, scope_parts).items():
                counts[p] += len(spans) - 1  # less the scope's own fields
                by_part.setdefault(p, [resource_head]).append(_wrap(_TAG_2, spans))
        for p, scope_chunks in by_part.items():
            pieces[p].append(_wrap(_TAG_1, scope_chunks))
    if scope_index != len(parts):  # the scan saw fewer scopes than upb: spans would be lost
        raise _Malformed
    return [(p, _piece(record, b"".join(pieces[p]), counts[p])) for p in sorted(pieces)]


def _cut_scope(buf: bytes, start: int, end: int, parts: list[int]) -> dict[int, list[bytes]]:
    """The ScopeSpans at buf[start:end] as, per partition, its own fields then its spans."""
    scope_head, spans = _cut(buf, start, end, _FIELD_2)
    if len(spans) != len(parts):
        raise _Malformed
    out: dict[int, list[bytes]] = {}
    for (span_start, _, span_end), p in zip(spans, parts, strict=True):
        chunks = out.get(p)
        if chunks is None:
            out[p] = chunks = [scope_head]
        chunks.append(buf[span_start:span_end])
    return out


# --- metrics and logs: whole resources ---------------------------------------------------


def _metrics_units(resources: Sequence[ResourceMetrics]) -> list[tuple[Iterable[KeyValue], int]]:
    return [
        (rm.resource.attributes, sum(data_points(m) for sm in rm.scope_metrics for m in sm.metrics))
        for rm in resources
    ]


def _logs_units(resources: Sequence[ResourceLogs]) -> list[tuple[Iterable[KeyValue], int]]:
    return [
        (rl.resource.attributes, sum(len(sl.log_records) for sl in rl.scope_logs))
        for rl in resources
    ]


def _split_resources(
    record: NewRecord, count: int, units: list[tuple[Iterable[KeyValue], int]]
) -> list[tuple[int, NewRecord]]:
    """Send each Resource* message (attributes, items) whole to its resource's partition."""
    parts = [resource_partition(attributes, count) for attributes, _ in units]
    if len(set(parts)) <= 1:
        return [(parts[0] if parts else 0, record)]
    buf = record.payload
    head, resources = _cut(buf, 0, len(buf), _FIELD_1)
    if len(resources) != len(units):
        raise _Malformed
    pieces: dict[int, list[bytes]] = {}
    counts: dict[int, int] = {}
    for (start, _, end), p, (_, items) in zip(resources, parts, units, strict=True):
        pieces.setdefault(p, [head]).append(buf[start:end])
        counts[p] = counts.get(p, 0) + items
    return [(p, _piece(record, b"".join(pieces[p]), counts[p])) for p in sorted(pieces)]


# --- the protobuf wire format, just enough to cut messages -------------------------------

# Tags of length-delimited fields 1 and 2: resource_spans, scope_spans and spans are
# fields 1, 2 and 2 of their parents; resource_metrics and resource_logs are field 1.
_FIELD_1 = 0x0A
_FIELD_2 = 0x12
_TAG_1 = b"\x0a"
_TAG_2 = b"\x12"


class _Malformed(Exception):
    """The wire bytes are not a well-formed protobuf message."""


def _cut(buf: bytes, start: int, end: int, child: int) -> tuple[bytes, list[tuple[int, int, int]]]:
    """The message at buf[start:end] as (its other fields' bytes, its ``child`` fields).

    ``child`` is a one-byte tag of a length-delimited field; each occurrence is given as
    (where its tag starts, where its value starts, where it ends). The other fields are
    kept byte for byte and in order, so a parent rebuilt from them loses nothing.
    """
    head: list[bytes] = []
    children: list[tuple[int, int, int]] = []
    i = start
    while i < end:
        field_start = i
        tag = buf[i]
        if tag < 0x80:  # one-byte tags and lengths are the rule: skip _varint for them
            i += 1
        else:
            tag, i = _varint(buf, i)
        if tag == child:
            size = buf[i]
            if size < 0x80:
                i += 1
            elif buf[i + 1] < 0x80:  # 128 B .. 16 KiB: most spans
                size = (size & 0x7F) | buf[i + 1] << 7
                i += 2
            else:
                size, i = _varint(buf, i)
            value_start, i = i, i + size
            children.append((field_start, value_start, i))
        else:
            i = _skip(buf, i, tag)
            head.append(buf[field_start:i])
    if i != end:
        raise _Malformed
    return b"".join(head), children


def _skip(buf: bytes, i: int, tag: int) -> int:
    """Where the value of a field with ``tag`` ends, given where it starts."""
    wire_type = tag & 7
    if wire_type == 0:
        return _varint(buf, i)[1]
    if wire_type == 1:
        return i + 8
    if wire_type == 2:
        size, i = _varint(buf, i)
        return i + size
    if wire_type == 3:  # a group (proto2 unknown fields): up to its end-group tag
        while True:
            inner, i = _varint(buf, i)
            if inner == (tag & ~7) | 4:
                return i
            i = _skip(buf, i, inner)
    if wire_type == 5:
        return i + 4
    raise _Malformed


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    """The varint at buf[i:] and where it ends (IndexError past the end of buf)."""
    value = shift = 0
    while True:
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise _Malformed


def _wrap(tag: bytes, chunks: list[bytes]) -> bytes:
    """A length-delimited field ``tag`` whose value is the chunks joined."""
    body = b"".join(chunks)
    size = len(body)
    prefix = bytearray(tag)
    while size >= 0x80:
        prefix.append((size & 0x7F) | 0x80)
        size >>= 7
    prefix.append(size)
    return bytes(prefix) + body
