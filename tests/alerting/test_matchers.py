"""Matchers: Alertmanager's text syntax, anchored regexes, missing labels, API v2 JSON."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alerting.matchers import (
    Matcher,
    MatcherError,
    all_match,
    format_matchers,
    matcher_from_json,
    matchers_json,
    parse_matcher,
    parse_matchers,
)

# (text, name, op, value) -- each row cites the documented rule it checks.
PARSE_OK = [
    # docs/configuration.md "Matcher": the four operators
    ('severity="page"', "severity", "=", "page"),
    ('severity!="page"', "severity", "!=", "page"),
    ('job=~"api|web"', "job", "=~", "api|web"),
    ('job!~"api.*"', "job", "!~", "api.*"),
    # configuration.md: "unquoted literals ... foo=bar" are accepted
    ("foo=bar", "foo", "=", "bar"),
    # configuration.md: whitespace around the operator is allowed
    ('  foo  =~  "b.r"  ', "foo", "=~", "b.r"),
    # pkg/labels/parse.go: \" \\ and \n are escapes in a quoted value
    (r'msg="say \"hi\"\\n"', "msg", "=", 'say "hi"\\n'),
    (r'msg="a\nb"', "msg", "=", "a\nb"),
    # parse.go: any other backslash is kept literally (regex escapes survive)
    (r'path=~"\d+\.txt"', "path", "=~", r"\d+\.txt"),
    # configuration.md: an empty value matches a missing label
    ('team=""', "team", "=", ""),
    ("team=", "team", "=", ""),
    # label names may contain : and _ (Prometheus label name syntax, plus AM's classic ':')
    ('__name__:x="v"', "__name__:x", "=", "v"),
    # UTF-8 matchers (AM >= 0.27): a quoted label name
    ('"service name"="web"', "service name", "=", "web"),
    # configuration.md: commas inside quoted values belong to the value
    ('foo="a,b"', "foo", "=", "a,b"),
]


@pytest.mark.parametrize(("text", "name", "op", "value"), PARSE_OK)
def test_parse_matcher(text: str, name: str, op: str, value: str) -> None:
    m = parse_matcher(text)
    assert (m.name, m.op, m.value) == (name, op, value)


# (text, fragment the error must contain)
PARSE_BAD = [
    ('"foo', "not closed"),  # unterminated quoted name
    ('foo="bar', "not closed"),  # parse.go: missing trailing quote is an error
    ('foo="bar"baz', "after the quoted value"),
    ('foo=ba"r', "unescaped double quote"),  # parse.go: unescaped quote in a value
    ('1foo="x"', "label name"),  # label names cannot start with a digit
    ('foo~="x"', "operator"),  # a wrong operator
    ("foo", "operator"),
    ('foo=~"(unclosed"', "invalid regular expression"),  # regexes must compile
    ("", "label name"),
]


@pytest.mark.parametrize(("text", "fragment"), PARSE_BAD)
def test_parse_matcher_refuses(text: str, fragment: str) -> None:
    with pytest.raises(MatcherError) as err:
        parse_matcher(text)
    assert fragment in str(err.value)
    assert repr(text) in str(err.value) or "regular expression" in str(err.value)


# (text, expected str() of each matcher)
LISTS = [
    # configuration.md: the {a="b", c=~"d"} form
    ('{a="b", c=~"d"}', ['a="b"', 'c=~"d"']),
    # the bare comma-separated form, no braces
    ('a="b",c!="d"', ['a="b"', 'c!="d"']),
    # parse.go: a comma inside quotes does not split
    ('{a="x,y",b=z}', ['a="x,y"', 'b="z"']),
    # parse.go: an escaped quote does not end the quoted section
    (r'{a="x\",y",b="2"}', [r'a="x\",y"', 'b="2"']),
    # a trailing comma is tolerated, as by AM
    ('{a="b",}', ['a="b"']),
    ("{}", []),
]


@pytest.mark.parametrize(("text", "expected"), LISTS)
def test_parse_matchers(text: str, expected: list[str]) -> None:
    assert [str(m) for m in parse_matchers(text)] == expected


def test_parse_matchers_refuses_empty_items_and_open_brace() -> None:
    with pytest.raises(MatcherError, match="empty matcher"):
        parse_matchers('a="b",,c="d"')
    with pytest.raises(MatcherError, match="closing"):
        parse_matchers('{a="b"')


# (matcher, labels, expected) -- configuration.md: regexes are fully anchored (RE2 ^(?:..)$),
# a missing label is the empty string.
MATCHES = [
    ('job=~"api"', {"job": "api-2"}, False),  # anchored at the end
    ('job=~"api.*"', {"job": "api-2"}, True),
    ('job=~"pi"', {"job": "api"}, False),  # anchored at the start
    ('job=~"a|b"', {"job": "b"}, True),  # alternation is grouped before anchoring
    ('job=~"api"', {"job": "api\n"}, False),  # $ must not accept a trailing newline
    ('job!~"api"', {"job": "web"}, True),
    ('team=""', {}, True),  # missing label == ""
    ('team!=""', {}, False),
    ('team!=""', {"team": "db"}, True),
    ('team=~".*"', {}, True),
    ('team=~".+"', {}, False),
    ('team!="db"', {}, True),
    ('severity="page"', {"severity": "Page"}, False),  # case-sensitive
]


@pytest.mark.parametrize(("text", "labels", "expected"), MATCHES)
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


def test_all_match_is_and_and_empty_is_true() -> None:
    ms = parse_matchers('{a="1", b=~"x|y"}')
    assert all_match(ms, {"a": "1", "b": "y"})
    assert not all_match(ms, {"a": "1", "b": "z"})
    assert all_match([], {"anything": "x"})


def test_str_round_trips_through_the_parser() -> None:
    for text in ['a="b\\"c"', 'a=~"x\\\\d"', 'a!="line\\nbreak"', '"odd name"="v"']:
        m = parse_matcher(text)
        assert parse_matcher(str(m)) == m


def test_format_matchers_uses_am_order() -> None:
    # dispatch/route.go sorts matchers: by name, then type (= != =~ !~), then value.
    ms = parse_matchers('{b="1", a!~"z", a="y", a="x"}')
    assert format_matchers(ms) == '{a="x",a="y",a!~"z",b="1"}'


# API v2 (api/v2/openapi.yaml "matcher"): isEqual defaults to true.
API = [
    ({"name": "a", "value": "b", "isRegex": False}, "="),
    ({"name": "a", "value": "b", "isRegex": False, "isEqual": False}, "!="),
    ({"name": "a", "value": "b", "isRegex": True}, "=~"),
    ({"name": "a", "value": "b", "isRegex": True, "isEqual": False}, "!~"),
]


@pytest.mark.parametrize(("doc", "op"), API)
def test_matcher_from_json(doc: dict[str, object], op: str) -> None:
    m = matcher_from_json(doc)
    assert m.op == op
    back = matchers_json([m])[0]
    assert back["isEqual"] == doc.get("isEqual", True) and back["isRegex"] == doc["isRegex"]
    assert matcher_from_json(back) == m


@pytest.mark.parametrize(
    "doc",
    [
        {"value": "b", "isRegex": False},  # name missing
        {"name": " ", "value": "b"},  # blank name
        {"name": "a", "value": 3},  # value not a string
        {"name": "a", "value": "b", "isRegex": "yes"},
        {"name": "a", "value": "(", "isRegex": True},  # regex must compile
        ["a", "b"],
    ],
)
def test_matcher_from_json_refuses(doc: object) -> None:
    with pytest.raises(MatcherError):
        matcher_from_json(doc)  # type: ignore[arg-type]


def test_values_over_16_kib_are_refused() -> None:
    # keiko's limit (alerting.model.LABEL_VALUE_MAX): a matcher value as big as a label value
    Matcher("a", "=", "x" * 16 * 1024)
    with pytest.raises(MatcherError, match="over 16384 bytes"):
        Matcher("a", "=", "x" * (16 * 1024 + 1))
    with pytest.raises(MatcherError, match="over"):
        parse_matcher('a=~"' + "y" * 20000 + '"')


def test_unknown_operator_and_empty_name_are_refused() -> None:
    with pytest.raises(MatcherError, match="operator"):
        Matcher("a", "==", "b")
    with pytest.raises(MatcherError, match="empty"):
        Matcher("", "=", "b")


def amtool_accepts(text: str, tmp: Path) -> bool:
    """Whether Alertmanager's own parser accepts ``text`` as a route's matcher."""
    cfg = {
        "route": {"receiver": "r", "routes": [{"receiver": "r", "matchers": [text]}]},
        "receivers": [{"name": "r"}],
    }
    path = tmp / "am.yml"
    path.write_text(yaml.safe_dump(cfg))
    done = subprocess.run(
        ["amtool", "check-config", str(path)], capture_output=True, text=True, timeout=30
    )
    return done.returncode == 0


# Quoted label names are AM >= 0.27's UTF-8 syntax; older amtool refuses them.
UTF8_ONLY = {'"service name"="web"'}


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool is not installed")
@pytest.mark.parametrize("text", [row[0] for row in PARSE_OK] + [row[0] for row in PARSE_BAD])
def test_acceptance_agrees_with_amtool(text: str, tmp_path: Path) -> None:
    try:
        parse_matchers(text) if text == "" else parse_matcher(text)
        ours = True
    except MatcherError:
        ours = False
    if text in UTF8_ONLY:
        assert ours
        return
    assert ours is amtool_accepts(text, tmp_path)


# (matcher, label value) pairs whose matching depends on unescaping and anchoring.
ESCAPES = [
    (r'msg="say \"hi\""', 'say "hi"'),
    (r'msg="back\\slash"', "back\\slash"),
    (r'msg="a\nb"', "a\nb"),
    (r'path=~"\d+\.txt"', "12.txt"),
    (r'path=~"\d+\.txt"', "12xtxt"),
    ('job=~"api"', "api-2"),
]


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool is not installed")
@pytest.mark.parametrize(("text", "value"), ESCAPES)
def test_matching_agrees_with_amtool(text: str, value: str, tmp_path: Path) -> None:
    m = parse_matcher(text)
    cfg = {
        "route": {"receiver": "miss", "routes": [{"receiver": "hit", "matchers": [text]}]},
        "receivers": [{"name": "miss"}, {"name": "hit"}],
    }
    path = tmp_path / "am.yml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        # amtool reads the label as a matcher too: pass it quoted and escaped
        [
            "amtool",
            "config",
            "routes",
            "test",
            f"--config.file={path}",
            str(Matcher(m.name, "=", value)),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert (out == "hit") is m.matches({m.name: value})
