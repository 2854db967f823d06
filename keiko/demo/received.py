"""What keiko holds of one demo run: its records read back through the API and decoded.

The API shows stored OTLP batches as OTLP/JSON (lowerCamelCase keys, hex ids, integer
enums, 64-bit integers as strings). Only the resources of this run's service instances
are kept, so other applications sending to the same keiko do not blur the picture.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from typing import Any

from keiko.demo.api import ApiClient
from keiko.demo.load import percentile

SERVER, CLIENT = 2, 3
KIND_NAMES = {
    0: "UNSPECIFIED",
    1: "INTERNAL",
    2: "SERVER",
    3: "CLIENT",
    4: "PRODUCER",
    5: "CONSUMER",
}
STATUS_ERROR = 2
METRIC_DATA = ("gauge", "sum", "histogram", "exponentialHistogram", "summary")


def _clip(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def attr_value(value: dict[str, Any]) -> Any:
    """The Python value of an OTLP/JSON ``AnyValue``."""
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return int(value["intValue"])
    if "arrayValue" in value:
        return [attr_value(v) for v in value["arrayValue"].get("values", [])]
    return None


def attributes(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``[{"key": k, "value": {...}}]`` -> ``{k: value}``."""
    return {a["key"]: attr_value(a.get("value", {})) for a in items}


def _enum(value: Any, names: dict[int, str]) -> int:
    # Integers per OTLP/JSON; tolerate the proto enum names ("SPAN_KIND_SERVER") too.
    if isinstance(value, str):
        for number, name in names.items():
            if value.endswith(name):
                return number
        return 0
    return int(value or 0)


