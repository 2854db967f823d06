"""`keiko detect` end to end: the real CLI on CSV files."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

KEIKO = [sys.executable, "-m", "keiko.cli"]


def _series(n: int = 600, spike_at: int = 450, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    times = 1_700_000_000 + 300.0 * np.arange(n)
    values = 50 + rng.normal(0, 2, n)
    values[spike_at] += 40
    return times, values


def _write(path: Path, stamps: list[str], values: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value"])
        w.writerows(zip(stamps, (repr(float(v)) for v in values), strict=True))


def _detect(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KEIKO, "detect", *args], capture_output=True, text=True, input=stdin, timeout=60
    )


def _read(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_scores_every_row_in_order_and_finds_the_spike(tmp_path: Path) -> None:
    times, values = _series()
    stamps = [datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S") for t in times]
    _write(tmp_path / "in.csv", stamps, values)
    done = _detect(str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"))
    assert done.returncode == 0, done.stderr
    rows = _read(tmp_path / "out.csv")
    assert rows[0] == ["timestamp", "value", "anomaly_score"]
    assert [r[0] for r in rows[1:]] == stamps  # input timestamps, in input order
    scores = np.array([float(r[2]) for r in rows[1:]])
    assert np.all((scores >= 0) & (scores <= 1))
    assert int(np.argmax(scores)) == 450
    assert scores[450] > 0.9 and np.all(scores[:50] == 0)  # warm-up
    assert "600 rows scored" in done.stderr and "line 452" in done.stderr


def test_a_row_never_sees_later_rows(tmp_path: Path) -> None:
    times, values = _series()
    stamps = [str(int(t)) for t in times]  # unix seconds
    _write(tmp_path / "full.csv", stamps, values)
    _write(tmp_path / "head.csv", stamps[:455], values[:455])
    _detect(str(tmp_path / "full.csv"), "-o", str(tmp_path / "full_out.csv"), "-q")
    _detect(str(tmp_path / "head.csv"), "-o", str(tmp_path / "head_out.csv"), "-q")
    full, head = _read(tmp_path / "full_out.csv"), _read(tmp_path / "head_out.csv")
    assert full[: len(head)] == head


def test_iso_timestamps_from_stdin_to_stdout() -> None:
    times, values = _series(n=120, spike_at=100)
    stamps = [datetime.fromtimestamp(t, UTC).isoformat() for t in times]
    text = "timestamp,value,extra\n" + "".join(
        f"{s},{float(v)!r},x\n" for s, v in zip(stamps, values, strict=True)
    )
    done = _detect("-", "-q", stdin=text)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 121 and lines[1].startswith(stamps[0] + ",")
    assert done.stderr == ""


def test_millisecond_timestamps_score_as_the_same_seconds(tmp_path: Path) -> None:
    # Prometheus and Grafana exports write unix milliseconds; as seconds the daily and
    # weekly baselines would be on a clock a thousand times too slow
    times, values = _series()
    _write(tmp_path / "s.csv", [str(int(t)) for t in times], values)
    _write(tmp_path / "ms.csv", [str(int(t) * 1000) for t in times], values)
    _detect(str(tmp_path / "s.csv"), "-o", str(tmp_path / "s_out.csv"), "-q")
    done = _detect(str(tmp_path / "ms.csv"), "-o", str(tmp_path / "ms_out.csv"))
    assert done.returncode == 0, done.stderr
    assert "timestamps read as unix milliseconds" in done.stderr
    seconds, millis = _read(tmp_path / "s_out.csv"), _read(tmp_path / "ms_out.csv")
    assert [r[2] for r in seconds] == [r[2] for r in millis]  # the same scores
    assert millis[1][0] == str(int(times[0]) * 1000)  # timestamps written back as read


def test_a_spreadsheets_byte_order_mark_is_not_part_of_the_header(tmp_path: Path) -> None:
    text = "\ufefftimestamp,value\r\n1700000000,1\r\n1700000300,2\r\n"
    (tmp_path / "excel.csv").write_text(text, encoding="utf-8", newline="")
    from_file = _detect(str(tmp_path / "excel.csv"), "-o", "-", "-q")
    from_stdin = _detect("-", "-o", "-", "-q", stdin=text)
    for done in (from_file, from_stdin):
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == "timestamp,value,anomaly_score"
        assert len(done.stdout.splitlines()) == 3


def test_repeated_timestamps_are_scored_and_said(tmp_path: Path) -> None:
    times, values = _series(n=200, spike_at=150)
    _write(tmp_path / "dup.csv", [str(int(t)) for t in np.repeat(times[:100], 2)], values)
    done = _detect(str(tmp_path / "dup.csv"), "-o", str(tmp_path / "out.csv"))
    assert done.returncode == 0, done.stderr
    assert "100 rows repeat an earlier row's timestamp" in done.stderr
    assert len(_read(tmp_path / "out.csv")) == 201


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,val\n1,2\n", "expected columns 'timestamp' and 'value'"),
        ("timestamp,value\n1700000000,1\nyesterday,2\n", "line 3: timestamp 'yesterday'"),
        ("timestamp,value\n1700000000,abc\n", "line 2: value 'abc' is not a number"),
        ("", "the file is empty"),
    ],
)
def test_bad_input_exits_2_naming_the_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "bad.csv").write_text(content)
    done = _detect(str(tmp_path / "bad.csv"), "-o", str(tmp_path / "out.csv"))
    assert done.returncode == 2
    assert message in done.stderr and "bad.csv" in done.stderr
    assert not (tmp_path / "out.csv").exists()  # nothing written for bad input


def test_missing_file_exits_2() -> None:
    done = _detect("/nonexistent/in.csv")
    assert done.returncode == 2 and "cannot read" in done.stderr
