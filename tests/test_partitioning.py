"""keiko.partitioning: records cut into per-partition pieces, on requests made by the OTel
SDK and encoded by its OTLP exporter's own encoders."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ProtoResource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData, ResourceMetrics
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from collectors.otlp.signals import count_data_points, count_log_records, count_spans
from keiko.partitioning import (
    PARTITIONED_STREAMS,
    partition_of,
    partition_of_text,
    resource_key,
    resource_partition,
    split,
    value_text,
)
from keiko.records import Kind, NewRecord, Stream

SCHEMA = "https://opentelemetry.io/schemas/1.21.0"

# --- requests made with the SDK -----------------------------------------------------------


def sdk_traces(services: int = 3, traces: int = 40) -> ExportTraceServiceRequest:
    """``traces`` two-span traces per service, from two instrumentation scopes each."""
    spans: list[ReadableSpan] = []
    for s in range(services):
        memory = InMemorySpanExporter()
        resource = Resource.create({"service.name": f"svc{s}", "host.name": f"node-{s}"})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(memory))
        http = provider.get_tracer("http", "1.2", schema_url=SCHEMA)
        db = provider.get_tracer("db", "0.9")
        for t in range(traces):
            server = http.start_as_current_span("GET /", kind=SpanKind.SERVER, attributes={"n": t})
            with server, db.start_as_current_span("SELECT", kind=SpanKind.CLIENT):
                pass
        spans.extend(memory.get_finished_spans())
        provider.shutdown()
    return encode_spans(spans)


def sdk_metrics(services: int) -> ExportMetricsServiceRequest:
    """A counter (2 series), a histogram and a gauge per service; services 0 and 1 are one
    service (same name and namespace) on two hosts."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("tests.partitioning")
    orders = meter.create_counter("orders")
    orders.add(3, {"region": "eu"})
    orders.add(1, {"region": "us"})
    meter.create_histogram("latency_ms").record(12.5, {"route": "/cart"})
    meter.create_gauge("queue_depth").set(7)
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    (template,) = data.resource_metrics
    resources = [
        Resource.create(
            {
                "service.name": f"svc{max(s, 1)}",
                "service.namespace": "shop",
                "host.name": f"node-{s}",
            },
            schema_url=SCHEMA,
        )
        for s in range(services)
    ]
    return encode_metrics(
        MetricsData([ResourceMetrics(r, template.scope_metrics, SCHEMA) for r in resources])
    )


def sdk_logs(services: int) -> ExportLogsServiceRequest:
    """services x (2 log records) and one pod-only resource without service.name."""
    records: list[ReadableLogRecord] = []
    for s in range(services):
        memory = InMemoryLogRecordExporter()
        provider = LoggerProvider(resource=Resource.create({"service.name": f"svc{s}"}))
        provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
        logger = provider.get_logger("tests.partitioning")
        for n in range(2):
            logger.emit(body=f"line {n}", severity_number=SeverityNumber.INFO)
        records.extend(memory.get_finished_logs())
        provider.shutdown()
    return encode_logs(records)


Request = ExportTraceServiceRequest | ExportMetricsServiceRequest | ExportLogsServiceRequest
COUNTS = {
    Kind.OTLP_TRACES: count_spans,
    Kind.OTLP_METRICS: count_data_points,
    Kind.OTLP_LOGS: count_log_records,
}


def record(kind: Kind, request: Request, key: str = "") -> NewRecord:
    """The record a receiver stores for ``request``."""
    counted = COUNTS[kind](request)
    items = counted.items - counted.rejected
    return NewRecord(kind=kind, payload=request.SerializeToString(), count=items, key=key)


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes([*out, n])


# --- traces --------------------------------------------------------------------------------


def flat_spans(request: ExportTraceServiceRequest) -> list[tuple[bytes, bytes, bytes]]:
    """Each span as (its bytes, its resource's context, its scope's context), in order."""
    out = []
    for rs in request.resource_spans:
        resource = rs.resource.SerializeToString(deterministic=True) + rs.schema_url.encode()
        for ss in rs.scope_spans:
            scope = ss.scope.SerializeToString(deterministic=True) + ss.schema_url.encode()
            for span in ss.spans:
                out.append((span.SerializeToString(deterministic=True), resource, scope))
    return out


