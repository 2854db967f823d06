"""Clients for the receiver tests: the OpenTelemetry SDK's own OTLP exporters and the data
they send (spans, metrics and logs made with the real SDK), plus raw gRPC/HTTP callers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import grpc
from fixtures.certs import Certs
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogs
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetrics,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogs
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetrics,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpans
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    TraceFlags,
    set_span_in_context,
)
from otlp_harness import Running

Transport = Literal["grpc", "http"]
Signal = Literal["traces", "metrics", "logs"]
LOG_TRACE_ID = 0x4BF92F3577B34DA6A3CE929D0E0E4736
LOG_SPAN_ID = 0x00F067AA0BA902B7
RESOURCE = Resource.create({"service.name": "checkout", "k8s.namespace.name": "shop"})

_GRPC = {"traces": GrpcSpans, "metrics": GrpcMetrics, "logs": GrpcLogs}
_HTTP = {"traces": HttpSpans, "metrics": HttpMetrics, "logs": HttpLogs}


def exporter(
    rx: Running,
    transport: Transport,
    signal: Signal,
    *,
    certs: Certs | None = None,
    client_cert: bool = True,
    token: str | None = None,
    gzip: bool = False,
    timeout: float = 10,
) -> Any:
    """The SDK's OTLP exporter for ``signal`` pointed at ``rx`` (TLS when ``certs`` given)."""
    headers = {"authorization": f"Bearer {token}"} if token else None
    if transport == "grpc":
        kwargs: dict[str, Any] = {"headers": headers, "timeout": timeout}
        if gzip:
            kwargs["compression"] = grpc.Compression.Gzip
        if certs is None:
            return _GRPC[signal](endpoint=rx.grpc_target, insecure=True, **kwargs)
        creds = grpc.ssl_channel_credentials(
            root_certificates=certs.read("ca"),
            private_key=certs.read("client_key") if client_cert else None,
            certificate_chain=certs.read("client_cert") if client_cert else None,
        )
        port = rx.grpc_target.rsplit(":", 1)[1]
        return _GRPC[signal](
            endpoint=f"localhost:{port}", insecure=False, credentials=creds, **kwargs
        )
    path = f"/v1/{signal}"
    kwargs = {"headers": headers, "timeout": timeout}
    if gzip:
        kwargs["compression"] = HttpCompression.Gzip
    if certs is None:
        return _HTTP[signal](endpoint=rx.http_url(path), **kwargs)
    if client_cert:
        kwargs["client_key_file"] = str(certs.client_key)
        kwargs["client_certificate_file"] = str(certs.client_cert)
    return _HTTP[signal](
        endpoint=rx.http_url(path, "https", "localhost"), certificate_file=str(certs.ca), **kwargs
    )


def make_spans() -> Sequence[ReadableSpan]:
    """A server span with a database child span, with attributes of every type."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.collectors")
    server_attrs = {"http.request.method": "GET", "http.response.status_code": 200}
    db_attrs = {
        "db.system": "postgresql",
        "db.rows": 3,
        "cache.hit_ratio": 0.25,
        "retry": False,
        "tags": ("a", "b"),
    }
    with (
        tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER, attributes=server_attrs),
        tracer.start_as_current_span("SELECT carts", kind=SpanKind.CLIENT, attributes=db_attrs),
    ):
        pass
    provider.shutdown()
    return memory.get_finished_spans()


def make_metrics() -> MetricsData:
    """A counter, a histogram and a gauge, each with attributes."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("tests.collectors")
    meter.create_counter("orders").add(3, {"region": "eu"})
    latency = meter.create_histogram("latency_ms", unit="ms")
    latency.record(12.5, {"route": "/cart"})
    latency.record(40.0, {"route": "/cart"})
    meter.create_gauge("queue_depth").set(7, {"queue": "emails"})
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data


def make_logs() -> Sequence[ReadableLogRecord]:
    """Two log records with a body, a severity and attributes; the first inside a span."""
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("tests.collectors")
    span = NonRecordingSpan(SpanContext(LOG_TRACE_ID, LOG_SPAN_ID, False, TraceFlags(1)))
    logger.emit(
        body="payment declined",
        severity_number=SeverityNumber.WARN,
        severity_text="WARN",
        attributes={"order.id": "o-17", "amount": 12.5},
        context=set_span_in_context(span),
    )
    logger.emit(
        body="payment retried",
        severity_number=SeverityNumber.INFO,
        attributes={"order.id": "o-17", "attempt": 2},
    )
    provider.shutdown()
    return memory.get_finished_logs()


def make(signal: Signal) -> Any:
    """SDK data for ``signal``."""
    return {"traces": make_spans, "metrics": make_metrics, "logs": make_logs}[signal]()


def value(any_value: AnyValue) -> Any:
    """The Python value of an OTLP AnyValue."""
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return tuple(value(v) for v in any_value.array_value.values)
    return getattr(any_value, kind) if kind else None


def attrs(key_values: Sequence[KeyValue]) -> dict[str, Any]:
    """OTLP attributes as a dict."""
    return {kv.key: value(kv.value) for kv in key_values}


async def raw_grpc(
    target: str,
    signal: Signal,
    body: bytes,
    metadata: Any = None,
    credentials: grpc.ChannelCredentials | None = None,
) -> bytes:
    """Call Export with raw request bytes (no client-side protobuf work) on the running loop."""
    services = {
        "traces": "trace.v1.TraceService",
        "metrics": "metrics.v1.MetricsService",
        "logs": "logs.v1.LogsService",
    }
    method = f"/opentelemetry.proto.collector.{services[signal]}/Export"
    if credentials is None:
        channel = grpc.aio.insecure_channel(target)
    else:
        channel = grpc.aio.secure_channel(target, credentials)
    async with channel:
        call = channel.unary_unary(method)
        result: bytes = await call(body, metadata=metadata, timeout=10)
        return result
