"""Pydantic models of Alertmanager's ``route``, ``inhibit_rules`` and ``time_intervals``.

Keys are Alertmanager's, unchanged, so an existing ``alertmanager.yml`` validates as is;
keiko adds ``escalation`` and ``remediation`` to a route. Durations use Prometheus's syntax
(``30s``, ``1h30m``, ``1d``, ``1w``, ``1y``; integer units, largest first). A duration or
setting left unset on a route is inherited from its parent (see ``routing.tree``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, PlainSerializer, field_validator

from alerting.matchers import Matcher, MatcherError, parse_matchers
from alerting.routing import timeintervals as ti
from keiko.store.config import Strict

# Alertmanager's defaults for the root route (dispatch.DefaultRouteOpts).
DEFAULT_GROUP_WAIT = 30.0
DEFAULT_GROUP_INTERVAL = 300.0
DEFAULT_REPEAT_INTERVAL = 4 * 3600.0

_PROM_DURATION = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?"
)
_UNIT_SECONDS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def parse_am_duration(value: Any) -> float:
    """Prometheus's duration (``"5m"``, ``"1h30m"``, ``"1d"``, ``"2w"``, ``"1y"``, ``"0"``) or a
    number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 5m, not a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    text = str(value).strip()
    m = _PROM_DURATION.fullmatch(text)
    if text == "0":
        return 0.0
    if not text or not m or not any(m.groups()):
        raise ValueError(
            f"{value!r} is not a duration: use integers with units largest first, "
            "e.g. 30s, 5m, 1h30m, 1d, 1w, 1y (units ms, s, m, h, d, w, y)"
        )
    return float(sum(int(n) * u for n, u in zip(m.groups(), _UNIT_SECONDS, strict=True) if n))


AmDuration = Annotated[float, BeforeValidator(parse_am_duration), PlainSerializer(float)]


def _check_matcher_strings(items: list[str]) -> list[str]:
    """Each item parses as one or more matchers (AM allows ``a="b", c="d"`` in one item)."""
    for i, item in enumerate(items):
        try:
            parse_matchers(item)
        except MatcherError as exc:
            raise ValueError(f'item {i}: {exc}; write e.g. severity="page"') from None
    return items


def _check_label_names(names: dict[str, str] | list[str]) -> None:
    """AM validates the label names used by match/match_re/equal."""
    for name in names:
        if not _LABEL_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid label name (letters, digits, _)")


def _check_regexes(rx: dict[str, str]) -> dict[str, str]:
    _check_label_names(rx)
    for name, pattern in rx.items():
        try:
            Matcher(name, "=~", pattern)
        except MatcherError as exc:
            raise ValueError(str(exc)) from None
    return rx


def matchers_of(
    match: dict[str, str], match_re: dict[str, str], matchers: list[str]
) -> list[Matcher]:
    """The deprecated ``match``/``match_re`` maps and ``matchers`` strings as one list."""
    out = [Matcher(k, "=", v) for k, v in match.items()]
    out += [Matcher(k, "=~", v) for k, v in match_re.items()]
    for item in matchers:
        out += parse_matchers(item)
    return out