@pytest.mark.parametrize("count", [2, 4, 8])
def test_traces_every_span_once_in_its_partition_with_its_resource_and_scope(count: int) -> None:
    request = sdk_traces()
    original = record(Kind.OTLP_TRACES, request)
    pieces = split(original, count)
    assert [p for p, _ in pieces] == sorted({p for p, _ in pieces})
    assert len(pieces) == count  # 120 random traces reach every partition
    union: Counter[tuple[bytes, bytes, bytes]] = Counter()
    for p, piece in pieces:
        assert piece.kind == Kind.OTLP_TRACES and piece.key == ""
        decoded = ExportTraceServiceRequest.FromString(piece.payload)
        spans = flat_spans(decoded)
        assert piece.count == len(spans) > 0
        for rs in decoded.resource_spans:
            for ss in rs.scope_spans:
                assert all(partition_of(s.trace_id, count) == p for s in ss.spans)
        union.update(spans)
        # order kept: a piece's spans are a subsequence of the original's
        it = iter(flat_spans(request))
        assert all(span in it for span in spans)
    assert union == Counter(flat_spans(request))


def test_traces_pieces_keep_schema_urls_and_copy_spans_byte_for_byte() -> None:
    request = sdk_traces(services=2, traces=20)
    original = record(Kind.OTLP_TRACES, request)
    scope_urls = {
        ss.scope.name: ss.schema_url for rs in request.resource_spans for ss in rs.scope_spans
    }
    assert scope_urls == {"http": SCHEMA, "db": ""}
    for _, piece in split(original, 3):
        decoded = ExportTraceServiceRequest.FromString(piece.payload)
        for rs in decoded.resource_spans:
            assert rs.resource.attributes and rs.schema_url == request.resource_spans[0].schema_url
            for ss in rs.scope_spans:
                assert ss.schema_url == scope_urls[ss.scope.name]
                assert ss.scope.version in ("1.2", "0.9")
                for span in ss.spans:
                    assert span.SerializeToString() in original.payload


def test_one_partition_returns_the_record_itself() -> None:
    request = sdk_traces(services=2, traces=3)
    trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                span.trace_id = trace_id
    original = record(Kind.OTLP_TRACES, request)
    assert split(original, 4) == [(partition_of(trace_id, 4), original)]
    assert split(original, 4)[0][1] is original
    assert split(original, 1)[0][1] is original
    several = record(Kind.OTLP_TRACES, sdk_traces(services=2, traces=3))
    assert split(several, 1)[0][1] is several
    empty = record(Kind.OTLP_TRACES, ExportTraceServiceRequest())
    assert split(empty, 4)[0][1] is empty
    metrics = sdk_metrics(services=3)
    for rm in metrics.resource_metrics:  # one service, three hosts
        for kv in rm.resource.attributes:
            if kv.key == "service.name":
                kv.value.string_value = "cart"
    one_service = record(Kind.OTLP_METRICS, metrics)
    assert resource_key(metrics.resource_metrics[2].resource.attributes) == "shop/cart"
    assert split(one_service, 4)[0][1] is one_service


def test_trace_id_found_wherever_the_encoder_put_it_and_unknown_fields_kept() -> None:
    """A span whose trace_id is not its first field, unknown fields at every level."""
    # nobody's field 127 as a varint, then as a group (proto2's wire type 3)
    unknown = b"\xf8\x07\x01" + b"\xfb\x07\x08\x01\xfc\x07"
    spans: list[bytes] = []
    for n in range(16):
        trace_id = bytes(7) + bytes([n]) + bytes(8)  # partition n % 4
        body = Span(name=f"s{n}", span_id=bytes(8)).SerializeToString() + unknown
        spans.append(body + b"\x0a\x10" + trace_id)
    scope = ScopeSpans(scope=InstrumentationScope(name="x")).SerializeToString()
    scope += b"".join(b"\x12" + varint(len(s)) + s for s in spans) + unknown
    resource = ResourceSpans(resource=ProtoResource()).SerializeToString() + unknown
    resource += b"\x12" + varint(len(scope)) + scope
    assert len(resource) > 127  # a two-byte length prefix
    payload = unknown + b"\x0a" + varint(len(resource)) + resource
    request = ExportTraceServiceRequest.FromString(payload)
    assert len(request.resource_spans[0].scope_spans[0].spans) == 16
    pieces = split(NewRecord(Kind.OTLP_TRACES, payload, 16), 4)
    assert [(p, r.count) for p, r in pieces] == [(0, 4), (1, 4), (2, 4), (3, 4)]
    for p, piece in pieces:
        assert piece.payload.count(unknown) == 1 + 1 + 1 + 4  # request, resource, scope, spans
        got = ExportTraceServiceRequest.FromString(piece.payload)
        names = [s.name for s in got.resource_spans[0].scope_spans[0].spans]
        assert names == [f"s{n}" for n in range(16) if n % 4 == p]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.lists(st.binary(max_size=16), max_size=6), max_size=3), max_size=3),
    st.integers(1, 7),
)
def test_traces_union_property(layout: list[list[list[bytes]]], count: int) -> None:
    """Any nesting of resources, scopes and trace ids: pieces add up to the request."""
    request = ExportTraceServiceRequest()
    n = 0
    for r, scopes in enumerate(layout):
        rs = request.resource_spans.add(schema_url=f"r{r}")
        rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=f"s{r}"))
        for s, trace_ids in enumerate(scopes):
            ss = rs.scope_spans.add(schema_url=f"s{s}", scope=InstrumentationScope(name=f"{s}"))
            for trace_id in trace_ids:
                ss.spans.add(trace_id=trace_id, name=f"{n}")
                n += 1
    pieces = split(record(Kind.OTLP_TRACES, request), count)
    union = Counter[tuple[bytes, bytes, bytes]]()
    for p, piece in pieces:
        got = ExportTraceServiceRequest.FromString(piece.payload)
        union.update(flat_spans(got))
        assert piece.count == len(flat_spans(got))
        assert all(partition_of(s.trace_id, count) == p for _, _, s in _spans(got))
    assert union == Counter(flat_spans(request))


