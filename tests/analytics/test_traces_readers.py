"""Span files: CSV with and without the optional columns, foreign (non-hex) ids, errors that
name the file, line, column and fix; OTLP/JSON made from spans the real OTel SDK recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from analytics.traces.analysis import summarise
from analytics.traces.readers import (
    SpansFileError,
    read_spans_csv,
    read_spans_json,
    write_spans_csv,
)
from analytics.traces.spans import SpanBatch, decode_spans
from keiko.otlp_json import proto_to_json

T = "4bf92f3577b34da6a3ce929d0e0e4736"
HEADER = "trace_id,span_id,parent_span_id,service,name,start_ns,end_ns"


def write(tmp_path: Path, text: str, name: str = "spans.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_required_columns_only(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"{HEADER}\n"
        f"{T},00f067aa0ba902b7,,front,GET /,1700000000000000001,1700000000500000001\n"
        f"{T},00f067aa0ba902b8,00f067aa0ba902b7,db,SELECT,1700000000100000000,1700000000050000000\n",
    )
    batch = read_spans_csv(path)
    assert len(batch) == 2
    assert batch.trace_id == [bytes.fromhex(T)] * 2
    assert batch.span_id[0] == bytes.fromhex("00f067aa0ba902b7")
    assert batch.parent_id == [b"", bytes.fromhex("00f067aa0ba902b7")]
    assert batch.service == ["front", "db"] and batch.name == ["GET /", "SELECT"]
    # Exact to the nanosecond (no float detour); the skewed span's end is clamped.
    assert batch.start_ns.tolist() == [1700000000000000001, 1700000000100000000]
    assert batch.end_ns.tolist() == [1700000000500000001, 1700000000100000000]
    assert batch.kind.dtype == np.int8 and batch.kind.tolist() == [0, 0]
    assert batch.error.tolist() == [False, False]
    assert batch.peer == batch.instance == batch.node == ["", ""]


def test_csv_optional_columns_any_order_and_case(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Node, KIND,status,name,service,trace_id,span_id,parent_span_id,start_ns,end_ns,peer,"
        "instance,extra\n"
        "n1,SERVER,ERROR,a,svc,1,01,,0,10,,pod-1,x\n"
        "n1,span_kind_client,STATUS_CODE_ERROR,b,svc,1,02,01,1,9,postgres,pod-1,x\n"
        "n2,3,2,c,svc,1,03,01,1,9,,pod-2,x\n"
        "n2,,OK,d,svc,1,04,01,1,9,,pod-2,x\n"
        "n2,internal,unset,e,svc,1,05,01,1,9,,pod-2,x\n"
        "n2,Consumer,,f,svc,1,06,01,1,9,,pod-2,x\n"
        "n2,1,0,g,svc,1,07,01,1,9,,pod-2,x\n"
        "n2,0,error,h,svc,1,08,01,1,9,,pod-2,x\n",
    )
    batch = read_spans_csv(path)
    assert batch.kind.tolist() == [2, 3, 3, 0, 1, 5, 1, 0]
    assert batch.error.tolist() == [True, True, True, False, False, False, False, True]
    assert batch.node[:3] == ["n1", "n1", "n2"]
    assert batch.instance[0] == "pod-1" and batch.peer[1] == "postgres"
    assert batch.name == list("abcdefgh")


def test_csv_foreign_ids_keep_their_links(tmp_path: Path) -> None:
    # Ids from another tool: not hex, so the whole family is read as UTF-8 text.
    path = write(
        tmp_path,
        f"{HEADER}\n"
        "trace-A,root,,front,GET,0,100\n"
        "trace-A,ab,root,api,call,10,90\n"  # 'ab' alone would be valid hex
        "trace-A,c1,ab,db,q,20,80\n",
    )
    batch = read_spans_csv(path)
    assert batch.trace_id[0] == b"trace-A"
    assert batch.span_id == [b"root", b"ab", b"c1"]
    assert batch.parent_id == [b"", b"root", b"ab"]
    (s,) = summarise(batch)
    assert s.path_services() == ["front", "api", "db", "api", "front"]
    assert s.critical_ns == {"front": 20, "api": 20, "db": 60}


def test_csv_with_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(f"{HEADER}\n{T},01,,a,b,1,2\n{T},02,,,c,1,2\n".encode("utf-8-sig"))
    assert read_spans_csv(path).service == ["a", "unknown_service"]


def test_csv_round_trip(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"{HEADER},status,kind,instance,node,peer\n"
        f"{T},0000000000000001,,front,GET /,5,50,ERROR,SERVER,pod,node,\n"
        f"{T},0000000000000002,0000000000000001,front,call,6,40,,CLIENT,pod,node,db\n",
    )
    batch = read_spans_csv(path)
    write_spans_csv(tmp_path / "again.csv", batch)
    again = read_spans_csv(tmp_path / "again.csv")
    for column in ("trace_id", "span_id", "parent_id", "service", "name", "peer", "instance"):
        assert getattr(again, column) == getattr(batch, column)
    for column in ("kind", "start_ns", "end_ns", "error"):
        assert getattr(again, column).tolist() == getattr(batch, column).tolist()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "trace_id,span_id,service,name,start_ns,end_ns\n",
            "line 1: the header lacks the column(s) parent_span_id",
        ),
        ("", "the file is empty; expected a header trace_id,span_id"),
        (f"{HEADER}\n{T},01,,a,b,12x,20\n", "line 2, column 6 (start_ns): '12x' is not a 64-bit"),
        (f"{HEADER}\n{T},01,,a,b,1,{10**19}\n", f"column 7 (end_ns): '{10**19}' is not a 64-bit"),
        (f"{HEADER}\n{T},01,,a,b,1,2\n{T},02,,a,b,1,\n", "line 3, column 7 (end_ns): ''"),
        (f"{HEADER}\n{T},,,a,b,1,2\n", "line 2, column 2 (span_id): empty"),
        (f"{HEADER},status\n{T},01,,a,b,1,2,BROKEN\n", "line 2, column 8 (status): unknown"),
        (f"{HEADER},kind\n{T},01,,a,b,1,2,SERVER\n{T},02,,a,b,1,2,sever\n", "line 3, column 8"),
        (f"{HEADER}\n{T},01,,a,b,1,2,3\n", "line 2: more fields than the header; every row"),
        (f"{HEADER}\n{T},01,,a,b,1,2\n{T},01,,a,b,1,2,3\n", "line 3, saw 8; every row needs"),
    ],
)
def test_csv_errors_name_the_file_place_and_fix(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(SpansFileError) as caught:
        read_spans_csv(path)
    message = str(caught.value)
    assert message.startswith(str(path))
    assert expected in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpansFileError, match=r"nope\.csv: cannot read"):
        read_spans_csv(tmp_path / "nope.csv")
    with pytest.raises(SpansFileError, match=r"nope\.json: cannot read"):
        read_spans_json(tmp_path / "nope.json")


def sdk_request() -> tuple[dict[str, object], bytes]:
    """Spans recorded by the real OTel SDK: checkout calls payment, which fails; as the
    OTLP/JSON dict and the protobuf bytes of the same request."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "checkout", "k8s.pod.name": "checkout-1"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    server = tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER)
    client = tracer.start_as_current_span(
        "charge", kind=SpanKind.CLIENT, attributes={"peer.service": "payment"}
    )
    with server, client as span:
        span.set_status(Status(StatusCode.ERROR, "declined"))
    provider.shutdown()
    request = encode_spans(exporter.get_finished_spans())
    return proto_to_json(request), request.SerializeToString()