@dataclass(frozen=True, slots=True)
class SpanView:
    """The fields of a stored span the demo shows."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    service: str
    start_ns: int
    end_ns: int
    error: bool
    peer: str = ""  # peer.service of a CLIENT span (a dependency that sends no spans)
    note: str = ""  # what the tree shows after the duration: tokens used, the error

    @classmethod
    def from_otlp(cls, service: str, span: dict[str, Any]) -> SpanView:
        """A span of ``service`` from its OTLP/JSON form."""
        attrs = attributes(span.get("attributes", []))
        status = span.get("status", {})
        error = _enum(status.get("code"), {STATUS_ERROR: "ERROR"}) == STATUS_ERROR
        note = (
            _clip(f"{attrs.get('error.type', 'error')}: {status.get('message', '')}")
            if error
            else ""
        )
        if "gen_ai.usage.input_tokens" in attrs:
            note = (
                f"{attrs['gen_ai.usage.input_tokens']} in / "
                f"{attrs.get('gen_ai.usage.output_tokens', 0)} out tokens"
            )
        return cls(
            span.get("traceId", ""),
            span.get("spanId", ""),
            span.get("parentSpanId", ""),
            span.get("name", ""),
            _enum(span.get("kind"), KIND_NAMES),
            service,
            int(span.get("startTimeUnixNano", 0)),
            int(span.get("endTimeUnixNano", 0)),
            error,
            str(attrs.get("peer.service", "")),
            note,
        )

    @property
    def ms(self) -> float:
        """Duration in milliseconds."""
        return (self.end_ns - self.start_ns) / 1e6


@dataclass
class Received:
    """This run's data as keiko stored it."""

    spans: list[SpanView] = field(default_factory=list)
    metric_points: int = 0
    metric_names: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    logs: int = 0
    logs_by_severity: Counter[str] = field(default_factory=Counter)
    logs_with_trace: int = 0
    records: Counter[str] = field(default_factory=Counter)  # records read, by stream
    truncated: bool = False  # stopped at the read limit: counts are a lower bound
    anomalies: list[dict[str, Any]] = field(default_factory=list)  # events of this run's services
    incidents: list[dict[str, Any]] = field(default_factory=list)  # latest version of each

    def items(self) -> dict[str, int]:
        """Items found per stream (spans, data points, log records)."""
        return {"traces": len(self.spans), "metrics": self.metric_points, "logs": self.logs}

    # -- decoding ------------------------------------------------------------------------

    def add(self, stream: str, payload: dict[str, Any], instances: set[str]) -> None:
        """Decode one record's OTLP/JSON payload, keeping only ``instances``' resources."""
        self.records[stream] += 1
        key = {"traces": "resourceSpans", "metrics": "resourceMetrics", "logs": "resourceLogs"}
        for block in payload.get(key[stream], []):
            resource = attributes(block.get("resource", {}).get("attributes", []))
            if resource.get("service.instance.id") not in instances:
                continue
            service = str(resource.get("service.name", "?"))
            getattr(self, f"_add_{stream}")(service, block)

    def _add_traces(self, service: str, block: dict[str, Any]) -> None:
        for scope in block.get("scopeSpans", []):
            self.spans += [SpanView.from_otlp(service, span) for span in scope.get("spans", [])]

    def _add_metrics(self, service: str, block: dict[str, Any]) -> None:
        for scope in block.get("scopeMetrics", []):
            for metric in scope.get("metrics", []):
                self.metric_names[service].add(metric.get("name", "?"))
                for data in METRIC_DATA:
                    if data in metric:
                        self.metric_points += len(metric[data].get("dataPoints", []))

    def _add_logs(self, service: str, block: dict[str, Any]) -> None:
        for scope in block.get("scopeLogs", []):
            for log in scope.get("logRecords", []):
                self.logs += 1
                self.logs_by_severity[log.get("severityText") or "UNSET"] += 1
                self.logs_with_trace += bool(log.get("traceId"))

    # -- analysis ------------------------------------------------------------------------

    def services(self) -> dict[str, dict[str, Any]]:
        """Per service: spans, server spans, errors and server-span latency quantiles."""
        by_service: dict[str, list[SpanView]] = defaultdict(list)
        for span in self.spans:
            by_service[span.service].append(span)
        table = {}
        for name, spans in sorted(by_service.items()):
            server = [s.ms for s in spans if s.kind == SERVER]
            table[name] = {
                "spans": len(spans),
                "server_spans": len(server),
                "errors": sum(s.error for s in spans if s.kind == SERVER),
                "p50_ms": round(percentile(server, 0.5), 1),
                "p95_ms": round(percentile(server, 0.95), 1),
            }
        return table

    def calls(self) -> Counter[tuple[str, str]]:
        """(caller, callee) pairs, the service graph: a span whose parent is in another
        service, or a CLIENT span to an uninstrumented ``peer.service`` (redis, model-api)."""
        by_id = {(s.trace_id, s.span_id): s for s in self.spans}
        has_child = {(s.trace_id, s.parent_id) for s in self.spans}
        edges: Counter[tuple[str, str]] = Counter()
        for span in self.spans:
            parent = by_id.get((span.trace_id, span.parent_id))
            if parent is not None and parent.service != span.service:
                edges[(parent.service, span.service)] += 1
            elif (
                span.kind == CLIENT and span.peer and (span.trace_id, span.span_id) not in has_child
            ):
                edges[(span.service, span.peer)] += 1
        return edges

    def traces(self) -> dict[str, list[SpanView]]:
        """Spans grouped by trace id."""
        grouped: dict[str, list[SpanView]] = defaultdict(list)
        for span in self.spans:
            grouped[span.trace_id].append(span)
        return grouped

    def sample_trace(self, faulty: Iterable[str] = (), through: str = "") -> list[SpanView]:
        """A complete trace that shows the most: one through a ``faulty`` service (or
        peer) with an error if there is one, then the most services, then the most spans.
        With ``through``, only traces that reach that service count."""
        faulty = set(faulty)
        candidates = [
            spans
            for spans in self.traces().values()
            if not through or any(s.service == through for s in spans)
        ]

        def score(spans: list[SpanView]) -> tuple[int, int, int, int, int]:
            complete = int(any(not s.parent_id for s in spans))
            touched = {s.service for s in spans} | {s.peer for s in spans if s.peer}
            through_fault = int(bool(faulty & touched))
            error = int(through_fault and any(s.error for s in spans))
            return complete, through_fault, error, len(touched), len(spans)

        return max(candidates, key=score, default=[])


