"""Threshold rules: pending while `for_duration` has not passed, firing after, resolved
when the condition stops holding or the series goes stale; matchers, rates of cumulative
sums, the series cap, and the event shape."""

from __future__ import annotations

from alerting.slo.config import ThresholdRuleConfig
from alerting.slo.decode import DeltaTracker, Point
from alerting.slo.rules import RuleBook, threshold_event

S = 10**9
T0 = 1_800_000_000 * S
QUEUE = "queue.depth"


def rule(**kw: object) -> ThresholdRuleConfig:
    return ThresholdRuleConfig.model_validate({"metric": QUEUE, "threshold": 100, **kw})


def gauge(t_ns: int, value: float, **attrs: str) -> Point:
    a = {"service.name": "worker", "queue": "jobs", **attrs}
    return Point(QUEUE, "gauge", a, t_ns, 0, value)


def book(stale_s: float = 300, cap: int = 100, **rules: ThresholdRuleConfig) -> RuleBook:
    return RuleBook(rules or {"deep": rule(for_duration="2m")}, stale_s, cap)


def test_pending_then_firing_after_for_then_resolved() -> None:
    b = book()
    b.observe(gauge(T0, 150), None)
    assert b.evaluate(T0) == []  # holds, but not for 2m: pending
    assert b.counts() == {"deep": (1, 0)}
    b.observe(gauge(T0 + 60 * S, 180), None)
    assert b.evaluate(T0 + 60 * S) == []
    b.observe(gauge(T0 + 120 * S, 170), None)
    (fired,) = b.evaluate(T0 + 120 * S)
    assert fired.firing and fired.series.value == 170
    assert b.counts() == {"deep": (0, 1)}
    assert b.evaluate(T0 + 150 * S) == []  # no change: no event
    b.observe(gauge(T0 + 180 * S, 20), None)
    (resolved,) = b.evaluate(T0 + 180 * S)
    assert not resolved.firing and resolved.reason == "cleared"


def test_a_dip_while_pending_restarts_the_for_clock() -> None:
    b = book()
    b.observe(gauge(T0, 150), None)
    b.observe(gauge(T0 + 90 * S, 50), None)  # not holding: back to inactive, no event
    b.observe(gauge(T0 + 100 * S, 150), None)
    assert b.evaluate(T0 + 200 * S) == []  # held for 100 s < 2m
    assert len(b.evaluate(T0 + 220 * S)) == 1


def test_a_stale_series_is_resolved_and_forgotten() -> None:
    b = book(stale_s=300, deep=rule())  # for 0: fires at once
    b.observe(gauge(T0, 150), None)
    assert [c.firing for c in b.evaluate(T0)] == [True]
    assert b.evaluate(T0 + 299 * S) == []
    (gone,) = b.evaluate(T0 + 301 * S)
    assert not gone.firing and gone.reason == "stale"
    assert b.series["deep"] == {}
    b.observe(gauge(T0 + 400 * S, 50), None)  # a quiet stale pending series: no event
    assert b.evaluate(T0 + 800 * S) == [] and b.series["deep"] == {}


def test_matchers_ops_and_one_series_per_attribute_set() -> None:
    b = book(low=rule(op="<=", threshold=0, matchers={"queue": "jobs"}))
    b.observe(gauge(T0, 0), None)
    b.observe(gauge(T0, 0, queue="mail"), None)  # not matched
    b.observe(gauge(T0, 0, **{"service.name": "other"}), None)  # matched: its own series
    changes = b.evaluate(T0)
    assert sorted(c.series.attributes["service.name"] for c in changes) == ["other", "worker"]


def test_rate_of_a_cumulative_sum() -> None:
    r = rule(metric="http.errors", threshold=5, op=">", rate=True)
    b = RuleBook({"errors": r}, 300, 100)
    tracker = DeltaTracker(fresh_s=300, max_series=100)
    attrs = {"service.name": "api"}

    def point(t_s: int, value: float) -> None:
        p = Point("http.errors", "sum", dict(attrs), T0 + t_s * S, T0 - 3600 * S, value, True)
        b.observe(p, tracker.update(p))

    point(0, 1000)  # an old series: a baseline, no rate yet
    assert b.series["errors"] == {}
    point(60, 1120)  # 2/s
    assert b.evaluate(T0 + 60 * S) == []
    point(120, 1600)  # 8/s > 5
    (fired,) = b.evaluate(T0 + 120 * S)
    assert fired.firing and fired.series.value == 8.0
    point(180, 100)  # the counter restarted at T0 - 3600: 100 since the previous point
    (resolved,) = b.evaluate(T0 + 180 * S)
    assert not resolved.firing and tracker.resets == 1


def test_rate_rules_refuse_gauges_and_histograms_are_not_compared() -> None:
    b = RuleBook({"r": rule(rate=True), "v": rule()}, 300, 100)
    b.observe(gauge(T0, 500), None)
    b.observe(Point(QUEUE, "histogram", {}, T0, 0, 5.0, False, (5,), ()), None)
    assert b.dropped["rate_of_non_sum"] == 2 and b.dropped["histogram"] == 1
    assert b.counts() == {"r": (0, 0), "v": (1, 0)}


def test_series_per_rule_are_capped_and_counted() -> None:
    b = book(cap=2, deep=rule())
    for q in ("a", "b", "c", "d"):
        b.observe(gauge(T0, 500, queue=q), None)
    assert len(b.series["deep"]) == 2 and b.dropped["max_series"] == 2


def test_threshold_event_shape_and_checkpoint_round_trip() -> None:
    r = rule(labels={"severity": "ticket"}, annotations={"summary": "queue deep"})
    b = book(deep=r)
    b.observe(gauge(T0, 150), None)
    (change,) = b.evaluate(T0)
    event = threshold_event(b, change)
    assert event["type"] == "threshold" and event["status"] == "firing"
    assert event["id"].startswith("rule:deep:") and len(event["id"]) == len("rule:deep:") + 16
    assert event["series"] == 'queue.depth{queue="jobs",service.name="worker"}'
    assert event["labels"] == {
        "alertname": "deep",
        "queue": "jobs",
        "service_name": "worker",  # label names: letters, digits and _
        "severity": "ticket",
    }
    assert event["annotations"] == {"summary": "queue deep"}
    assert (event["value"], event["threshold"], event["op"]) == (150, 100, ">")
    assert event["time"].startswith("2027-01-15T08:00:00") and event["time_unix_nano"] == T0
    again = book(deep=r)
    assert again.restore(b.to_json()) == 1
    b.observe(gauge(T0 + S, 0), None)
    again.observe(gauge(T0 + S, 0), None)
    (ours,), (theirs,) = b.evaluate(T0 + S), again.evaluate(T0 + S)
    assert threshold_event(b, ours) == threshold_event(again, theirs)  # same id: resolves it