def assert_same(a: SpanBatch, b: SpanBatch) -> None:
    for column in ("trace_id", "span_id", "parent_id", "service", "name", "peer", "instance"):
        assert getattr(a, column) == getattr(b, column)
    for column in ("kind", "start_ns", "end_ns", "error"):
        assert getattr(a, column).tolist() == getattr(b, column).tolist()


def test_json_from_the_otel_sdk(tmp_path: Path) -> None:
    body, proto = sdk_request()
    path = write(tmp_path, json.dumps(body), "spans.json")
    batch = read_spans_json(path)
    assert_same(batch, decode_spans(proto))
    assert sorted(batch.name) == ["POST /checkout", "charge"]
    assert set(batch.service) == {"checkout"} and set(batch.instance) == {"checkout-1"}
    charge = batch.name.index("charge")
    assert batch.error[charge] and batch.peer[charge] == "payment" and batch.kind[charge] == 3
    (s,) = summarise(batch)
    assert s.error and s.root_name == "POST /checkout"
    assert [o.name for o in s.error_origins] == ["charge"]


def test_json_list_and_lines(tmp_path: Path) -> None:
    body, proto = sdk_request()
    one = decode_spans(proto)
    listed = read_spans_json(write(tmp_path, json.dumps([body, body]), "list.json"))
    lines = read_spans_json(write(tmp_path, f"{json.dumps(body)}\n\n{json.dumps(body)}\n"))
    expected = SpanBatch.concat([one, decode_spans(proto)])
    assert_same(listed, expected)
    assert_same(lines, expected)
    assert len(read_spans_json(write(tmp_path, "[]", "none.json"))) == 0


def test_json_errors_say_where(tmp_path: Path) -> None:
    body, _ = sdk_request()
    bad = json.loads(json.dumps(body))
    bad["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "not-hex"
    path = write(tmp_path, f"{json.dumps(body)}\n{json.dumps(bad)}\n", "spans.jsonl")
    with pytest.raises(SpansFileError) as caught:
        read_spans_json(path)
    assert str(caught.value).startswith(f"{path}: line 2: invalid OTLP/JSON: spanId")
    path = write(tmp_path, json.dumps([body, 7]), "list.json")
    with pytest.raises(SpansFileError, match=r"item 1 of the list: .*expected an object"):
        read_spans_json(path)
    with pytest.raises(SpansFileError, match="the file is empty"):
        read_spans_json(write(tmp_path, "  \n", "empty.json"))
    with pytest.raises(SpansFileError, match=r"line 1: invalid JSON"):
        read_spans_json(write(tmp_path, "{oops", "broken.json"))
