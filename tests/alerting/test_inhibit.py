"""Inhibition, cases from Alertmanager's docs/configuration.md (``<inhibit_rule>``) and
inhibit/inhibit.go (``hasEqual`` with ``excludeTwoSidedMatch``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.alertmanager import real_alertmanager as alertmanager

from alerting.inhibit import Inhibitor
from alerting.model import Alert, fingerprint, rfc3339
from alerting.routing.config import InhibitRuleConfig
from alerting.routing.load import load_alertmanager

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


DATA = Path(__file__).parent / "data" / "alertmanager.yml"


@pytest.fixture(scope="module")
def real_alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Alertmanager with the sample config on a free loopback port (its API URL)."""
    with alertmanager(DATA, tmp_path_factory.mktemp("am")) as url:
        yield url


def test_sample_rules_agree_with_real_alertmanager(real_alertmanager: str) -> None:
    # The sample config's two rules, the same firing alerts sent to Alertmanager: which
    # alerts it marks inhibited (and by which alert) must be what keiko answers.
    sets = [
        {"alertname": "ClusterDown", "cluster": "c1"},  # both sides of rule 2: not itself
        {"alertname": "NodeDown", "cluster": "c1"},  # muted by ClusterDown (equal cluster)
        {"alertname": "NodeDown", "cluster": "c2"},
        {"alertname": "Lat", "cluster": "c2", "service": "s", "severity": "critical"},
        {"alertname": "Lat", "cluster": "c2", "service": "s", "severity": "warning"},
        {"alertname": "Lat", "cluster": "c2", "severity": "warning"},  # service differs
    ]
    now = time.time()
    body = [
        {"labels": s, "startsAt": rfc3339(now - 10), "endsAt": rfc3339(now + 600)} for s in sets
    ]
    assert httpx.post(f"{real_alertmanager}/api/v2/alerts", json=body).status_code == 200
    cfg = load_alertmanager(DATA)
    ih = Inhibitor(cfg.inhibit_rules)
    firing = [alert(**s) for s in sets]
    ih.update(firing)
    ours = {fingerprint(a.labels): ih.inhibited(a.labels) for a in firing}
    expected_muted = {fingerprint(sets[1]), fingerprint(sets[4])}
    assert {fp for fp, by in ours.items() if by} == expected_muted
    # Alertmanager's fingerprints differ from keiko's: compare by label set.
    by_fp = {fingerprint(s): s for s in sets}
    deadline = time.monotonic() + 10
    while True:  # AM feeds its inhibitor asynchronously
        theirs = {
            fingerprint(a["labels"]): a["status"]["inhibitedBy"]
            for a in httpx.get(f"{real_alertmanager}/api/v2/alerts").json()
        }
        if len(theirs) == len(sets) and sum(bool(v) for v in theirs.values()) >= 2:
            break
        assert time.monotonic() < deadline, f"Alertmanager answered {theirs}"
        time.sleep(0.1)
    am_fps = {a["fingerprint"]: fingerprint(a["labels"]) for a in
              httpx.get(f"{real_alertmanager}/api/v2/alerts").json()}  # fmt: skip
    for fp, inhibited_by in theirs.items():
        assert [am_fps[x] for x in inhibited_by] == ([ours[fp]] if ours[fp] else []), by_fp[fp]
