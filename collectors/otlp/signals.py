"""The three OTLP signals: their messages, stream, record kind and how to count their items.

Counting walks the request down to the scope level only (``len()`` of each scope's item
list), never item by item, so it stays cheap on the path that acknowledges a request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from keiko.partitioning import data_points
from keiko.records import Kind, Stream


@dataclass(frozen=True, slots=True)
class Count:
    """Items in a request; ``rejected`` of them are invalid (an OTLP partial success)."""

    items: int
    rejected: int = 0
    error_message: str = ""


@dataclass(frozen=True, slots=True)
class Signal:
    """Everything the transports need to know about one signal."""

    name: str  # "traces", "metrics", "logs": the telemetry `signal` label
    stream: Stream
    kind: Kind
    request: type[Message]
    response: type[Message]
    count: Callable[[Message], Count]
    partial: Callable[[Count], Message]  # the response that reports rejected items
    grpc_service: str  # fully qualified gRPC service name
    http_path: str


def count_spans(request: ExportTraceServiceRequest) -> Count:
    """Spans in a trace export request."""
    return Count(sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans))


def count_log_records(request: ExportLogsServiceRequest) -> Count:
    """Log records in a logs export request."""
    return Count(sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs))


def count_data_points(request: ExportMetricsServiceRequest) -> Count:
    """Data points in a metrics export request; a metric without data counts as one rejected.

    A metric whose ``data`` oneof is unset carries nothing a consumer can use: OTLP wants it
    reported back as a partial success rather than failing the whole request.
    """
    points = 0
    empty: list[str] = []
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.WhichOneof("data") is None:
                    empty.append(metric.name)
                else:
                    points += data_points(metric)  # the rule the store's partitions use
    if not empty:
        return Count(points)
    names = ", ".join(repr(n) for n in empty[:5]) + (" ..." if len(empty) > 5 else "")
    message = (
        f"{len(empty)} metric(s) without data (no gauge, sum, histogram, "
        f"exponential_histogram or summary): {names}"
    )
    return Count(points + len(empty), rejected=len(empty), error_message=message)


def _partial_metrics(count: Count) -> Message:
    return ExportMetricsServiceResponse(
        partial_success=ExportMetricsPartialSuccess(
            rejected_data_points=count.rejected, error_message=count.error_message
        )
    )


def _partial_logs(count: Count) -> Message:
    return ExportLogsServiceResponse(
        partial_success=ExportLogsPartialSuccess(
            rejected_log_records=count.rejected, error_message=count.error_message
        )
    )


def _partial_traces(count: Count) -> Message:
    return ExportTraceServiceResponse(
        partial_success=ExportTracePartialSuccess(
            rejected_spans=count.rejected, error_message=count.error_message
        )
    )


TRACES = Signal(
    "traces",
    Stream.TRACES,
    Kind.OTLP_TRACES,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
    count_spans,
    _partial_traces,
    "opentelemetry.proto.collector.trace.v1.TraceService",
    "/v1/traces",
)
METRICS = Signal(
    "metrics",
    Stream.METRICS,
    Kind.OTLP_METRICS,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
    count_data_points,
    _partial_metrics,
    "opentelemetry.proto.collector.metrics.v1.MetricsService",
    "/v1/metrics",
)
LOGS = Signal(
    "logs",
    Stream.LOGS,
    Kind.OTLP_LOGS,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
    count_log_records,
    _partial_logs,
    "opentelemetry.proto.collector.logs.v1.LogsService",
    "/v1/logs",
)
SIGNALS = (TRACES, METRICS, LOGS)
