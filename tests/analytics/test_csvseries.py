"""The offline tools' CSV readers: a request log read as a rate series (``--arrivals``)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from analytics.csvseries import SeriesFileError, read_arrivals_csv, read_input, read_series_csv

LOG = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:17:03.9799600,4808,10
2023-11-16 18:17:11.0000000,3180,8
2023-11-16 18:17:12.5000000,100,8
2023-11-16 18:17:19.9999999,100,8
2023-11-16 18:17:41.0000000,100,8
2023-11-16 18:17:52.0000000,100,8
"""
START = 1_700_158_620.0  # 2023-11-16 18:17:00 UTC


def test_a_request_log_is_counted_per_step_without_the_partial_ends() -> None:
    series = read_arrivals_csv("trace.csv", 10.0, io.StringIO(LOG))
    # steps of 10 s from 18:17:00: 1, 3, 0, 0, 1, 1 requests; the first and the last are
    # partial (the log starts and ends inside them), the empty ones are a rate of 0
    assert series.times.tolist() == [START + 10, START + 20, START + 30, START + 40]
    assert series.values.tolist() == [0.3, 0.0, 0.0, 0.1]
    assert series.raw_timestamps == ["1700158630", "1700158640", "1700158650", "1700158660"]
    assert any("6 requests (one per row) counted into 4 steps of 10 s" in n for n in series.notes)
    assert not any("repeat" in n for n in series.notes)  # requests may arrive together


def test_rows_out_of_order_and_millisecond_stamps_count_the_same() -> None:
    rows = [1_700_000_000_500 + 1000 * k for k in (9, 0, 5, 1, 30, 2, 31)]  # ms, shuffled
    text = "timestamp\n" + "".join(f"{ms}\n" for ms in rows)
    series = read_arrivals_csv("-", 5.0, io.StringIO(text))
    assert series.times[0] == 1_700_000_005.0 and series.values[0] == pytest.approx(2 / 5)
    assert len(series) == 5 and any("milliseconds" in n for n in series.notes)


def test_too_few_steps_and_a_missing_column_name_the_fix() -> None:
    with pytest.raises(SeriesFileError, match="span fewer than 4 steps of 60 s; count them"):
        read_arrivals_csv("x.csv", 60.0, io.StringIO(LOG))
    with pytest.raises(SeriesFileError, match="expected a column 'timestamp'"):
        read_arrivals_csv("x.csv", 1.0, io.StringIO("time,value\n1,2\n"))


def test_a_request_log_read_as_a_series_points_to_arrivals() -> None:
    with pytest.raises(SeriesFileError, match="one row per request is read with --arrivals"):
        read_series_csv("trace.csv", io.StringIO(LOG))
    with pytest.raises(SeriesFileError) as plain:
        read_series_csv("x.csv", io.StringIO("time,value\n1,2\n"))
    assert "--arrivals" not in str(plain.value)  # no timestamp column: not a request log


def test_read_input_reads_a_log_only_with_arrivals(tmp_path: Path) -> None:
    log = tmp_path / "trace.csv"
    log.write_text(LOG)
    assert read_input(log, 10.0).values.tolist() == [0.3, 0.0, 0.0, 0.1]
    with pytest.raises(SeriesFileError, match="--arrivals"):
        read_input(log)
    series = tmp_path / "series.csv"
    series.write_text("timestamp,value\n1,1.5\n2,2.5\n")
    assert read_input(series).values.tolist() == [1.5, 2.5]
