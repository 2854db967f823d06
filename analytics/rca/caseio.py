"""Case directories on disk: what `keiko rca` reads and the evaluation writes.

A case directory holds ``metrics.csv`` (``time,service,metric,value`` and an optional
``instance`` column; time in unix seconds), optionally ``spans.csv`` or ``spans.json``
(read by ``analytics.traces.readers``) and optionally ``graph.csv`` (``source,target``,
one known call edge caller -> callee per row). Errors name the file, the line or column,
and the fix. Rows whose value is not a number are dropped, counted, and reported in one
``CaseWarning`` per file, so a partly broken export still gives an answer.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from analytics.rca.model import Case
from analytics.traces.readers import (
    SpansFileError,
    read_spans_csv,
    read_spans_json,
    write_spans_csv,
)
from analytics.traces.spans import SpanBatch

METRICS_FILE = "metrics.csv"
GRAPH_FILE = "graph.csv"
SPAN_FILES = ("spans.csv", "spans.json")
METRICS_REQUIRED = ("time", "service", "metric", "value")
GRAPH_REQUIRED = ("source", "target")
_TEXT = ("service", "metric", "instance")


class CaseError(ValueError):
    """A case directory `keiko rca` cannot read; the message says where and how to fix it."""


class CaseWarning(UserWarning):
    """Something in a case was skipped (rows without a usable value)."""


def read_case(directory: str | Path) -> Case:
    """The case stored in ``directory`` (raises CaseError; warns CaseWarning on dropped rows)."""
    root = Path(directory)
    if not root.is_dir():
        raise CaseError(f"{root}: not a directory; give the case directory holding {METRICS_FILE}")
    return Case(
        metrics=read_metrics(root / METRICS_FILE),
        spans=_read_spans(root),
        graph=read_graph(root / GRAPH_FILE) if (root / GRAPH_FILE).exists() else [],
    )


def write_case(directory: str | Path, case: Case) -> None:
    """Store ``case`` in ``directory`` (created if needed) in the format `read_case` reads.

    The ``instance`` column is written only when some row has one; spans, when there are
    any, as ``spans.csv``.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    frame = case.metrics
    columns = list(METRICS_REQUIRED)
    if "instance" in frame.columns and bool((frame["instance"].astype(str) != "").any()):
        columns.append("instance")
    # repr-exact floats so a round trip gives the same numbers back
    frame[columns].to_csv(root / METRICS_FILE, index=False, float_format=None)
    graph_path = root / GRAPH_FILE
    if case.graph:
        with open(graph_path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(GRAPH_REQUIRED)
            writer.writerows(case.graph)
    elif graph_path.exists():
        graph_path.unlink()  # a stale graph would change the next reader's answer
    if case.spans is not None and len(case.spans):
        _write_spans(root, case.spans)


def read_metrics(path: Path) -> pd.DataFrame:
    """``metrics.csv`` as the long frame ``Case.metrics`` holds."""
    header = _header(path, "time,service,metric,value[,instance]", "metric points")
    _require(path, header, METRICS_REQUIRED, "time,service,metric,value[,instance]")
    usecols = [c for c in (*METRICS_REQUIRED, "instance") if c in header]
    try:
        frame = pd.read_csv(
            path,
            usecols=usecols,
            dtype={c: "object" for c in _TEXT if c in usecols},
            keep_default_na=False,
            na_values={"time": [""], "value": ["", "NaN", "nan", "NA", "null"]},
            engine="c",
            low_memory=False,
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CaseError(f"{path}: not a readable CSV file ({exc}); fix or re-export it") from None
    if frame.empty:
        raise CaseError(f"{path}: has a header but no rows; export the metric points into it")
    frame["time"] = _times(path, frame["time"])
    if "instance" not in frame.columns:
        frame["instance"] = ""
    return _drop_unusable(path, frame)[["time", "service", "metric", "value", "instance"]]


def read_graph(path: Path) -> list[tuple[str, str]]:
    """``graph.csv`` as (caller, callee) pairs, duplicates removed, file order kept."""
    _header(path, "source,target", "call edges")
    edges: dict[tuple[str, str], None] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        _require(
            path, [c.strip() for c in reader.fieldnames or []], GRAPH_REQUIRED, "source,target"
        )
        for line, row in enumerate(reader, start=2):
            source = (row.get("source") or "").strip()
            target = (row.get("target") or "").strip()
            if not source or not target:
                raise CaseError(
                    f"{path}: line {line}: source and target must both name a service; "
                    "fill in the empty cell or delete the line"
                )
            edges[(source, target)] = None
    return list(edges)


def _header(path: Path, expected: str, what: str) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            first = next(csv.reader(handle), None)
    except FileNotFoundError:
        raise CaseError(
            f"{path}: missing; a case directory needs {path.name} with header '{expected}'"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseError(f"{path}: cannot read: {exc}") from None
    if not first or not any(c.strip() for c in first):
        raise CaseError(
            f"{path}: the file is empty; expected a header '{expected}' then the {what}"
        )
    return [c.strip() for c in first]


def _require(path: Path, header: list[str], required: tuple[str, ...], expected: str) -> None:
    missing = [c for c in required if c not in header]
    if missing:
        raise CaseError(
            f"{path}: line 1: column {', '.join(repr(c) for c in missing)} missing "
            f"(header is {','.join(header)!r}); the header must be '{expected}'"
        )


def _times(path: Path, column: pd.Series) -> pd.Series:
    """The time column as float64 unix seconds; any other text is an error naming its line."""
    times = pd.to_numeric(column, errors="coerce").astype("float64")
    bad = ~np.isfinite(times.to_numpy())
    if bad.any():
        row = int(np.argmax(bad))
        raise CaseError(
            f"{path}: line {row + 2}: column 'time' is {_cell(column.iloc[row])!r}, not a number; "
            "write times as unix seconds (e.g. 1700000000 or 1700000000.5)"
        )
    return times


def _cell(value: object) -> str:
    return "" if isinstance(value, float) and np.isnan(value) else str(value)


def _stripped(column: pd.Series) -> np.ndarray:
    """The column's text without surrounding blanks; stripping only the distinct names keeps
    this fast for millions of rows of a few thousand series."""
    codes, names = pd.factorize(column, use_na_sentinel=False)
    clean = np.array([str(n).strip() for n in names] or [""], dtype=object)
    return clean[codes]


def _drop_unusable(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows without a numeric value or without a service/metric name, dropped and counted."""
    values = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    frame["value"] = values
    keep = np.isfinite(values.to_numpy())
    for name in ("service", "metric", "instance"):
        frame[name] = _stripped(frame[name])
    keep &= (frame["service"] != "").to_numpy() & (frame["metric"] != "").to_numpy()
    dropped = int(len(frame) - keep.sum())
    if dropped:
        first = int(np.argmin(keep)) + 2
        warnings.warn(
            f"{path}: dropped {dropped} of {len(frame)} rows without a numeric value, a service "
            f"or a metric (first at line {first})",
            CaseWarning,
            stacklevel=3,
        )
        frame = frame[keep].reset_index(drop=True)
    if frame.empty:
        raise CaseError(f"{path}: no row has a numeric value; the column 'value' must hold numbers")
    return frame


def _read_spans(root: Path) -> SpanBatch | None:
    present = [root / name for name in SPAN_FILES if (root / name).exists()]
    if not present:
        return None
    if len(present) > 1:
        raise CaseError(f"{root}: holds both spans.csv and spans.json; keep one of them")
    path = present[0]
    read = read_spans_csv if path.suffix == ".csv" else read_spans_json
    try:
        return read(path)
    except SpansFileError as exc:
        text = str(exc)
        raise CaseError(text if str(path) in text else f"{path}: {text}") from None


def _write_spans(root: Path, spans: SpanBatch) -> None:
    stale = root / SPAN_FILES[1]
    if stale.exists():
        stale.unlink()  # two span files would be refused on reading
    write_spans_csv(root / SPAN_FILES[0], spans)
