"""OTLP/JSON <-> OTLP protobuf, by the OTLP 1.x JSON rules.

OTLP/JSON is the proto3 JSON mapping with a few differences, which this module applies
on top of ``google.protobuf.json_format``:

- trace and span ids (``traceId``, ``spanId``, ``parentSpanId`` of spans, links, log
  records and exemplars) are hex strings, not base64 as for other ``bytes`` fields;
- enums are integers (names are accepted on input as well);
- keys are lowerCamelCase (the original snake_case names are accepted on input);
- 64-bit integers may be strings or numbers on input and are strings on output;
- unknown fields are ignored on input, so newer senders can talk to an older keiko.

The receivers use :func:`json_to_proto` so that what the store holds is always protobuf;
the API uses :func:`proto_to_json` to show stored records.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from keiko.errors import InvalidInput
from keiko.records import Kind

# Keys that hold trace or span ids wherever they occur in OTLP. Attribute keys are JSON
# *values* ({"key": "traceId", ...}), so a dict key with one of these names is always an id.
ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"})

REQUEST_CLASSES: dict[str, type[Message]] = {
    Kind.OTLP_TRACES: ExportTraceServiceRequest,
    Kind.OTLP_METRICS: ExportMetricsServiceRequest,
    Kind.OTLP_LOGS: ExportLogsServiceRequest,
}


def json_to_proto(kind_or_message_class: str | type[Message], body: bytes) -> bytes:
    """Parse an OTLP/JSON body into the protobuf bytes of the same message.

    ``kind_or_message_class`` is a record kind (``Kind.OTLP_TRACES`` ...) or a message
    class. Raises InvalidInput, with the parser's explanation, for anything that is not a
    valid OTLP/JSON message of that type.
    """
    message = _message_class(kind_or_message_class)()
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError
        raise InvalidInput(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput(
            f"invalid OTLP/JSON: expected an object at the top level, got {type(data).__name__}"
        )
    _convert_ids(data, _hex_to_base64)
    try:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)
    except (json_format.ParseError, RecursionError) as exc:
        raise InvalidInput(f"invalid OTLP/JSON for {message.DESCRIPTOR.name}: {exc}") from None
    return message.SerializeToString()


def proto_to_json(message: Message) -> dict[str, Any]:
    """The OTLP/JSON form of ``message`` (a dict ready for ``json.dumps``)."""
    data = json_format.MessageToDict(message, use_integers_for_enums=True)
    _convert_ids(data, _base64_to_hex)
    return data


def _message_class(kind_or_message_class: str | type[Message]) -> type[Message]:
    if isinstance(kind_or_message_class, type):
        return kind_or_message_class
    try:
        return REQUEST_CLASSES[kind_or_message_class]
    except KeyError:
        raise ValueError(
            f"no OTLP message class for record kind {kind_or_message_class!r}; "
            f"known: {', '.join(REQUEST_CLASSES)}"
        ) from None


def _convert_ids(root: dict[str, Any], convert: Any) -> None:
    """Apply ``convert`` to every string id value in ``root``, in place.

    Iterative rather than recursive: the input comes from the network and may be deep.
    """
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ID_KEYS and isinstance(value, str):
                    node[key] = convert(key, value)
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))


def _hex_to_base64(key: str, value: str) -> str:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise InvalidInput(
            f"invalid OTLP/JSON: {key} must be a hex string "
            f"(OTLP/JSON encodes ids in hex), got {value[:64]!r}"
        ) from None
    return base64.b64encode(raw).decode("ascii")


def _base64_to_hex(key: str, value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).hex()
    except binascii.Error:  # MessageToDict only writes valid base64; keep anything else
        return value