def _spans(request: ExportTraceServiceRequest) -> list[tuple[int, int, Span]]:
    return [
        (r, s, span)
        for r, rs in enumerate(request.resource_spans)
        for s, ss in enumerate(rs.scope_spans)
        for span in ss.spans
    ]


# --- metrics and logs ----------------------------------------------------------------------


def service_of(attributes: Iterable[KeyValue]) -> str:
    return {kv.key: kv.value.string_value for kv in attributes}["service.name"]


def test_metrics_of_one_service_in_one_partition_services_spread_counts_as_receivers() -> None:
    request = sdk_metrics(services=50)
    original = record(Kind.OTLP_METRICS, request)
    pieces = split(original, 4)
    assert [p for p, _ in pieces] == [0, 1, 2, 3]  # 49 services reach every partition
    where: dict[str, set[int]] = {}
    resources = 0
    for p, piece in pieces:
        decoded = ExportMetricsServiceRequest.FromString(piece.payload)
        assert piece.count == count_data_points(decoded).items > 0  # the receivers' rule
        for rm in decoded.resource_metrics:
            assert rm.schema_url == SCHEMA and len(rm.scope_metrics[0].metrics) == 3
            where.setdefault(service_of(rm.resource.attributes), set()).add(p)
            resources += 1
    assert resources == 50 and len(where) == 49
    assert all(len(parts) == 1 for parts in where.values())  # svc1 on node-0 and node-1
    assert sum(piece.count for _, piece in pieces) == count_data_points(request).items == 200


def test_metric_without_data_counts_no_points_like_the_receiver() -> None:
    request = sdk_metrics(services=8)
    request.resource_metrics[0].scope_metrics[0].metrics.add(name="empty")
    counted = count_data_points(request)
    pieces = split(record(Kind.OTLP_METRICS, request), 4)
    assert len(pieces) > 1
    assert sum(piece.count for _, piece in pieces) == counted.items - counted.rejected == 32


def test_logs_go_by_resource_and_count_log_records() -> None:
    request = sdk_logs(services=12)
    pod_only = request.resource_logs.add()
    pod_only.resource.attributes.add(key="k8s.pod.name", value=AnyValue(string_value="web-1"))
    pod_only.scope_logs.add().log_records.add(body=AnyValue(string_value="x"))
    original = record(Kind.OTLP_LOGS, request, key="tenant-a")
    pieces = split(original, 3)
    assert len(pieces) == 3
    total = 0
    for p, piece in pieces:
        assert piece.key == "tenant-a" and piece.kind == Kind.OTLP_LOGS
        decoded = ExportLogsServiceRequest.FromString(piece.payload)
        assert piece.count == count_log_records(decoded).items
        for rl in decoded.resource_logs:
            assert resource_partition(rl.resource.attributes, 3) == p
        total += piece.count
    assert total == 25


# --- resource keys and text keys -----------------------------------------------------------


def attributes(**values: AnyValue | str) -> list[KeyValue]:
    return [
        KeyValue(
            key=k.replace("_", "."),
            value=v if isinstance(v, AnyValue) else AnyValue(string_value=v),
        )
        for k, v in values.items()
    ]


def test_resource_key_service_else_identifying_attributes() -> None:
    assert resource_key(attributes(service_name="cart", host_name="n1")) == "/cart"
    assert (
        resource_key(attributes(service_namespace="shop", service_name="cart", k8s_pod_name="a"))
        == "shop/cart"
    )
    pod = attributes(
        telemetry_sdk_name="otel",
        k8s_pod_name="web-1",
        container_id="c0ffee",
        host_name="node-1",
        k8s_namespace_name="shop",
        service_name="",  # set but empty: not a service
    )
    key = "container.id=c0ffee\nhost.name=node-1\nk8s.namespace.name=shop\nk8s.pod.name=web-1"
    assert resource_key(pod) == key
    assert resource_partition(pod, 5) == partition_of_text(key, 5)
    assert resource_key(attributes(telemetry_sdk_name="otel")) == ""
    assert resource_partition(attributes(telemetry_sdk_name="otel"), 5) == 0
    assert resource_partition([], 5) == 0


