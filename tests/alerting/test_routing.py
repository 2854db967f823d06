"""Routing: config models, the tree (matching, continue, inheritance, grouping), the loader.

Cases come from Alertmanager's docs/configuration.md (``<route>``) and its
doc/examples/simple.yml; the sample config is also checked against ``amtool`` when installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from alerting.routing.config import RouteConfig, parse_am_duration
from alerting.routing.load import AlertmanagerConfigError, load_alertmanager
from alerting.routing.tree import Route, build_tree

DATA = Path(__file__).parent / "data" / "alertmanager.yml"

# Alertmanager's doc/examples/simple.yml routing tree (receivers renamed nowhere).
SIMPLE = """
route:
  group_by: ['alertname', 'cluster', 'service']
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 3h
  receiver: team-X-mails
  routes:
    - matchers: ['service=~"foo1|foo2|baz"']
      receiver: team-X-mails
      routes:
        - matchers: ['severity="critical"']
          receiver: team-X-pager
    - matchers: ['service="files"']
      receiver: team-Y-mails
      routes:
        - matchers: ['severity="critical"']
          receiver: team-Y-pager
    - matchers: ['service="database"']
      receiver: team-DB-pager
      group_by: [alertname, cluster, database]
      routes:
        - matchers: ['owner="team-X"']
          receiver: team-X-pager
          continue: true
        - matchers: ['owner="team-Y"']
          receiver: team-Y-pager
"""
RECEIVERS = {"team-X-mails", "team-X-pager", "team-Y-mails", "team-Y-pager", "team-DB-pager"}


def tree_of(
    text: str, names: set[str] = RECEIVERS, intervals: frozenset[str] = frozenset()
) -> Route:
    """The tree of the ``route:`` in ``text``, with these receiver and interval names."""
    cfg = RouteConfig.model_validate(yaml.safe_load(text)["route"])
    return build_tree(cfg, names, set(intervals))


def receivers(root: Route, labels: dict[str, str]) -> list[str]:
    return [r.receiver for r in root.match(labels)]


# (labels, receivers) -- simple.yml's comments state each outcome.
SIMPLE_CASES = [
    # "catch alerts that are related to a list of services" (regex, anchored)
    ({"service": "foo1"}, ["team-X-mails"]),
    # "critical alerts ... team-X-pager"
    ({"service": "baz", "severity": "critical"}, ["team-X-pager"]),
    # "any alerts that do not match, i.e. severity != critical, fall-back to the parent node"
    ({"service": "foo2", "severity": "warning"}, ["team-X-mails"]),
    # the regex is anchored: foo10 is not foo1
    ({"service": "foo10"}, ["team-X-mails"]),  # falls back to the root, same receiver
    ({"service": "files", "severity": "critical"}, ["team-Y-pager"]),
    ({"service": "files"}, ["team-Y-mails"]),
    # "If there's no team to handle it, it defaults to the DB team."
    ({"service": "database"}, ["team-DB-pager"]),
    # continue: true on the owner=team-X route: the next sibling is tried too
    ({"service": "database", "owner": "team-X"}, ["team-X-pager"]),
    ({"service": "database", "owner": "team-Y"}, ["team-Y-pager"]),
    # no child matches: the root itself is the match (default receiver)
    ({"alertname": "Other"}, ["team-X-mails"]),
    ({}, ["team-X-mails"]),
]


@pytest.mark.parametrize(("labels", "expected"), SIMPLE_CASES)
def test_simple_yml_routing(labels: dict[str, str], expected: list[str]) -> None:
    assert receivers(tree_of(SIMPLE), labels) == expected


CONTINUE = """
route:
  receiver: default
  routes:
    - matchers: ['team="db"']
      receiver: db
      continue: true
    - matchers: ['severity="page"']
      receiver: pager
    - matchers: ['severity=~"page|ticket"']
      receiver: never-after-pager
    - receiver: catch-all
