"""The `timestamp,value` CSV files of the offline tools (detect, forecast, scale-sim).

Timestamps may be ``YYYY-MM-DD HH:MM:SS`` (NAB's format, read as UTC), ISO 8601 (with or
without a zone; no zone means UTC) or unix seconds. A file whose timestamps are all numbers
above 1e11 is read as unix milliseconds (as Prometheus and Grafana exports write them): as
seconds they would all lie after the year 5138, as milliseconds they lie after 1973. The
original timestamp text is kept so that output rows repeat the input exactly. Errors name
the file, the line and the fix; what was read unusually is said in ``notes``.
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import numpy as np


class SeriesFileError(ValueError):
    """A CSV file the offline tools cannot read; the message says where and how to fix it."""


@dataclass(frozen=True)
class SeriesCSV:
    """One series: the timestamps as written, as unix seconds, and the values."""

    raw_timestamps: list[str]
    times: np.ndarray  # float64 unix seconds
    values: np.ndarray  # float64; NaN where the value cell is empty
    notes: tuple[str, ...] = ()  # how the file was read where a reader might not expect it

    def __len__(self) -> int:
        return len(self.raw_timestamps)


def parse_timestamp(text: str) -> float:
    """Unix seconds from unix seconds, ``YYYY-MM-DD HH:MM:SS[.f]`` or ISO 8601 (UTC if no zone)."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
        raise ValueError(f"timestamp {text!r} is not a finite number")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"timestamp {text!r} is neither unix seconds, 'YYYY-MM-DD HH:MM:SS' nor ISO 8601"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def read_series_csv(path: str | Path, stream: IO[str] | None = None) -> SeriesCSV:
    """Read a ``timestamp,value`` file (extra columns ignored); ``-`` reads standard input,
    ``stream`` reads that stream instead."""
    return _open(path, stream, _read)


def read_arrivals_csv(path: str | Path, step: float, stream: IO[str] | None = None) -> SeriesCSV:
    """Requests per second in ``step``-second bins from a file with one row per request (a
    ``timestamp`` column; a value column is not needed, other columns are ignored), as an
    access log or a request trace lists them. The first and last bins are partial (the file
    starts and ends inside them) and dropped; a bin without requests is a rate of 0."""
    if not step > 0:
        raise ValueError(f"the step must be positive, not {step!r}")
    arrivals = _open(path, stream, lambda name, handle: _read(name, handle, with_values=False))
    name = _display_name(path, stream)
    bins = np.floor(arrivals.times / step).astype(np.int64)
    if len(bins) == 0 or bins.max() - bins.min() < 3:
        raise SeriesFileError(
            f"{name}: its {len(bins)} requests span fewer than 4 steps of {step:g} s; "
            "count them in a shorter step"
        )
    counts = np.bincount(bins - bins.min())[1:-1]
    starts = (np.arange(1, len(counts) + 1) + bins.min()) * step
    note = (
        f"{len(bins):,} requests (one per row) counted into {len(counts):,} steps of "
        f"{step:g} s, as requests per second (the partial first and last steps dropped)"
    )
    return SeriesCSV(
        [str(int(t)) if t == int(t) else repr(float(t)) for t in starts],
        starts.astype(np.float64),
        counts / step,
        (*arrivals.notes, note),
    )


def read_input(path: str | Path, arrivals: float | None = None) -> SeriesCSV:
    """The series of an offline tool's input: ``timestamp,value``, or with ``arrivals`` (a
    step in seconds) a file of one request per row counted into requests per second."""
    return read_series_csv(path) if arrivals is None else read_arrivals_csv(path, arrivals)


def _open(
    path: str | Path, stream: IO[str] | None, read: Callable[[str, IO[str]], SeriesCSV]
) -> SeriesCSV:
    """``read(name, handle)`` of ``stream``, standard input (``-``) or the file."""
    name = _display_name(path, stream)
    if stream is not None:
        return read(name, stream)
    if str(path) == "-":
        return read(name, sys.stdin)
    try:
        # utf-8-sig: spreadsheet programs start their "CSV UTF-8" files with a byte-order mark
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return read(name, handle)
    except OSError as exc:
        raise SeriesFileError(f"{name}: cannot read: {exc.strerror or exc}") from None


