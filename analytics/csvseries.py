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
from collections.abc import Iterable, Sequence
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
    name = str(path)
    if name == "-" and stream is None:
        return _read("<stdin>", sys.stdin)
    if stream is not None:
        return _read(name, stream)
    try:
        # utf-8-sig: spreadsheet programs start their "CSV UTF-8" files with a byte-order mark
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return _read(name, handle)
    except OSError as exc:
        raise SeriesFileError(f"{name}: cannot read: {exc.strerror or exc}") from None


def _read(name: str, handle: Iterable[str]) -> SeriesCSV:
    reader = csv.reader(handle)
    header = next(reader, None)
    if header is None:
        raise SeriesFileError(f"{name}: the file is empty; expected a header 'timestamp,value'")
    columns = [c.strip().lstrip("\ufeff").lower() for c in header]  # a BOM on stdin too
    if "timestamp" not in columns or "value" not in columns:
        raise SeriesFileError(
            f"{name}: line 1: header is {','.join(header)!r}; expected columns "
            "'timestamp' and 'value' (e.g. 'timestamp,value')"
        )
    t_col, v_col = columns.index("timestamp"), columns.index("value")
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
    if repeats:
        notes.append(
            f"{repeats} rows repeat an earlier row's timestamp (detect scores every row in "
            "file order; forecast and scale-sim average the rows of a step)"
        )
    return SeriesCSV(raw, stamps, np.asarray(values, np.float64), tuple(notes))


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