def read_received(
    api: ApiClient,
    start: dict[str, int],
    instances: set[str],
    max_records: int,
    services: Set[str] = frozenset(),
) -> Received:
    """Read every record appended since ``start`` (offsets per stream), up to a limit."""
    received = Received()
    for stream in ("traces", "metrics", "logs"):
        for record in api.records(stream, start.get(stream, 1), max_records):
            if record.get("encoding", "otlp_json") == "otlp_json":
                received.add(stream, record.get("payload") or {}, instances)
        received.truncated |= received.records[stream] >= max_records
    received.anomalies = read_anomalies(api, start.get("events", 1), services, max_records)
    received.incidents = read_incidents(api, start.get("events", 1), services, max_records)
    return received


def read_anomalies(
    api: ApiClient, start: int, services: Set[str], max_records: int
) -> list[dict[str, Any]]:
    """Anomaly events keiko's detectors wrote since offset ``start`` about ``services``."""
    from keiko.demo.api import ApiError

    found: dict[str, dict[str, Any]] = {}  # by event id: a replayed event is the same one
    try:
        records = list(api.records("events", start, max_records))
    except ApiError:  # no events stream yet: nothing was detected
        return []
    for record in records:
        event = record.get("payload")
        if (
            isinstance(event, dict)
            and event.get("type") == "anomaly"
            and event.get("service") in services
        ):
            found[str(event.get("id"))] = event
    return sorted(found.values(), key=lambda e: (e.get("onset_unix_nano") or 0, e["id"]))


def read_incidents(
    api: ApiClient, start: int, services: Set[str], max_records: int
) -> list[dict[str, Any]]:
    """The latest analysed version of each incident since offset ``start`` that involves
    ``services`` (keiko's incident stage writes a new version as anomalies join)."""
    from keiko.demo.api import ApiError

    latest: dict[str, dict[str, Any]] = {}
    try:
        records = list(api.records("events", start, max_records))
    except ApiError:
        return []
    for record in records:
        event = record.get("payload")
        if not isinstance(event, dict) or event.get("type") != "incident":
            continue
        if not set(event.get("services") or ()) & set(services) or not event.get("root_causes"):
            continue
        known = latest.get(str(event.get("id")))
        if known is None or event.get("version", 0) >= known.get("version", 0):
            latest[str(event.get("id"))] = event
    return sorted(latest.values(), key=lambda e: str(e.get("opened")))


def tree_lines(spans: list[SpanView]) -> list[str]:
    """The trace as an indented tree: name, service, kind, duration, ERROR marks."""
    children: dict[str, list[SpanView]] = defaultdict(list)
    ids = {s.span_id for s in spans}
    roots = []
    for span in sorted(spans, key=lambda s: s.start_ns):
        if span.parent_id and span.parent_id in ids:
            children[span.parent_id].append(span)
        else:
            roots.append(span)
    lines: list[str] = []

    def walk(span: SpanView, prefix: str, last: bool, depth: int) -> None:
        branch = "" if depth == 0 else ("└─ " if last else "├─ ")
        label = f"{prefix}{branch}{span.name}"
        kind = KIND_NAMES.get(span.kind, "?")
        mark = ("  ERROR " if span.error else "  ") + span.note
        lines.append(f"{label:<46} {span.service:<10} {kind:<8} {span.ms:8.1f} ms{mark}".rstrip())
        kids = children.get(span.span_id, [])
        below = prefix if depth == 0 else prefix + ("   " if last else "│  ")
        for i, child in enumerate(kids):
            walk(child, below, i == len(kids) - 1, depth + 1)

    for root in roots:
        walk(root, "", True, 0)
    return lines
