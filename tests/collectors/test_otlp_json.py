"""keiko.otlp_json: the OTLP/JSON rules on top of protobuf's JSON mapping."""

from __future__ import annotations

import json

import pytest
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from otlp_clients import make_logs, make_metrics, make_spans

from keiko.errors import InvalidInput
from keiko.otlp_json import json_to_proto, proto_to_json
from keiko.records import Kind

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"
SPEC_EXAMPLE = {  # shaped like the example in the OTLP specification
    "resourceSpans": [
        {
            "resource": {
                "attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]
            },
            "scopeSpans": [
                {
                    "scope": {"name": "my.library", "version": "1.0.0"},
                    "spans": [
                        {
                            "traceId": TRACE_ID,
                            "spanId": SPAN_ID,
                            "parentSpanId": "eee19b7ec3c1b173",
                            "name": "I'm a server span",
                            "kind": 2,
                            "startTimeUnixNano": "1544712660000000000",
                            "endTimeUnixNano": 1544712661000000000,
                            "attributes": [
                                {"key": "my.span.attr", "value": {"stringValue": "some value"}},
                                {"key": "traceId", "value": {"bytesValue": "AAEC"}},
                            ],
                            "links": [{"traceId": TRACE_ID, "spanId": "0102030405060708"}],
                            "status": {"code": 2, "message": "boom"},
                        }
                    ],
                }
            ],
        }
    ],
}


def decode(body: dict[str, object]) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(
        json_to_proto(Kind.OTLP_TRACES, json.dumps(body).encode())
    )


def test_hex_ids_enums_and_int64_strings_or_numbers() -> None:
    request = decode(SPEC_EXAMPLE)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex(TRACE_ID) and span.span_id == bytes.fromhex(SPAN_ID)
    assert span.parent_span_id == bytes.fromhex("eee19b7ec3c1b173")
    assert span.links[0].trace_id == bytes.fromhex(TRACE_ID)
    assert span.kind == 2 and span.status.code == 2
    assert span.start_time_unix_nano == 1544712660000000000
    assert span.end_time_unix_nano == 1544712661000000000
    # an attribute *named* traceId is a value, not an id: its bytes stay base64
    assert span.attributes[1].value.bytes_value == b"\x00\x01\x02"


def test_snake_case_keys_and_unknown_fields_are_accepted() -> None:
    body = {
        "resource_spans": [
            {
                "scope_spans": [
                    {
                        "spans": [
                            {
                                "trace_id": TRACE_ID,
                                "span_id": SPAN_ID,
                                "name": "x",
                                "futureField": {"a": 1},
                            }
                        ]
                    }
                ],
                "schemaUrlFromTheFuture": "x",
            }
        ],
        "alsoUnknown": [1, 2],
    }
    span = decode(body).resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex(TRACE_ID) and span.name == "x"


def test_output_follows_otlp_json() -> None:
    out = proto_to_json(decode(SPEC_EXAMPLE))
    span = out["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert span["traceId"] == TRACE_ID and span["spanId"] == SPAN_ID
    assert span["links"][0]["spanId"] == "0102030405060708"
    assert span["kind"] == 2 and span["status"]["code"] == 2  # integers, not names
    assert span["startTimeUnixNano"] == "1544712660000000000"
    assert span["attributes"][1]["value"]["bytesValue"] == "AAEC"


@pytest.mark.parametrize(
    "message",
    [encode_spans(make_spans()), encode_metrics(make_metrics()), encode_logs(make_logs())],
    ids=["traces", "metrics", "logs"],
)
def test_round_trip_of_sdk_requests(message: object) -> None:
    as_json = json.dumps(proto_to_json(message))  # type: ignore[arg-type]
    back = json_to_proto(type(message), as_json.encode())  # type: ignore[arg-type]
    assert type(message).FromString(back) == message  # type: ignore[attr-defined]


def test_log_record_ids_are_hex() -> None:
    logs = encode_logs(make_logs())
    record = proto_to_json(logs)["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0]
    assert record["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert record["spanId"] == "00f067aa0ba902b7"
    back = ExportLogsServiceRequest.FromString(
        json_to_proto(Kind.OTLP_LOGS, json.dumps(proto_to_json(logs)).encode())
    )
    assert back == logs


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "invalid JSON"),
        (b"\xff\xfe\x00", "invalid JSON"),
        (b'"a string"', "expected an object"),
        (b'{"resourceSpans": {"not": "a list"}}', "resourceSpans"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]}', "name"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}', "hex"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": {}}]}]}]}', "kind"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
            "startTimeUnixNano",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
    ],
)
def test_invalid_json_is_invalid_input(body: bytes, words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        json_to_proto(Kind.OTLP_TRACES, body)
    assert words in str(err.value)


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="no OTLP message class"):
        json_to_proto("keiko.event+json", b"{}")