"""
CONTINUE_RECEIVERS = {"default", "db", "pager", "never-after-pager", "catch-all"}


# configuration.md: "continue: Whether an alert should continue matching subsequent sibling
# nodes"; the first match without continue stops the search (depth-first, left to right).
@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"team": "db", "severity": "page"}, ["db", "pager"]),
        ({"team": "db", "severity": "ticket"}, ["db", "never-after-pager"]),
        ({"team": "db"}, ["db", "catch-all"]),
        ({"severity": "page"}, ["pager"]),
        # a matcher-less child matches everything, so the root's receiver is never used
        ({"x": "y"}, ["catch-all"]),
    ],
)
def test_continue(labels: dict[str, str], expected: list[str]) -> None:
    assert receivers(tree_of(CONTINUE, CONTINUE_RECEIVERS), labels) == expected


def test_continue_route_that_matched_still_counts_as_a_match() -> None:
    # dispatch/route.go Match: the matches of a `continue` child are non-empty, so the
    # parent is not added itself even if no later sibling matches.
    root = tree_of(CONTINUE, CONTINUE_RECEIVERS)
    assert [r.receiver for r in root.routes[0].match({"team": "db"})] == ["db"]


INHERIT = """
route:
  receiver: root
  group_by: [alertname]
  group_wait: 10s
  group_interval: 1m
  repeat_interval: 2h
  escalation: standard
  remediation: [restart-pod]
  routes:
    - matchers: ['team="a"']
      mute_time_intervals: [nights]
      routes:
        - matchers: ['severity="page"']
          receiver: pager
          group_wait: 0s
          repeat_interval: 1d
    - matchers: ['team="b"']
      receiver: b
      group_by: ['...']
      escalation: urgent
      remediation: []
    - matchers: ['team="c"']
      group_by: []
"""


def test_inheritance() -> None:
    # configuration.md: "All the above attributes are inherited by all child routes and can
    # be overwritten on each" (receiver, group_by, group_wait, group_interval, repeat_interval)
    root = tree_of(INHERIT, {"root", "pager", "b"}, frozenset({"nights"}))
    a, b, c = root.routes
    page = a.routes[0]
    assert (a.receiver, a.group_by, a.group_wait, a.group_interval, a.repeat_interval) == (
        "root",
        frozenset({"alertname"}),
        10.0,
        60.0,
        7200.0,
    )
    assert (page.receiver, page.group_wait, page.group_interval, page.repeat_interval) == (
        "pager",
        0.0,
        60.0,
        86400.0,
    )
    # dispatch/route.go: mute_time_intervals/active_time_intervals are not inherited
    assert a.mute_time_intervals == ["nights"] and page.mute_time_intervals == []
    # keiko's escalation/remediation inherit like the receiver; an explicit [] stops it
    assert (page.escalation, page.remediation) == ("standard", ["restart-pod"])
    assert (b.escalation, b.remediation) == ("urgent", [])
    # group_by ['...']: "aggregate by all possible labels"
    assert b.group_by_all and b.group_by is None
    # an explicit `group_by: []` is "no labels" (one group), not "inherit": current AM
    # config.go turns an empty GroupByStr into an empty GroupBy (older releases inherited)
    assert c.group_by == frozenset() and not c.group_by_all


def test_am_defaults_on_the_root() -> None:
    # configuration.md defaults: group_wait 30s, group_interval 5m, repeat_interval 4h;
    # without group_by every alert of a route goes into one group.
    root = tree_of("route: {receiver: r}", {"r"})
    assert (root.group_wait, root.group_interval, root.repeat_interval) == (30.0, 300.0, 14400.0)
    assert root.group_by == frozenset() and not root.group_by_all
    assert root.group_labels({"alertname": "X", "job": "y"}) == {}
    assert root.continue_ is False


def test_group_labels_and_keys() -> None:
    root = tree_of(INHERIT, {"root", "pager", "b"}, frozenset({"nights"}))
    a, b, _ = root.routes
    labels = {"alertname": "Down", "team": "a", "zone": "eu"}
    assert a.group_labels(labels) == {"alertname": "Down"}
    # a grouping label the alert lacks is left out (dispatch.getGroupLabels)
    assert a.group_labels({"team": "a"}) == {}
    assert b.group_labels({"team": "b", "z": "1"}) == {"team": "b", "z": "1"}
    # AM's group key: route key ":" group labels
    assert a.group_key(labels) == '{}/{team="a"}:{alertname="Down"}'
    assert b.group_key({"team": "b", "z": '"q"'}) == '{}/{team="b"}:{team="b", z="\\"q\\""}'


def test_route_ids_are_am_style_unique_and_stable() -> None:
    text = """
route:
  receiver: r
  routes:
    - matchers: ['a="1"']
      routes: [{matchers: ['x="1"']}]
    - matchers: ['a="1"']
      routes: [{matchers: ['x="1"']}]
    - matchers: ['severity="page"', 'env=~"prod|dr"']
"""
    root = tree_of(text, {"r"})
    ids = [r.id for r in root.walk()]
    assert ids[0] == "{}"
    # dispatch/route.go ID(): key plus the position among siblings; matchers sorted
    assert ids[1] == '{}/{a="1"}/0'
    assert ids[5] == '{}/{env=~"prod|dr",severity="page"}/2'
    # twins at depth 2 get different ids (AM's would collide; ours chain the parent's id)
    assert ids[2] == '{}/{a="1"}/0/{x="1"}/0' and ids[4] == '{}/{a="1"}/1/{x="1"}/0'
    assert len(set(ids)) == len(ids)
    assert ids == [r.id for r in tree_of(text, {"r"}).walk()]
    # the AM Key() (used in group keys) is not positional
    assert root.routes[0].routes[0].key == root.routes[1].routes[0].key


def test_match_and_match_re_are_merged_with_matchers() -> None:
    # configuration.md: match/match_re are deprecated but still work; match_re is anchored
    text = """
