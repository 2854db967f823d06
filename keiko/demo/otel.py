"""OpenTelemetry SDK wiring of one demo service: providers, OTLP exporters, export tallies.

Every service gets its own TracerProvider, MeterProvider and LoggerProvider with its own
Resource, as separate processes would. The exporters are the SDK's own OTLP exporters
(gRPC or HTTP/protobuf), each wrapped so that the demo knows how many spans, points and
log records keiko acknowledged and can say so in its exit code.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.context import get_current
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

SIGNALS = ("traces", "metrics", "logs")
# Short export intervals: a demo run lasts seconds, and its data should show up live.
SPAN_DELAY_MS = 1000
METRIC_INTERVAL_MS = 500  # a point per series every 0.5 s: the detectors warm up within the demo


@dataclass(frozen=True, slots=True)
class ExportTarget:
    """Where and how the demo's exporters send: keiko's OTLP receiver."""

    endpoint: str  # http(s)://host:port, no path
    protocol: str = "grpc"  # "grpc" or "http" (HTTP/protobuf, paths /v1/<signal>)
    token: str | None = None
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    insecure: bool = False  # HTTPS without certificate verification (HTTP only)
    timeout: float = 10.0


@dataclass
class ExportTally:
    """Items handed to the exporters and items keiko acknowledged, per signal."""

    sent: Counter[str] = field(default_factory=Counter)
    acked: Counter[str] = field(default_factory=Counter)
    failed_batches: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, signal: str, items: int, ok: bool) -> None:
        """Count one export call's outcome."""
        with self._lock:
            self.sent[signal] += items
            if ok:
                self.acked[signal] += items
            else:
                self.failed_batches[signal] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        """``{signal: {"sent": n, "acked": n, "failed_batches": n}}``."""
        with self._lock:
            return {
                s: {
                    "sent": self.sent[s],
                    "acked": self.acked[s],
                    "failed_batches": self.failed_batches[s],
                }
                for s in SIGNALS
            }


