"""Excursions to events: one event per excursion entry, a per-series cooldown, the JSON shape;
the config's metric filter and its errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pydantic import ValidationError

from analytics.anomaly.config import AnomalyConfig, MetricFilter
from analytics.anomaly.events import ExcursionTracker, anomaly_event, encode_event
from analytics.anomaly.export import ScoreBoard
from analytics.anomaly.scores import Scores
from analytics.series.types import SeriesInfo, SeriesKind


def entries(
    tracker: ExcursionTracker, series: list[int], times: list[float], p: list[float]
) -> list[tuple[int, int]]:
    found = tracker.update(np.array(series), np.array(times, float), np.array(p, float))
    return [(e.index, e.series) for e in found]


def test_one_event_per_excursion_across_batches() -> None:
    t = ExcursionTracker(threshold=0.9, cooldown=0)
    # series 0 enters at index 1 and stays in; series 1 enters at index 3
    assert entries(t, [0, 0, 1, 1, 0], [1, 2, 1, 2, 3], [0.1, 0.95, 0.2, 0.99, 0.97]) == [
        (1, 0),
        (3, 1),
    ]
    # still inside in the next batch: no new event; series 1 leaves then re-enters
    assert entries(t, [0, 1, 1], [4, 3, 4], [0.99, 0.1, 0.95]) == [(2, 1)]


def test_cooldown_by_point_time() -> None:
    t = ExcursionTracker(threshold=0.9, cooldown=100)
    assert entries(t, [5, 5, 5], [0, 10, 20], [0.95, 0.1, 0.95]) == [(0, 5)]  # 2nd in cooldown
    assert entries(t, [5, 5], [99, 101], [0.1, 0.95]) == [(1, 5)]


def test_forget_and_snapshot() -> None:
    t = ExcursionTracker(threshold=0.9, cooldown=1000)
    entries(t, [0, 2000], [1, 1], [0.95, 0.95])  # grows past the initial capacity
    copy = ExcursionTracker(threshold=0.9, cooldown=1000)
    copy.restore(t.snapshot())
    assert entries(copy, [0, 2000], [2, 2], [0.1, 0.1]) == []
    assert entries(copy, [0], [3], [0.95]) == []  # cooldown survived the round trip
    copy.forget(np.array([0]))
    assert entries(copy, [0], [4], [0.95]) == [(0, 0)]


def test_event_json() -> None:
    info = SeriesInfo(
        3, 'cpu{"service.name"="api"}', "cpu", "api", SeriesKind.GAUGE, "1", {"service.name": "api"}
    )
    scores = Scores(np.array([0.999]), np.array([0.1]), np.array([np.nan]), np.array([np.nan]))
    event = anomaly_event(info, 1_700_000_000.5, 9.0, scores, 0, 0.99)
    assert event["type"] == "anomaly" and event["series"] == info.key
    assert event["time"] == "2023-11-14T22:13:20.500000Z"
    assert event["time_unix_nano"] == 1_700_000_000_500_000_000
    assert event["expected_range"] == [0.1, None]  # NaN is not JSON
    assert event["onset"] == event["time"]  # no onset from the detector: the first point
    assert json.loads(encode_event(event)) == event
    again = anomaly_event(info, 1_700_000_000.5, 9.0, scores, 0, 0.99)
    assert (
        event["id"] == again["id"] != anomaly_event(info, 1_700_000_010, 9.0, scores, 0, 0.99)["id"]
    )


def test_score_board_is_bounded() -> None:
    infos = {i: SeriesInfo(i, f"k{i}", "m", "s", SeriesKind.GAUGE) for i in range(5)}
    board = ScoreBoard(threshold=0.9, max_series=2, hold=10)
    board.update(
        np.array([0, 1, 2]), np.array([1.0, 1, 1]), np.array([0.95, 0.97, 0.5]), infos.__getitem__
    )
    assert set(board.shown) == {0, 1}
    board.update(np.array([3]), np.array([2.0]), np.array([0.99]), infos.__getitem__)
    assert set(board.shown) == {1, 3} and board.not_shown == 1  # the lowest made room
    board.update(np.array([1]), np.array([3.0]), np.array([0.2]), infos.__getitem__)
    assert board.shown[1].score == 0.2  # a shown series follows its latest score
    board.update(np.array([4]), np.array([11.5]), np.array([0.1]), infos.__getitem__)
    assert set(board.shown) == {3}  # series 1 held 10 s after its last high point only


def test_metric_filter() -> None:
    keep = MetricFilter(["http.*", "re:db\\.(reads|writes)"], ["http.client.*", "keiko_*"])
    assert keep("http.server.duration:p99")  # by the base name
    assert keep("db.reads") and not keep("db.deletes")
    assert not keep("http.client.duration") and not keep("keiko_anomaly_score")
    everything = MetricFilter([], AnomalyConfig().exclude)
    assert everything("keiko.ebpf.runq.latency:p99") and not everything("keiko_requests_total")


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"threshold": 1.5}, "threshold"),
        ({"include": ["re:("]}, "drop the 're:' prefix"),
        ({"checkpoint": {"bucket": "a.b"}}, "A-Z, a-z, 0-9"),
        ({"checkpoint": {"chunk_bytes": "2MiB"}}, "chunk_bytes"),
        ({"max_serie": 3}, "max_serie"),
    ],
)
def test_config_errors_name_the_key(given: dict[str, object], says: str) -> None:
    with pytest.raises(ValidationError, match=r"(?s)" + says.replace("(", r"\(")):
        AnomalyConfig.model_validate(given)


def test_config_defaults() -> None:
    c = AnomalyConfig.model_validate({"checkpoint": {"interval": "30s"}, "cooldown": "5m"})
    assert c.enabled and c.threshold == 0.79 and c.max_series == 100_000
    assert c.checkpoint.interval == 30 and c.cooldown == 300 and math.isfinite(c.idle_expiry)