route:
  receiver: r
  routes:
    - match: {service: files}
      match_re: {severity: 'crit.*'}
      matchers: ['env!="dev"']
      receiver: s
"""
    root = tree_of(text, {"r", "s"})
    assert receivers(root, {"service": "files", "severity": "critical"}) == ["s"]
    assert receivers(root, {"service": "files", "severity": "xcritical"}) == ["r"]
    assert receivers(root, {"service": "files", "severity": "crit", "env": "dev"}) == ["r"]
    # one matchers item may hold several matchers, as in AM
    multi = tree_of('route: {receiver: r, routes: [{matchers: [\'a="1",b="2"\'], receiver: s}]}',
                    {"r", "s"})  # fmt: skip
    assert receivers(multi, {"a": "1"}) == ["r"]
    assert receivers(multi, {"a": "1", "b": "2"}) == ["s"]


# build_tree refusals: (yaml, message fragments) -- config/config.go checks.
TREE_BAD = [
    ("route: {group_by: [a]}", ["root route must have a receiver"]),
    ("route: {receiver: r, matchers: ['a=\"b\"']}", ["root route must not have matchers"]),
    ("route: {receiver: r, match: {a: b}}", ["root route must not have matchers"]),
    ("route: {receiver: r, mute_time_intervals: [n]}", ["root route must not have mute"]),
    ("route: {receiver: r, continue: true}", ["cannot have continue"]),
    ("route: {receiver: nope}", ["route:", "'nope' is not defined", "defined: r"]),
    (
        "route: {receiver: r, routes: [{}, {routes: [{receiver: ghost}]}]}",
        ["route.routes[1].routes[0]", "'ghost'"],
    ),
    (
        "route: {receiver: r, routes: [{active_time_intervals: [late]}]}",
        ["route.routes[0]", "time interval 'late' is not defined"],
    ),
]


@pytest.mark.parametrize(("text", "fragments"), TREE_BAD)
def test_build_tree_refuses(text: str, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as err:
        tree_of(text, {"r"}, frozenset({"n"}))
    for fragment in fragments:
        assert fragment in str(err.value)


# RouteConfig refusals: (route dict, key in the error, fragment)
CONFIG_BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"matchers": ['severity=="page"']}, "matchers", "item 0"),
    ({"matchers": ['foo=~"(x"']}, "matchers", "invalid regular expression"),
    ({"match_re": {"a": "("}}, "match_re", "invalid regular expression"),
    ({"match": {"bad-name": "x"}}, "match", "not a valid label name"),
    # configuration.md: '...' must be the sole label name
    ({"group_by": ["...", "alertname"]}, "group_by", "only item"),
    ({"group_by": ["a", "a"]}, "group_by", "duplicate"),
    # config.go: group_interval/repeat_interval cannot be zero
    ({"group_interval": "0s"}, "group_interval", "cannot be zero"),
    ({"repeat_interval": "0"}, "repeat_interval", "cannot be zero"),
    ({"group_wait": "5 minutes"}, "group_wait", "not a duration"),
    ({"group_wait": "1.5h"}, "group_wait", "not a duration"),  # Prometheus: integers only
    ({"group_wait": "30m1h"}, "group_wait", "not a duration"),  # largest unit first
    ({"recevier": "x"}, "recevier", "Extra inputs"),  # unknown keys refused
]


@pytest.mark.parametrize(("doc", "key", "fragment"), CONFIG_BAD)
def test_route_config_refuses(doc: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as err:
        RouteConfig.model_validate(doc)
    assert err.value.errors()[0]["loc"][0] == key
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        # Prometheus duration units: ms, s, m, h, d, w, y (y = 365d)
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("1d", 86400),
        ("2w", 14 * 86400),
        ("1y", 365 * 86400),
        ("1h0m30s500ms", 3630.5),
        ("0", 0),
        (90, 90),
    ],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_am_duration(text) == seconds


def test_continue_is_read_by_its_yaml_name() -> None:
    cfg = RouteConfig.model_validate({"continue": True})
    assert cfg.continue_ is True
    assert cfg.model_dump(by_alias=True)["continue"] is True


# The sample config: (labels, receivers) -- each outcome follows from the comments in it.
DATA_CASES = [
    ({"service": "foo1", "severity": "critical"}, ["audit-log", "team-X-pager"]),
    ({"service": "files", "severity": "page"}, ["audit-log", "team-Y-pager"]),
    ({"service": "files"}, ["audit-log", "team-Y-mails"]),
    ({"service": "database", "owner": "team-X"}, ["audit-log", "team-X-pager", "team-Y-pager"]),
    ({"service": "database", "owner": "team-Y"}, ["audit-log", "team-Y-pager"]),
    ({"service": "database"}, ["audit-log", "team-DB-pager"]),
    ({"env": "staging", "severity": "warning"}, ["audit-log", "staging-chat"]),
    ({"env": "staging", "severity": "info"}, ["audit-log"]),
    # the continue route matched, so the root's own receiver is never used
    ({"alertname": "Anything"}, ["audit-log"]),
]


@pytest.mark.parametrize(("labels", "expected"), DATA_CASES)
def test_sample_config_routes(labels: dict[str, str], expected: list[str]) -> None:
    cfg = load_alertmanager(DATA)
    assert receivers(cfg.tree(), labels) == expected


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool is not installed")
@pytest.mark.parametrize(("labels", "expected"), DATA_CASES)
def test_sample_config_agrees_with_amtool(labels: dict[str, str], expected: list[str]) -> None:
    # The real Alertmanager routing code, through `amtool config routes test`.
    args = [f"{k}={v}" for k, v in labels.items()]
    out = subprocess.run(
        ["amtool", "config", "routes", "test", f"--config.file={DATA}", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert out.split(",") == expected


def test_sample_config_loads_everything() -> None:
    cfg = load_alertmanager(DATA)
    assert cfg.ignored == ["global", "templates"]
    assert {t.name for t in cfg.time_intervals} == {"business-hours", "weekends", "holidays"}
    assert len(cfg.inhibit_rules) == 2
    # receivers are passed through untouched
    raw = yaml.safe_load(DATA.read_text())["receivers"]
    assert cfg.receivers == raw
    tree = cfg.tree()
    db = tree.routes[3]
    assert db.group_by == frozenset({"alertname", "cluster", "database"})
    assert db.repeat_interval == 3600 and db.routes[0].repeat_interval == 3600
    assert tree.routes[4].mute_time_intervals == ["weekends", "holidays"]
    assert tree.routes[0].group_by_all
    # the intervals parse and answer (2026-12-25 is a Friday: holidays)
    assert cfg.intervals().active("holidays", 1798200000.0)


def test_load_from_text_and_ignored_keys() -> None:
    cfg = load_alertmanager("route: {receiver: r}\nreceivers: [{name: r}]\ntracing: {}\n")
    assert cfg.ignored == ["tracing"] and cfg.tree().receiver == "r"


# Loader refusals: (yaml, fragments of the error)
LOAD_BAD = [
    ("route: {receiver: r\n", ["line", "not valid YAML"]),
    ("- a\n- b\n", ["top level must be a mapping"]),
    ("receivers: [{name: r}]\n", ["route", "Field required"]),
    (
        "route:\n  receiver: r\n  routes:\n    - matchers: ['a=~\"(\"']\nreceivers: [{name: r}]\n",
        ["line 4", "route.routes.0.matchers", "item 0", "regular expression"],
    ),
    ("route: {receiver: r}\nreceivers: [{name: r}]\nroutez: {}\n", ["line 3", "routez"]),
    ("route: {receiver: x}\nreceivers: [{name: r}]\n", ["'x' is not defined"]),
    ("route: {receiver: r}\nreceivers: [{name: r}, {name: r}]\n", ["not unique"]),
    ("route: {receiver: r}\nreceivers: [{email_configs: []}]\n", ["needs a name"]),
    (
        "route: {receiver: r}\nreceivers: [{name: r}]\n"
        "time_intervals: [{name: t}]\nmute_time_intervals: [{name: t}]\n",
        ["'t' is defined more than once"],
    ),
    (
        "route: {receiver: r}\nreceivers: [{name: r}]\n"
        "time_intervals: [{name: t, time_intervals: [{weekdays: [funday]}]}]\n",
        ["line 3", "time_intervals.0.time_intervals.0.weekdays", "not a weekday"],
    ),
]


@pytest.mark.parametrize(("text", "fragments"), LOAD_BAD)
def test_load_refuses(text: str, fragments: list[str]) -> None:
    with pytest.raises(AlertmanagerConfigError) as err:
        load_alertmanager(text)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_load_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AlertmanagerConfigError, match="cannot read"):
        load_alertmanager(tmp_path / "missing.yml")
    # a path given as a string that does not exist is not mistaken for YAML silently
    with pytest.raises(AlertmanagerConfigError, match="is not a file either"):
        load_alertmanager(str(tmp_path / "missing.yml"))