class ExportErrors(logging.Handler):
    """Keeps the OTel SDK's export warnings (they name the cause) instead of printing them.

    The exporters report a refused or unreachable endpoint only through the
    ``opentelemetry`` logger; the demo shows a digest of these at the end.
    """

    def __init__(self, keep: int = 20) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []  # distinct messages, first seen first
        self._keep = keep
        self._logger = logging.getLogger("opentelemetry")
        self._propagate = self._logger.propagate

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the message unless it was seen (the SDK itself drops most repeats)."""
        message = record.getMessage()
        if message not in self.messages and len(self.messages) < self._keep:
            self.messages.append(message)

    def __enter__(self) -> ExportErrors:
        self._logger.addHandler(self)
        self._logger.propagate = False
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate


class _CountedSpans(SpanExporter):
    def __init__(self, inner: SpanExporter, tally: ExportTally) -> None:
        self._inner, self._tally = inner, tally

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._inner.export(spans)
        self._tally.record("traces", len(spans), result is SpanExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._inner.shutdown()


class _CountedLogs(LogRecordExporter):
    def __init__(self, inner: LogRecordExporter, tally: ExportTally) -> None:
        self._inner, self._tally = inner, tally

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        result = self._inner.export(batch)
        self._tally.record("logs", len(batch), result is LogRecordExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self._inner.shutdown()


class _CountedMetrics(MetricExporter):
    def __init__(self, inner: MetricExporter, tally: ExportTally) -> None:
        # The reader asks the exporter for these; pass the OTLP exporter's own through.
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner, self._tally = inner, tally

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        result = self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        points = sum(
            len(m.data.data_points)
            for rm in metrics_data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        )
        self._tally.record("metrics", points, result is MetricExportResult.SUCCESS)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)


def _grpc_exporters(target: ExportTarget) -> tuple[SpanExporter, MetricExporter, LogRecordExporter]:
    import grpc
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    secure = target.endpoint.startswith("https://")
    credentials = None
    if secure:

        def read(path: Path | None) -> bytes | None:
            return path.read_bytes() if path else None

        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(target.ca_file),
            private_key=read(target.client_key),
            certificate_chain=read(target.client_cert),
        )
    common: dict[str, Any] = {
        "endpoint": target.endpoint,
        "insecure": not secure,
        "credentials": credentials,
        "headers": {"authorization": f"Bearer {target.token}"} if target.token else None,
        "timeout": target.timeout,
    }
    return OTLPSpanExporter(**common), OTLPMetricExporter(**common), OTLPLogExporter(**common)


def _http_exporters(target: ExportTarget) -> tuple[SpanExporter, MetricExporter, LogRecordExporter]:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = target.endpoint.rstrip("/")
    common: dict[str, Any] = {
        "certificate_file": str(target.ca_file) if target.ca_file else None,
        "client_certificate_file": str(target.client_cert) if target.client_cert else None,
        "client_key_file": str(target.client_key) if target.client_key else None,
        "headers": {"Authorization": f"Bearer {target.token}"} if target.token else None,
        "timeout": target.timeout,
    }
    if target.insecure:
        common["session"] = _unverified_session()
    return (
        OTLPSpanExporter(endpoint=f"{base}/v1/traces", **common),
        OTLPMetricExporter(endpoint=f"{base}/v1/metrics", **common),
        OTLPLogExporter(endpoint=f"{base}/v1/logs", **common),
    )


def _unverified_session() -> Any:
    """A requests Session that skips certificate checks (``--insecure``, HTTPS only)."""
    import requests
    import urllib3

    # The user asked for this explicitly; one warning per request would drown the output.
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    class Unverified(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> Any:
            kwargs["verify"] = False
            return super().request(*args, **kwargs)

    return Unverified()


def service_resource(name: str, version: str, namespace: str = "shop") -> Resource:
    """The Resource of one demo service, with the attributes a Kubernetes pod would have."""
    pod_suffix = uuid.uuid4().hex[:5]
    return Resource.create(
        {
            "service.name": name,
            "service.namespace": namespace,
            "service.version": version,
            "service.instance.id": str(uuid.uuid4()),
            "deployment.environment.name": "demo",
            "k8s.namespace.name": namespace,
            "k8s.deployment.name": name,
            "k8s.pod.name": f"{name}-6f9c7d{pod_suffix[:3]}-{pod_suffix}",
            "k8s.node.name": "demo-node-1",
            "host.name": os.uname().nodename,
        }
    )


@dataclass
class ServiceTelemetry:
    """The three SDK providers of one service, sharing one Resource and one tally."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    logger_provider: LoggerProvider

    def force_flush(self, timeout_s: float) -> bool:
        """Export everything buffered now; False if some provider did not finish in time."""
        ms = int(timeout_s * 1000)
        ok = self.tracer_provider.force_flush(ms)
        ok = self.meter_provider.force_flush(ms) and ok
        return self.logger_provider.force_flush(ms) and ok

    def shutdown(self) -> None:
        """Flush and stop the exporters (idempotent in the SDK)."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()


def build_telemetry(
    resource: Resource, target: ExportTarget, tally: ExportTally
) -> ServiceTelemetry:
    """Providers for one service, exporting to ``target`` over its protocol."""
    make = _grpc_exporters if target.protocol == "grpc" else _http_exporters
    spans, metrics, logs = make(target)
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(
        BatchSpanProcessor(_CountedSpans(spans, tally), schedule_delay_millis=SPAN_DELAY_MS)
    )
    reader = PeriodicExportingMetricReader(
        _CountedMetrics(metrics, tally), export_interval_millis=METRIC_INTERVAL_MS
    )
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(_CountedLogs(logs, tally), schedule_delay_millis=SPAN_DELAY_MS)
    )
    return ServiceTelemetry(tracer_provider, meter_provider, logger_provider)


_SEVERITY = {
    logging.DEBUG: SeverityNumber.DEBUG,
    logging.INFO: SeverityNumber.INFO,
    logging.WARNING: SeverityNumber.WARN,
    logging.ERROR: SeverityNumber.ERROR,
    logging.CRITICAL: SeverityNumber.FATAL,
}


class OtelLogHandler(logging.Handler):
    """Sends Python log records to an OTel LoggerProvider, inside the current trace context.

    The SDK's own ``LoggingHandler`` is deprecated in favour of a beta package; this is
    the few lines of it the demo needs (body, severity, attributes, exception, context).
    """

    def __init__(self, provider: LoggerProvider, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._provider = provider

    def emit(self, record: logging.LogRecord) -> None:
        """Translate and emit; the current context carries the trace and span ids."""
        attributes: dict[str, Any] = {
            "code.function.name": record.funcName,
            "code.line.number": record.lineno,
        }
        attributes.update(getattr(record, "otel", {}))
        exception = record.exc_info[1] if record.exc_info else None
        self._provider.get_logger(record.name).emit(
            timestamp=int(record.created * 1e9),
            context=get_current(),
            severity_number=_SEVERITY.get(record.levelno, SeverityNumber.INFO),
            severity_text=record.levelname.replace("WARNING", "WARN"),
            body=record.getMessage(),
            attributes=attributes,
            exception=exception,
        )
