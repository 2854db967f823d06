"""Inhibition, cases from Alertmanager's docs/configuration.md (``<inhibit_rule>``) and
inhibit/inhibit.go (``hasEqual`` with ``excludeTwoSidedMatch``)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from alerting.inhibit import Inhibitor
from alerting.model import Alert
from alerting.routing.config import InhibitRuleConfig

CRIT_MUTES_WARN = {
    "source_matchers": ['severity="critical"'],
    "target_matchers": ['severity="warning"'],
    "equal": ["alertname", "cluster"],
}


def inhibitor(*rules: dict[str, Any]) -> Inhibitor:
    return Inhibitor([InhibitRuleConfig.model_validate(r) for r in rules])


def alert(**labels: str) -> Alert:
    return Alert(labels=dict(labels))


# (rule, firing alerts, target labels, index of the inhibiting alert or None)
CASES: list[tuple[dict[str, Any], list[Alert], dict[str, str], int | None]] = [
    # "mute an alert (target) ... if an alert (source) exists that matches another set of
    # matchers", with equal label values
    (
        CRIT_MUTES_WARN,
        [alert(alertname="Down", cluster="a", severity="critical")],
        {"alertname": "Down", "cluster": "a", "severity": "warning"},
        0,
    ),
    # "equal: Labels that must have an equal value in the source and target alert"
    (
        CRIT_MUTES_WARN,
        [alert(alertname="Down", cluster="b", severity="critical")],
        {"alertname": "Down", "cluster": "a", "severity": "warning"},
        None,
    ),
    # the target must match the target matchers
    (
        CRIT_MUTES_WARN,
        [alert(alertname="Down", cluster="a", severity="critical")],
        {"alertname": "Down", "cluster": "a", "severity": "info"},
        None,
    ),
    # the source must match the source matchers
    (
        CRIT_MUTES_WARN,
        [alert(alertname="Down", cluster="a", severity="warning")],
        {"alertname": "Down", "cluster": "a", "severity": "warning"},
        None,
    ),
    # "Label values that are missing ... are treated as equal": both lack `cluster`
    (
        CRIT_MUTES_WARN,
        [alert(alertname="Down", severity="critical")],
        {"alertname": "Down", "severity": "warning"},
        0,
    ),
    # ... and missing equals empty (an empty label value is no label in AM)
    (
        CRIT_MUTES_WARN,
        [alert(alertname="Down", cluster="", severity="critical")],
        {"alertname": "Down", "severity": "warning"},
        0,
    ),
    # missing on one side only is not equal
    (
        CRIT_MUTES_WARN,
        [alert(alertname="Down", severity="critical")],
        {"alertname": "Down", "cluster": "a", "severity": "warning"},
        None,
    ),
    # without `equal`, any firing source mutes every target
    (
        {"source_matchers": ['alertname="ClusterDown"'], "target_matchers": ['alertname!=""']},
        [alert(alertname="ClusterDown", cluster="x")],
        {"alertname": "Other", "cluster": "y"},
        0,
    ),
    # the deprecated keys work too (source_match, target_match_re)
    (
        {
            "source_match": {"alertname": "ClusterDown"},
            "target_match_re": {"alertname": ".+"},
            "equal": ["cluster"],
        },
        [alert(alertname="NodeDown", cluster="c"), alert(alertname="ClusterDown", cluster="c")],
        {"alertname": "NodeDown", "cluster": "c"},
        1,
    ),
    # inhibit.go: an alert matching both sides does not inhibit itself...
    (
        {"source_matchers": ['team="db"'], "target_matchers": ['team="db"'], "equal": ["x"]},
        [alert(team="db", alertname="A")],
        {"team": "db", "alertname": "A"},
        None,
    ),
    # ...nor another alert that matches both sides (excludeTwoSidedMatch)...
    (
        {"source_matchers": ['team="db"'], "target_matchers": ['team="db"']},
        [alert(team="db", alertname="A")],
        {"team": "db", "alertname": "B"},
        None,
    ),
    # ...but a one-sided source does inhibit a two-sided target
    (
        {"source_matchers": ['team="db"'], "target_matchers": ['severity="warning"']},
        [alert(team="db", severity="critical")],
        {"team": "db", "severity": "warning"},
        0,
    ),
    # ...and a two-sided source still inhibits a pure target ("may inhibit others")
    (
        {"source_matchers": ['team="db"'], "target_matchers": ['severity="warning"']},
        [alert(team="db", severity="warning")],
        {"team": "web", "severity": "warning"},
        0,
    ),
]


@pytest.mark.parametrize(("rule", "firing", "labels", "by"), CASES)
def test_inhibition(
    rule: dict[str, Any], firing: list[Alert], labels: dict[str, str], by: int | None
) -> None:
    ih = inhibitor(rule)
    expected = None if by is None else firing[by].fp
    assert ih.inhibited(labels, firing) == expected
    # the indexed path (update once, ask many) gives the same answer
    ih2 = inhibitor(rule)
    ih2.update(firing)
    assert ih2.inhibited(labels) == expected


def test_two_sided_target_picks_a_one_sided_source_among_several() -> None:
    ih = inhibitor({"source_matchers": ['team="db"'], "target_matchers": ['severity="warning"']})
    both = alert(team="db", severity="warning")
    source_only = alert(team="db", severity="critical")
    ih.update([both, source_only])
    assert ih.inhibited({"team": "db", "severity": "warning"}) == source_only.fp
    ih.update([both])
    assert ih.inhibited({"team": "db", "severity": "warning"}) is None


def test_any_rule_may_inhibit_and_update_replaces_the_index() -> None:
    rule2 = {"source_matchers": ['alertname="ClusterDown"'], "target_matchers": ['x!=""'],
             "equal": ["cluster"]}  # fmt: skip
    ih = inhibitor(CRIT_MUTES_WARN, rule2)
    down = alert(alertname="ClusterDown", cluster="a")
    ih.update([down])
    assert ih.inhibited({"x": "1", "cluster": "a"}) == down.fp
    assert ih.inhibited({"x": "1", "cluster": "b"}) is None
    ih.update([])  # the source resolved
    assert ih.inhibited({"x": "1", "cluster": "a"}) is None


def test_no_rules_never_inhibit() -> None:
    assert Inhibitor([]).inhibited({"a": "b"}, [alert(a="b")]) is None


def test_lookup_cost_does_not_grow_with_firing_alerts() -> None:
    # O(rules) per lookup after update: 20k firing sources, 20k lookups well under a second.
    ih = inhibitor(CRIT_MUTES_WARN)
    firing = [alert(alertname=f"A{i}", cluster="c", severity="critical") for i in range(20_000)]
    ih.update(firing)
    t0 = time.perf_counter()
    hits = sum(
        ih.inhibited({"alertname": f"A{i}", "cluster": "c", "severity": "warning"}) is not None
        for i in range(20_000)
    )
    assert hits == 20_000
    assert time.perf_counter() - t0 < 1.0