def _display_name(path: str | Path, stream: IO[str] | None) -> str:
    return "<stdin>" if str(path) == "-" and stream is None else str(path)


def _read(name: str, handle: Iterable[str], with_values: bool = True) -> SeriesCSV:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        want = "'timestamp,value'" if with_values else "with a column 'timestamp'"
        raise SeriesFileError(f"{name}: the file is empty; expected a header {want}")
    columns = [c.strip().lstrip("\ufeff").lower() for c in header]  # a BOM on stdin too
    if "timestamp" not in columns or (with_values and "value" not in columns):
        raise SeriesFileError(f"{name}: line 1: {_header_problem(header, columns, with_values)}")
    t_col = columns.index("timestamp")
    v_col = columns.index("value") if with_values else t_col
    raw: list[str] = []
    times: list[float] = []
    values: list[float] = []
    for line_no, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) <= max(t_col, v_col):
            raise SeriesFileError(f"{name}: line {line_no}: expected {len(columns)} columns")
        try:
            times.append(parse_timestamp(row[t_col]))
        except ValueError as exc:
            raise SeriesFileError(f"{name}: line {line_no}: {exc}") from None
        if with_values:
            values.append(_value(name, line_no, row[v_col]))
        raw.append(row[t_col])
    stamps = np.asarray(times, dtype=np.float64)
    notes: list[str] = []
    if len(stamps) and stamps.min() >= MILLISECONDS_ABOVE and all(map(is_number, raw)):
        stamps = stamps / 1000.0
        notes.append(
            "timestamps read as unix milliseconds (all are numbers above 1e11, which as "
            "seconds would lie after the year 5138)"
        )
    repeats = len(stamps) - len(np.unique(stamps))
    if repeats and with_values:  # requests arriving together are no surprise
        notes.append(
            f"{repeats} rows repeat an earlier row's timestamp (detect scores every row in "
            "file order; forecast and scale-sim average the rows of a step)"
        )
    return SeriesCSV(raw, stamps, np.asarray(values, np.float64), tuple(notes))


def _header_problem(header: list[str], columns: list[str], with_values: bool) -> str:
    got = f"header is {','.join(header)!r}; expected "
    if not with_values:
        return got + "a column 'timestamp'"
    if "timestamp" in columns:  # likely a request log: say how to read it as one
        return got + (
            "a column 'value' too (e.g. 'timestamp,value'); a file with one row per request "
            "is read with --arrivals STEP, which counts the rows per step"
        )
    return got + "columns 'timestamp' and 'value' (e.g. 'timestamp,value')"


def print_notes(series: SeriesCSV, prog: str, out: IO[str] | None = None) -> None:
    """Say how the file was read where that is unusual (standard error by default)."""
    for note in series.notes:
        print(f"{prog}: note: {note}", file=out or sys.stderr)


MILLISECONDS_ABOVE = 1e11  # unix seconds of the year 5138; unix milliseconds of 1973


def is_number(text: str) -> bool:
    """Whether ``float`` reads ``text``."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _value(name: str, line_no: int, text: str) -> float:
    text = text.strip()
    if not text:
        return math.nan  # a gap: scored/forecast from what came before
    try:
        return float(text)
    except ValueError:
        raise SeriesFileError(f"{name}: line {line_no}: value {text!r} is not a number") from None


def write_csv(
    handle: IO[str], header: Sequence[str], columns: Sequence[Sequence[object] | np.ndarray]
) -> None:
    """Write columns (equal lengths) under ``header``; floats in their shortest exact form."""
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(header)
    for row in zip(*columns, strict=True):
        writer.writerow(_cell(v) for v in row)


def _cell(value: object) -> str:
    if isinstance(value, float | np.floating):
        f = float(value)
        return "" if math.isnan(f) else repr(f)
    return str(value)
