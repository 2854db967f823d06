"""`keiko rca` end to end: the real CLI on case directories the tests write."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analytics.rca.caseio import write_case
from analytics.rca.model import Case
from analytics.traces.spans import SpanBatch

KEIKO = [sys.executable, "-m", "keiko.cli"]
T0 = 1_700_000_000.0
AT = T0 + 300  # five minutes of normal behaviour, then the fault
SERVICES = ("front-end", "cart", "catalogue", "payment")


def _case(culprit: str = "cart") -> Case:
    """Every service's cpu and latency noisy around a level; ``culprit``'s cpu quadruples
    from AT on and front-end's latency (the symptom) rises with it."""
    rng = np.random.default_rng(11)
    times = T0 + 10.0 * np.arange(60)
    after = times >= AT
    parts = []
    for service in SERVICES:
        for metric, level in (("cpu", 0.2), ("latency", 0.05)):
            values = level * (1 + 0.05 * rng.normal(size=len(times)))
            if service == culprit and metric == "cpu":
                values[after] *= 4
            if service == "front-end" and metric == "latency":
                values[after] *= 1.5
            parts.append(
                pd.DataFrame(
                    {
                        "time": times,
                        "service": service,
                        "metric": metric,
                        "value": values,
                        "instance": f"{service}-7d9f",
                    }
                )
            )
    graph = [("front-end", s) for s in SERVICES[1:]]
    return Case(pd.concat(parts, ignore_index=True), graph=graph)


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("case")
    write_case(root, _case())
    return root


def _rca(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KEIKO, "rca", *args], capture_output=True, text=True, timeout=60)


def _json(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert isinstance(answer, list)
    return answer


def test_the_service_whose_cpu_jumps_ranks_first_in_the_table(case_dir: Path) -> None:
    done = _rca(str(case_dir), "--at", str(AT))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["rank", "service", "instance", "score"]
    assert lines[1].split()[:3] == ["1", "cart", "cart-7d9f"]
    assert any("cpu" in line for line in lines[2:5])  # its evidence names the series
    summary = done.stderr.strip().splitlines()[-1]
    assert summary.startswith("read 8 series (480 points) from 4 services, 0 spans, 3 edges;")
    assert "ranked in" in summary


def test_json_is_a_list_best_first_with_service_score_and_evidence(case_dir: Path) -> None:
    answer = _json(_rca(str(case_dir), "--at", str(AT), "--json"))
    assert answer[0]["service"] == "cart"
    assert 1 < len(answer) <= 5
    for item in answer:
        assert isinstance(item["service"], str) and item["service"] in SERVICES
        assert isinstance(item["score"], int | float)
        assert isinstance(item["evidence"], list)
        assert all({"kind", "summary", "weight"} <= set(e) for e in item["evidence"])
    assert answer[0]["evidence"], "the top candidate says why"
    scores = [item["score"] for item in answer]
    assert scores == sorted(scores, reverse=True)


def test_top_is_honoured_and_iso_times_mean_the_same_instant(case_dir: Path) -> None:
    iso = datetime.fromtimestamp(AT, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    one = _json(_rca(str(case_dir), "--at", iso, "--json", "--top", "1"))
    assert [c["service"] for c in one] == ["cart"]
    two = _json(_rca(str(case_dir), "--at", str(AT), "--json", "--top", "2"))
    assert len(two) == 2 and two[0] == one[0]


def test_a_different_culprit_changes_the_answer(tmp_path: Path) -> None:
    write_case(tmp_path, _case(culprit="payment"))
    assert _json(_rca(str(tmp_path), "--at", str(AT), "--json"))[0]["service"] == "payment"


def test_spans_are_read_and_counted_and_a_bad_span_file_exits_2(tmp_path: Path) -> None:
    case = _case()
    end = int(AT * 1e9)
    case.spans = SpanBatch(
        trace_id=[b"\x01" * 16] * 2,
        span_id=[b"\x02" * 8, b"\x03" * 8],
        parent_id=[b"", b"\x02" * 8],
        service=["front-end", "cart"],
        name=["GET /cart", "GET /items"],
        kind=np.array([2, 2], np.int8),
        start_ns=np.array([end, end + 1000], np.int64),
        end_ns=np.array([end + 9000, end + 8000], np.int64),
        error=np.array([False, False]),
        peer=["", ""],
        instance=["front-end-7d9f", "cart-7d9f"],
        node=["n1", "n1"],
    )
    write_case(tmp_path, case)
    done = _rca(str(tmp_path), "--at", str(AT), "--json")
    assert _json(done)[0]["service"] == "cart"
    assert "from 4 services, 2 spans, 3 edges" in done.stderr
    (tmp_path / "spans.csv").write_text("trace_id,span_id\n")
    bad = _rca(str(tmp_path), "--at", str(AT))
    assert bad.returncode == 2 and "spans.csv: line 1:" in bad.stderr


def test_a_missing_column_exits_2_naming_file_column_and_fix(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text("time,service,metric\n1,a,cpu\n")
    done = _rca(str(tmp_path), "--at", "1")
    assert done.returncode == 2
    assert "metrics.csv: line 1: column 'value' missing" in done.stderr
    assert "the header must be 'time,service,metric,value[,instance]'" in done.stderr
    assert done.stdout == ""


def test_bad_times_exit_2(case_dir: Path, tmp_path: Path) -> None:
    early = _rca(str(case_dir), "--at", str(T0))
    assert early.returncode == 2 and "no normal period" in early.stderr
    late = _rca(str(case_dir), "--at", str(T0 + 10_000))
    assert late.returncode == 2 and "after the last metric point" in late.stderr
    garbage = _rca(str(case_dir), "--at", "yesterday")
    assert garbage.returncode == 2 and "'yesterday'" in garbage.stderr
    missing = _rca(str(tmp_path / "nowhere"), "--at", str(AT))
    assert missing.returncode == 2 and "not a directory" in missing.stderr


def test_help_explains_the_case_directory_and_the_output() -> None:
    done = _rca("--help")
    assert done.returncode == 0
    for words in ("metrics.csv", "graph.csv", "spans.json", "ISO 8601", "best first", "--top"):
        assert words in done.stdout