class RouteConfig(Strict):
    """One node of Alertmanager's routing tree (``route:`` and every ``routes:`` item)."""

    model_config = ConfigDict(populate_by_name=True)

    receiver: str | None = Field(
        default=None, description="Receiver of the alerts this route matches (inherited if unset)."
    )
    group_by: list[str] | None = Field(
        default=None,
        description="Labels to group alerts by; ['...'] groups by all labels (no aggregation); "
        "unset inherits the parent's (the root: no labels, one group per route).",
    )
    continue_: bool = Field(
        default=False,
        alias="continue",
        description="Keep matching the following sibling routes after this one matched.",
    )
    matchers: list[str] = Field(
        default_factory=list,
        description="Matchers an alert must satisfy, each a string such as "
        'severity="page" or team=~"db|web".',
    )
    match: dict[str, str] = Field(
        default_factory=dict, description="Deprecated: equality matchers as a label: value map."
    )
    match_re: dict[str, str] = Field(
        default_factory=dict,
        description="Deprecated: regex matchers (fully anchored) as a label: regex map.",
    )
    group_wait: AmDuration | None = Field(
        default=None, description="Wait before the first notification of a new group (30s)."
    )
    group_interval: AmDuration | None = Field(
        default=None, description="Wait before notifying about alerts added to a group (5m)."
    )
    repeat_interval: AmDuration | None = Field(
        default=None, description="Wait before repeating a notification already sent (4h)."
    )
    mute_time_intervals: list[str] = Field(
        default_factory=list,
        description="Names of time intervals during which this route is muted (not inherited).",
    )
    active_time_intervals: list[str] = Field(
        default_factory=list,
        description="Names of time intervals outside which this route is muted (not inherited).",
    )
    routes: list[RouteConfig] = Field(
        default_factory=list, description="Child routes, tried in order (depth first)."
    )
    escalation: str | None = Field(
        default=None,
        description="keiko: name of the escalation policy for this route's alerts (inherited).",
    )
    remediation: list[str] = Field(
        default_factory=list,
        description="keiko: remediation action names to run for this route's alerts "
        "(inherited when unset).",
    )

    @field_validator("matchers")
    @classmethod
    def _matchers_parse(cls, v: list[str]) -> list[str]:
        return _check_matcher_strings(v)

    @field_validator("match")
    @classmethod
    def _match_names(cls, v: dict[str, str]) -> dict[str, str]:
        _check_label_names(v)
        return v

    @field_validator("match_re")
    @classmethod
    def _match_re_compiles(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_regexes(v)

    @field_validator("group_by")
    @classmethod
    def _group_by_valid(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if "..." in v and len(v) > 1:
            raise ValueError("'...' (group by all labels) must be the only item of group_by")
        if len(set(v)) != len(v):
            raise ValueError("duplicate label names; list each label once")
        if v != ["..."]:
            _check_label_names(v)
        return v

    @field_validator("group_interval", "repeat_interval")
    @classmethod
    def _not_zero(cls, v: float | None) -> float | None:
        if v is not None and v == 0:
            raise ValueError("cannot be zero; use e.g. 5m")
        return v

    def all_matchers(self) -> list[Matcher]:
        """``match``, ``match_re`` and ``matchers`` of this route as matchers."""
        return matchers_of(self.match, self.match_re, self.matchers)


class InhibitRuleConfig(Strict):
    """One ``inhibit_rules`` item: firing source alerts mute matching target alerts."""

    source_matchers: list[str] = Field(
        default_factory=list, description="Matchers a firing alert must satisfy to inhibit."
    )
    target_matchers: list[str] = Field(
        default_factory=list, description="Matchers an alert must satisfy to be inhibited."
    )
    source_match: dict[str, str] = Field(
        default_factory=dict, description="Deprecated: source equality matchers (label: value)."
    )
    source_match_re: dict[str, str] = Field(
        default_factory=dict, description="Deprecated: source regex matchers (label: regex)."
    )
    target_match: dict[str, str] = Field(
        default_factory=dict, description="Deprecated: target equality matchers (label: value)."
    )
    target_match_re: dict[str, str] = Field(
        default_factory=dict, description="Deprecated: target regex matchers (label: regex)."
    )
    equal: list[str] = Field(
        default_factory=list,
        description="Labels whose values must be equal in source and target (missing = missing).",
    )

    @field_validator("source_matchers", "target_matchers")
    @classmethod
    def _matchers_parse(cls, v: list[str]) -> list[str]:
        return _check_matcher_strings(v)

    @field_validator("source_match", "target_match")
    @classmethod
    def _match_names(cls, v: dict[str, str]) -> dict[str, str]:
        _check_label_names(v)
        return v

    @field_validator("source_match_re", "target_match_re")
    @classmethod
    def _match_re_compiles(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_regexes(v)

    @field_validator("equal")
    @classmethod
    def _equal_names(cls, v: list[str]) -> list[str]:
        _check_label_names(v)
        return v

    def source(self) -> list[Matcher]:
        """All source matchers (new and deprecated keys)."""
        return matchers_of(self.source_match, self.source_match_re, self.source_matchers)

    def target(self) -> list[Matcher]:
        """All target matchers (new and deprecated keys)."""
        return matchers_of(self.target_match, self.target_match_re, self.target_matchers)


def _strings(value: Any) -> Any:
    """YAML reads ``days_of_month: [1, -1]`` as ints; AM takes them as strings."""
    if isinstance(value, list):
        return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    return value


RangeList = Annotated[list[str] | None, BeforeValidator(_strings)]


class TimeRangeConfig(Strict):
    """A range of the day, ``HH:MM`` start inclusive, end exclusive (``24:00`` allowed)."""

    start_time: str = Field(description="Start, HH:MM (inclusive).")
    end_time: str = Field(description="End, HH:MM (exclusive; 24:00 is the end of the day).")

    @field_validator("start_time", "end_time")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        ti.parse_hhmm(v)
        return v

    def minutes(self) -> tuple[int, int]:
        """(start, end) in minutes of the day; ValueError if start is not before end."""
        start, end = ti.parse_hhmm(self.start_time), ti.parse_hhmm(self.end_time)
        if start >= end:
            raise ValueError(
                f"start_time {self.start_time} must be before end_time {self.end_time}; "
                "split a range over midnight into two (e.g. 22:00-24:00 and 00:00-06:00)"
            )
        return start, end


class TimeIntervalSpec(Strict):
    """One item of a time interval: every field given must match (unset fields match all)."""

    times: list[TimeRangeConfig] | None = Field(
        default=None, description="Ranges of the day; any may match."
    )
    weekdays: RangeList = Field(
        default=None, description="Days of the week or ranges, e.g. ['monday:friday', 'sunday']."
    )
    days_of_month: RangeList = Field(
        default=None,
        description="Days of the month or ranges; negative counts from the end "
        "(-1 is the last day), e.g. ['1:5', '-3:-1'].",
    )
    months: RangeList = Field(
        default=None,
        description="Months by name or number or ranges, e.g. ['january:march', '12'].",
    )
    years: RangeList = Field(default=None, description="Years or ranges, e.g. ['2020:2022'].")
    location: str | None = Field(
        default=None,
        description="IANA time zone the times are in, e.g. 'Europe/Berlin' or 'Local' "
        "(default UTC).",
    )

    @field_validator("times")
    @classmethod
    def _ranges_ordered(cls, v: list[TimeRangeConfig] | None) -> list[TimeRangeConfig] | None:
        for tr in v or []:
            tr.minutes()
        return v

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, v: list[str] | None) -> list[str] | None:
        for item in v or []:
            ti.parse_weekday_range(item)
        return v

    @field_validator("days_of_month")
    @classmethod
    def _days(cls, v: list[str] | None) -> list[str] | None:
        for item in v or []:
            ti.parse_day_range(item)
        return v

    @field_validator("months")
    @classmethod
    def _months(cls, v: list[str] | None) -> list[str] | None:
        for item in v or []:
            ti.parse_month_range(item)
        return v

    @field_validator("years")
    @classmethod
    def _years(cls, v: list[str] | None) -> list[str] | None:
        for item in v or []:
            ti.parse_year_range(item)
        return v

    @field_validator("location")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            ti.load_zone(v)
        return v


class TimeIntervalConfig(Strict):
    """A named time interval (``time_intervals`` / deprecated ``mute_time_intervals`` item)."""

    name: str = Field(description="Name routes use in mute_time_intervals/active_time_intervals.")
    time_intervals: list[TimeIntervalSpec] = Field(
        default_factory=list, description="The interval is active when any of these matches."
    )

    @field_validator("name")
    @classmethod
    def _named(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a time interval needs a non-empty name")
        return v
