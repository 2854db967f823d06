"""Case directories: round trips, every error, and the converters on real cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics.rca import cases as labelled
from analytics.rca.caseio import CaseError, CaseWarning, read_case, write_case
from analytics.rca.cases import petshop, sockshop
from analytics.rca.model import Case
from analytics.traces.spans import SpanBatch

DATA = Path("/work/shared/data/rca")
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"{DATA} (public RCA data) is absent")


def _metrics(with_instance: bool) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 40
    return pd.DataFrame(
        {
            "time": 1_700_000_000.25 + np.arange(n, dtype=float),
            "service": np.where(np.arange(n) % 2 == 0, "cart", "front-end").astype(object),
            "metric": np.array(["cpu"] * n, dtype=object),
            "value": rng.normal(size=n) * 1e-3 + 0.1,  # digits a sloppy writer would lose
            "instance": np.array(
                [f"pod-{i % 3}" if with_instance else "" for i in range(n)], dtype=object
            ),
        }
    )


def _write(path: Path, text: str) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.csv").write_text(text)
    return path


@pytest.mark.parametrize("with_instance", [True, False])
def test_round_trip_keeps_every_point_and_the_graph(tmp_path: Path, with_instance: bool) -> None:
    metrics = _metrics(with_instance)
    write_case(tmp_path / "c", Case(metrics, graph=[("front-end", "cart"), ("cart", "db")]))
    header = (tmp_path / "c" / "metrics.csv").read_text().splitlines()[0]
    assert header == (
        "time,service,metric,value,instance" if with_instance else "time,service,metric,value"
    )
    back = read_case(tmp_path / "c")
    assert back.graph == [("front-end", "cart"), ("cart", "db")]
    assert back.spans is None
    assert list(back.metrics.columns) == ["time", "service", "metric", "value", "instance"]
    assert back.metrics["time"].dtype == np.float64 and back.metrics["value"].dtype == np.float64
    np.testing.assert_array_equal(back.metrics["value"].to_numpy(), metrics["value"].to_numpy())
    np.testing.assert_array_equal(back.metrics["time"].to_numpy(), metrics["time"].to_numpy())
    for name in ("service", "metric", "instance"):
        assert back.metrics[name].tolist() == metrics[name].tolist()


def test_rewriting_without_a_graph_removes_the_old_one(tmp_path: Path) -> None:
    write_case(tmp_path, Case(_metrics(False), graph=[("a", "b")]))
    write_case(tmp_path, Case(_metrics(False)))
    assert read_case(tmp_path).graph == []


def test_rows_without_a_number_are_dropped_and_counted(tmp_path: Path) -> None:
    text = "time,service,metric,value\n1,a,cpu,1.5\n2,a,cpu,oops\n3,a,cpu,\n4, a ,cpu,2\n5,,cpu,3\n"
    with pytest.warns(CaseWarning, match=r"dropped 3 of 5 rows .*first at line 3"):
        case = read_case(_write(tmp_path, text))
    assert case.metrics["value"].tolist() == [1.5, 2.0]
    assert case.metrics["service"].tolist() == ["a", "a"]  # blanks around names stripped
    assert case.metrics["instance"].tolist() == ["", ""]


def test_a_missing_metrics_file_says_what_a_case_holds(tmp_path: Path) -> None:
    with pytest.raises(CaseError, match=r"metrics\.csv: missing; .*'time,service,metric,value"):
        read_case(tmp_path)


def test_a_path_that_is_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(CaseError, match="not a directory"):
        read_case(tmp_path / "nope")


def test_a_missing_column_is_named_with_the_expected_header(tmp_path: Path) -> None:
    with pytest.raises(CaseError, match=r"line 1: column 'value' missing .*'time,service,metric,"):
        read_case(_write(tmp_path, "time,service,metric\n1,a,cpu\n"))


def test_an_empty_file_and_a_file_without_rows(tmp_path: Path) -> None:
    with pytest.raises(CaseError, match=r"metrics\.csv: the file is empty; expected a header"):
        read_case(_write(tmp_path / "a", ""))
    with pytest.raises(CaseError, match="has a header but no rows"):
        read_case(_write(tmp_path / "b", "time,service,metric,value\n"))


def test_a_time_that_is_not_a_number_names_its_line(tmp_path: Path) -> None:
    text = "time,service,metric,value\n1,a,cpu,1\n2,a,cpu,1\n2023-01-01,a,cpu,1\n"
    with pytest.raises(CaseError, match=r"line 4: column 'time' is '2023-01-01', not a number"):
        read_case(_write(tmp_path, text))


def test_graph_errors_name_the_line_and_column(tmp_path: Path) -> None:
    root = _write(tmp_path, "time,service,metric,value\n1,a,cpu,1\n")
    (root / "graph.csv").write_text("from,to\na,b\n")
    with pytest.raises(CaseError, match=r"graph\.csv: line 1: column 'source', 'target' missing"):
        read_case(root)
    (root / "graph.csv").write_text("source,target\na,b\nb,\n")
    with pytest.raises(CaseError, match=r"graph\.csv: line 3: source and target must both"):
        read_case(root)
    (root / "graph.csv").write_text("source,target\na,b\na,b\nb,c\n")
    assert read_case(root).graph == [("a", "b"), ("b", "c")]


def _spans() -> SpanBatch:
    return SpanBatch(
        trace_id=[bytes.fromhex("0af7651916cd43dd8448eb211c80319c")] * 2,
        span_id=[bytes.fromhex("b7ad6b7169203331"), bytes.fromhex("00f067aa0ba902b7")],
        parent_id=[b"", bytes.fromhex("b7ad6b7169203331")],
        service=["front-end", "cart"],
        name=["GET /cart", "SELECT"],
        kind=np.array([2, 3], np.int8),
        start_ns=np.array([1_700_000_000_000_000_000, 1_700_000_000_100_000_000], np.int64),
        end_ns=np.array([1_700_000_000_900_000_000, 1_700_000_000_800_000_000], np.int64),
        error=np.array([False, True]),
        peer=["", "mysql"],
        instance=["fe-1", "cart-2"],
        node=["n1", "n1"],
    )


def test_spans_round_trip_and_span_file_errors(tmp_path: Path) -> None:
    write_case(tmp_path, Case(_metrics(False), spans=_spans()))
    assert (tmp_path / "spans.csv").exists()
    back = read_case(tmp_path).spans
    assert back is not None and len(back) == 2
    assert back.span_id == _spans().span_id and back.parent_id == _spans().parent_id
    assert back.error.tolist() == [False, True] and back.service == ["front-end", "cart"]
    np.testing.assert_array_equal(back.end_ns, _spans().end_ns)
    (tmp_path / "spans.json").write_text("{}")
    with pytest.raises(CaseError, match=r"both spans\.csv and spans\.json"):
        read_case(tmp_path)
    (tmp_path / "spans.json").unlink()
    (tmp_path / "spans.csv").write_text("trace_id,span_id\nab,cd\n")
    with pytest.raises(CaseError, match=r"spans\.csv"):
        read_case(tmp_path)


@needs_data
def test_sockshop_case_follows_the_rcaeval_protocol(tmp_path: Path) -> None:
    item = sockshop.convert(DATA / "rcd-sockshop" / "carts-cpu" / "1")
    assert (item.truth, item.group, item.at) == ("carts", ("cpu",), 1652812675.0)
    m = item.case.metrics
    assert (
        m.loc[m["time"] < item.at, "time"].max() == item.at - 1
    )  # normal re-timed to end 1 s before
    assert set(m["metric"]) == {"cpu", "mem", "lod", "lat_90"}  # lat_50 and lat_99 dropped
    assert m.groupby(["service", "metric"]).ngroups == 13 * 2 + 3 * 2
    assert {"carts-db", "queue-master", "front-end"} <= set(m["service"])
    assert (m["time"] < item.at).sum() == 292 * 32 and (m["time"] >= item.at).sum() == 282 * 32
    assert sockshop.split_column("carts_lat_90") == ("carts", "lat_90")
    assert sockshop.truth_service("carts-db") == "carts"
    back = labelled.load(labelled.save(tmp_path, item))
    assert (back.truth, back.at, back.group) == (item.truth, item.at, item.group)
    assert len(back.case.metrics) == len(m)


@needs_data
def test_petshop_issue_follows_the_upstream_protocol(tmp_path: Path) -> None:
    scenario = DATA / "petshop" / "dataset" / "low_traffic"
    graph = petshop.read_graph(scenario / "graph.csv")
    assert ("PetSite", "PetSearch_AWS::ECS::Fargate") in graph  # row calls column
    assert not [e for e in graph if e[1] == "PetSite"]  # the entry point is nobody's callee
    issue = scenario / "test" / "issue_0"
    item = petshop.convert(issue, petshop.read_wide(scenario / "noissue" / "metrics.csv"), graph)
    target = json.loads((issue / "target.json").read_text())
    assert item.truth == "petInfo_AWS::DynamoDB::Table" and item.group == ("low_traffic", "latency")
    assert item.at == 1681857720.0  # the issue window's third row
    assert target["target"]["timestamp"] < item.at <= target["target"]["timestamp"] + 300
    m = item.case.metrics
    before = m.loc[m["time"] < item.at, "time"]
    assert before.nunique() == 589 + 2 and 1681857120.0 - 300 in set(before)
    assert {"latency_Average", "latency_p90", "requests_Sum", "availability_Average"} <= set(
        m["metric"]
    )
    back = labelled.load(labelled.save(tmp_path, item))
    assert back.case.graph == graph and len(back.case.metrics) == len(m)


@needs_data
def test_petshop_scenarios_without_a_normal_period_are_reported_not_invented() -> None:
    unscorable: list[petshop.Unscorable] = []
    root = DATA / "petshop" / "dataset"
    for scenario in ("temporal_traffic1", "temporal_traffic2"):
        assert not (root / scenario / "noissue" / "metrics.csv").exists()
    scored = list(petshop.cases(root, unscorable))
    assert len(scored) == 52
    assert len(unscorable) == 16
    assert {u.group[0] for u in unscorable} == {"temporal_traffic1", "temporal_traffic2"}