def test_value_text_is_stable_for_every_kind() -> None:
    assert value_text(AnyValue(string_value="a b")) == "a b"
    assert value_text(AnyValue(int_value=-42)) == "-42"
    assert value_text(AnyValue(bool_value=True)) == "true"
    assert value_text(AnyValue(double_value=0.1)) == "0.1"
    assert value_text(AnyValue(bytes_value=b"\x01\xff")) == "01ff"
    array = AnyValue(
        array_value=ArrayValue(values=[AnyValue(string_value="a,b"), AnyValue(int_value=1)])
    )
    assert value_text(array) == '["a,b", "1"]'
    assert value_text(AnyValue()) == ""
    numeric = attributes(service_name=AnyValue(int_value=7))
    assert resource_key(numeric) == "/7"


def test_partition_of_text_is_blake2b_and_pinned() -> None:
    digest = hashlib.blake2b(b"shop/cart", digest_size=8).digest()
    assert partition_of_text("shop/cart", 1000) == int.from_bytes(digest, "big") % 1000
    # pinned: these must never change between releases (pieces in flight across upgrades)
    keys = ("", "shop/cart", "é")
    assert [partition_of_text(k, 1_000_003) for k in keys] == [800952, 414256, 969813]


def test_other_records_go_by_key_unchanged() -> None:
    event = NewRecord(kind=Kind.EVENT_JSON, payload=b'{"a": 1}', key="checkout")
    assert split(event, 4) == [(partition_of_text("checkout", 4), event)]
    assert split(event, 4)[0][1] is event
    edges = NewRecord(kind=Kind.EDGES_JSON, payload=b"[]")
    assert split(edges, 4)[0] == (0, edges)


@pytest.mark.parametrize("kind", [Kind.OTLP_TRACES, Kind.OTLP_METRICS, Kind.OTLP_LOGS])
def test_undecodable_payload_goes_whole_to_partition_zero(kind: Kind) -> None:
    requests: dict[Kind, Request] = {
        Kind.OTLP_TRACES: sdk_traces(2, 5),
        Kind.OTLP_METRICS: sdk_metrics(6),
        Kind.OTLP_LOGS: sdk_logs(6),
    }
    request = requests[kind]
    good = request.SerializeToString()
    assert len(split(NewRecord(kind=kind, payload=good), 4)) > 1  # ... before it is broken
    for payload in (b"not a protobuf", b"\xff" * 9, good[:-3], good + b"\x0a\x05ab"):
        garbage = NewRecord(kind=kind, payload=payload, count=3)
        assert split(garbage, 4) == [(0, garbage)]
        assert split(garbage, 4)[0][1] is garbage


def test_count_must_be_positive() -> None:
    request = record(Kind.OTLP_TRACES, sdk_traces(1, 2))
    for count in (0, -1):
        with pytest.raises(ValueError, match="partition count must be positive"):
            split(request, count)
        with pytest.raises(ValueError, match="positive"):
            partition_of(b"\x01" * 16, count)
        with pytest.raises(ValueError, match="positive"):
            partition_of_text("a", count)
        with pytest.raises(ValueError, match="positive"):
            resource_partition([], count)


def test_partitioned_streams_are_traces_and_metrics() -> None:
    assert {Stream.TRACES, Stream.METRICS} == PARTITIONED_STREAMS


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(COUNTS)), st.binary(max_size=64), st.integers(0, 400), st.integers())
def test_split_never_raises_on_damaged_payloads(
    kind: Kind, noise: bytes, at: int, flip: int
) -> None:
    """Random bytes, and real payloads with bytes overwritten: a list of pieces, no error;
    a damaged request upb still parses is cut without losing or changing a span."""
    damaged = bytearray(DAMAGE_BASE[kind])
    damaged[at : at + len(noise)] = noise
    damaged[at % len(damaged)] ^= flip & 0xFF
    for payload in (noise, bytes(damaged)):
        pieces = split(NewRecord(kind=kind, payload=payload), 3)
        assert pieces and all(0 <= p < 3 for p, _ in pieces)
        if kind == Kind.OTLP_TRACES and len(pieces) > 1:  # upb took it: nothing lost
            union = Counter[tuple[bytes, bytes, bytes]]()
            for _, piece in pieces:
                union.update(flat_spans(ExportTraceServiceRequest.FromString(piece.payload)))
            assert union == Counter(flat_spans(ExportTraceServiceRequest.FromString(payload)))


DAMAGE_BASE = {
    Kind.OTLP_TRACES: sdk_traces(2, 3).SerializeToString(),
    Kind.OTLP_METRICS: sdk_metrics(3).SerializeToString(),
    Kind.OTLP_LOGS: sdk_logs(3).SerializeToString(),
}
