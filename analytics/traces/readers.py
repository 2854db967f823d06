"""Span files for the offline tools: CSV (one span a row) and OTLP/JSON export requests.

CSV header: ``trace_id,span_id,parent_span_id,service,name,start_ns,end_ns`` (any order,
extra columns ignored) plus optional ``status``, ``kind``, ``instance``, ``node``, ``peer``;
an empty service is ``unknown_service``, as in OTLP decoding.
Ids are hex as OTLP writes them; files exported by other tools may use any text as ids,
so when a column family (trace ids; span and parent ids together) is not all hex, that
whole family is read as UTF-8 bytes instead: one rule per family keeps parent links intact.
A span that ends before it starts is kept with its end clamped to its start (clock skew is
common and should not cost a whole file). Errors name the file, the line, the column and
the fix.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from analytics.traces.spans import (
    KIND_NAMES,
    UNKNOWN_SERVICE,
    SpanBatch,
    SpanKind,
    decode_spans,
)
from keiko.errors import InvalidInput
from keiko.otlp_json import json_to_proto

REQUIRED = ("trace_id", "span_id", "parent_span_id", "service", "name", "start_ns", "end_ns")
OPTIONAL = ("status", "kind", "instance", "node", "peer")
ERROR_STATUS = frozenset({"error", "status_code_error", "2"})
OK_STATUS = frozenset({"", "ok", "unset", "status_code_ok", "status_code_unset", "0", "1"})
FIELDS = "every row needs as many fields as the header (quote fields that hold commas)"
KINDS: dict[str, int] = {}
for _kind, _long in KIND_NAMES.items():
    KINDS[_long.lower()] = int(_kind)
    KINDS[_kind.name.lower()] = int(_kind)
    KINDS[str(int(_kind))] = int(_kind)
KINDS[""] = int(SpanKind.UNSPECIFIED)


class SpansFileError(ValueError):
    """A span file the offline tools cannot read; the message says where and how to fix it."""


def read_spans_csv(path: str | Path) -> SpanBatch:
    """The spans of a CSV file (see the module docstring for the columns)."""
    name = str(path)
    pos = _header(name, path)
    try:
        with warnings.catch_warnings():
            # Only when the first row is longer than the header: pandas would drop data.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(
                path,
                dtype=str,
                na_filter=False,
                index_col=False,
                encoding="utf-8-sig",
                skipinitialspace=True,
            )
    except OSError as exc:
        raise SpansFileError(f"{name}: cannot read: {exc.strerror or exc}") from None
    except pd.errors.ParserWarning:
        raise SpansFileError(f"{name}: line 2: more fields than the header; {FIELDS}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise SpansFileError(
            f"{name}: not a valid CSV file: {str(exc).strip()}; {FIELDS}"
        ) from None
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    return _batch(name, frame, pos)


def _header(name: str, path: str | Path) -> dict[str, int]:
    """The 1-based position of each known column in the file's header."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except OSError as exc:
        raise SpansFileError(f"{name}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise SpansFileError(f"{name}: line 1: not UTF-8 text ({exc.reason})") from None
    if header is None:
        raise SpansFileError(f"{name}: the file is empty; expected a header {','.join(REQUIRED)}")
    found = {c.strip().lower() for c in header}
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        raise SpansFileError(
            f"{name}: line 1: the header lacks the column(s) {', '.join(missing)}; "
            f"the header must name {','.join(REQUIRED)} "
            f"(optional: {','.join(OPTIONAL)}); it has {','.join(header)}"
        )
    names = [c.strip().lower() for c in header]
    return {c: names.index(c) + 1 for c in (*REQUIRED, *OPTIONAL) if c in found}


def _batch(name: str, frame: pd.DataFrame, pos: dict[str, int]) -> SpanBatch:
    n = len(frame)
    start = _integers(name, frame, "start_ns", pos)
    end = np.maximum(_integers(name, frame, "end_ns", pos), start)
    span_ids, parent_ids = _ids(_cells(frame, "span_id"), _cells(frame, "parent_span_id"))
    trace_ids = _shared_ids(_cells(frame, "trace_id"))
    _require(name, trace_ids, "trace_id", pos)
    _require(name, span_ids, "span_id", pos)
    return SpanBatch(
        trace_id=trace_ids,
        span_id=span_ids,
        parent_id=parent_ids,
        service=[s or UNKNOWN_SERVICE for s in frame["service"].tolist()],
        name=frame["name"].tolist(),
        kind=_mapped(name, frame, "kind", pos, KINDS, np.int8, "SERVER, SPAN_KIND_CLIENT or 0-5"),
        start_ns=start,
        end_ns=end,
        error=_status(name, frame, pos),
        peer=_text(frame, "peer", n),
        instance=_text(frame, "instance", n),
        node=_text(frame, "node", n),
    )


def _integers(name: str, frame: pd.DataFrame, column: str, pos: dict[str, int]) -> np.ndarray:
    values = _cells(frame, column)
    try:
        # Exact: int() per cell; a float detour would round ns timestamps (> 2**53).
        return values.astype(np.int64)
    except (ValueError, OverflowError):
        pass
    for row, text in enumerate(values):
        try:
            fits = -(2**63) <= int(text) < 2**63
        except ValueError:
            fits = False
        if not fits:
            raise SpansFileError(
                f"{name}: line {row + 2}, column {pos[column]} ({column}): {text!r} is not a "
                "64-bit integer; write nanoseconds since the Unix epoch as a whole number"
            )
    raise AssertionError("unreachable: astype failed but every cell parsed")


def _cells(frame: pd.DataFrame, column: str) -> np.ndarray:
    return frame[column].to_numpy(dtype=object)


def _require(name: str, ids: list[bytes], column: str, pos: dict[str, int]) -> None:
    if b"" in ids:  # a C-speed scan; the index is looked up only on failure
        raise SpansFileError(
            f"{name}: line {ids.index(b'') + 2}, column {pos[column]} ({column}): empty; "
            f"every span needs a {column}"
        )


def _ids(*columns: np.ndarray) -> list[list[bytes]]:
    """Hex ids as bytes, or, when any cell of the family is not hex, UTF-8 bytes for all."""
    try:
        return [[bytes.fromhex(v) for v in col] for col in columns]
    except ValueError:
        return [[v.encode("utf-8") for v in col] for col in columns]


def _shared_ids(column: np.ndarray) -> list[bytes]:
    """Like :func:`_ids` for one family, with one bytes object per distinct id: a trace id
    repeats on every span of the trace (a twentieth of the memory for 20-span traces)."""
    codes, uniques = pd.factorize(column)
    distinct = np.empty(len(uniques), dtype=object)
    distinct[:] = _ids(np.asarray(uniques, dtype=object))[0]
    out: list[bytes] = distinct[codes].tolist()
    return out


def _mapped(
    name: str,
    frame: pd.DataFrame,
    column: str,
    pos: dict[str, int],
    table: dict[str, int],
    dtype: type,
    expected: str,
) -> np.ndarray:
    """A column of a few distinct words mapped through ``table`` (case-insensitive)."""
    if column not in frame:
        return np.zeros(len(frame), dtype)
    codes, uniques = pd.factorize(frame[column])
    mapped = []
    for i, word in enumerate(uniques):
        value = table.get(str(word).strip().lower())
        if value is None:
            row = int(np.argmax(codes == i))
            raise SpansFileError(
                f"{name}: line {row + 2}, column {pos[column]} ({column}): unknown value "
                f"{word!r}; write {expected}"
            )
        mapped.append(value)
    return np.asarray(mapped, dtype)[codes] if mapped else np.zeros(0, dtype)


def _status(name: str, frame: pd.DataFrame, pos: dict[str, int]) -> np.ndarray:
    table = {w: 1 for w in ERROR_STATUS} | {w: 0 for w in OK_STATUS}
    flags = _mapped(name, frame, "status", pos, table, np.int8, "ERROR, OK, UNSET or 0/1/2")
    return flags.astype(bool)


def _text(frame: pd.DataFrame, column: str, n: int) -> list[str]:
    return frame[column].tolist() if column in frame else [""] * n


def write_spans_csv(path: str | Path, spans: SpanBatch) -> None:
    """Write ``spans`` as a CSV file that :func:`read_spans_csv` reads back unchanged."""
    frame = pd.DataFrame(
        {
            "trace_id": [t.hex() for t in spans.trace_id],
            "span_id": [s.hex() for s in spans.span_id],
            "parent_span_id": [p.hex() for p in spans.parent_id],
            "service": spans.service,
            "name": spans.name,
            "start_ns": spans.start_ns,
            "end_ns": spans.end_ns,
            "status": np.where(spans.error, "ERROR", "UNSET"),
            "kind": spans.kind.astype(np.int64),
            "instance": spans.instance,
            "node": spans.node,
            "peer": spans.peer,
        }
    )
    frame.to_csv(path, index=False)


def read_spans_json(path: str | Path) -> SpanBatch:
    """The spans of an OTLP/JSON ExportTraceServiceRequest file, a JSON list of them, or
    JSON lines (one request a line)."""
    name = str(path)
    try:
        body = Path(path).read_bytes()
    except OSError as exc:
        raise SpansFileError(f"{name}: cannot read: {exc.strerror or exc}") from None
    batches = [decode_spans(_request(name, where, raw)) for where, raw in _requests(name, body)]
    return SpanBatch.concat(batches)


def _requests(name: str, body: bytes) -> Iterator[tuple[str, bytes]]:
    """(where, OTLP/JSON bytes) of each request in the file."""
    try:
        data = json.loads(body)
    except ValueError:  # perhaps JSON lines; each line is checked on its own
        yield from _lines(name, body)
        return
    if isinstance(data, list):
        for i, item in enumerate(data):
            yield f"item {i} of the list", json.dumps(item).encode()
    else:
        yield "", body


def _lines(name: str, body: bytes) -> Iterator[tuple[str, bytes]]:
    if not body.strip():
        raise SpansFileError(
            f"{name}: the file is empty; expected an OTLP/JSON ExportTraceServiceRequest"
        )
    for number, line in enumerate(body.splitlines(), start=1):
        if line.strip():
            yield f"line {number}", line


def _request(name: str, where: str, raw: bytes) -> ExportTraceServiceRequest:
    try:
        payload = json_to_proto(ExportTraceServiceRequest, raw)
    except InvalidInput as exc:
        at = f"{name}: {where}" if where else name
        raise SpansFileError(
            f"{at}: {exc}; the file must hold an OTLP/JSON ExportTraceServiceRequest "
            '({"resourceSpans": [...]}), a JSON list of them, or one a line'
        ) from None
    return ExportTraceServiceRequest.FromString(payload)
