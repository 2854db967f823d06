"""Time intervals, cases from Alertmanager's docs/configuration.md (``<time_interval>``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from alerting.routing.config import TimeIntervalConfig
from alerting.routing.timeintervals import TimeIntervals


def at(y: int, mo: int, d: int, h: int = 12, mi: int = 0) -> float:
    """A UTC wall-clock time as unix seconds."""
    return datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp()


def active(spec: dict[str, Any] | list[dict[str, Any]], now: float) -> bool:
    items = spec if isinstance(spec, list) else [spec]
    cfg = TimeIntervalConfig.model_validate({"name": "t", "time_intervals": items})
    return TimeIntervals([cfg]).active("t", now)


NINE_TO_FIVE = {"times": [{"start_time": "09:00", "end_time": "17:00"}]}

# (spec, now, expected) -- the comment names the documented rule.
CASES = [
    # time_range: "inclusive of the starting time and exclusive of the end time"
    (NINE_TO_FIVE, at(2024, 3, 4, 9, 0), True),
    (NINE_TO_FIVE, at(2024, 3, 4, 16, 59), True),
    (NINE_TO_FIVE, at(2024, 3, 4, 17, 0), False),
    (NINE_TO_FIVE, at(2024, 3, 4, 8, 59), False),
    # "start_time: '17:00' and end_time: '24:00' will begin at 17:00 and finish immediately
    # before 24:00"
    ({"times": [{"start_time": "17:00", "end_time": "24:00"}]}, at(2024, 3, 4, 23, 59), True),
    # several times: any may match
    (
        {"times": [{"start_time": "00:00", "end_time": "06:00"}, NINE_TO_FIVE["times"][0]]},
        at(2024, 3, 4, 5, 0),
        True,
    ),
    # weekday_range: "a list of days of the week ... ranges ... 'monday:friday'"
    ({"weekdays": ["monday:friday"]}, at(2024, 3, 8), True),  # Friday
    ({"weekdays": ["monday:friday"]}, at(2024, 3, 9), False),  # Saturday
    ({"weekdays": ["saturday", "sunday"]}, at(2024, 3, 10), True),  # Sunday
    # names are case-insensitive (timeinterval.go lower-cases them)
    ({"weekdays": ["Monday"]}, at(2024, 3, 4), True),
    # days_of_month_range: "Negative values are also accepted ... -1 represents the last day"
    ({"days_of_month": ["-1"]}, at(2024, 2, 29), True),  # leap year
    ({"days_of_month": ["-1"]}, at(2024, 2, 28), False),
    ({"days_of_month": ["-1"]}, at(2023, 2, 28), True),
    ({"days_of_month": ["-3:-1"]}, at(2024, 4, 28), True),  # April has 30 days: 28..30
    ({"days_of_month": ["-3:-1"]}, at(2024, 4, 27), False),
    ({"days_of_month": ["1:5"]}, at(2024, 4, 5), True),
    ({"days_of_month": ["1:5"]}, at(2024, 4, 6), False),
    ({"days_of_month": [1, 15]}, at(2024, 4, 15), True),  # YAML ints are accepted
    # "Extending past the start or end of the month will cause it to be clamped"
    ({"days_of_month": ["25:31"]}, at(2023, 2, 28), True),
    # timeinterval.go: a range starting after the month's last day is skipped in that month
    ({"days_of_month": ["30:31"]}, at(2023, 2, 28), False),
    ({"days_of_month": ["30:31"]}, at(2023, 3, 31), True),
    # month_range: names or numbers, ranges inclusive
    ({"months": ["january:march"]}, at(2024, 3, 31), True),
    ({"months": ["january:march"]}, at(2024, 4, 1), False),
    ({"months": ["12"]}, at(2024, 12, 1), True),
    ({"months": ["DECEMBER"]}, at(2024, 12, 1), True),
    # year_range: "['2020:2022', '2030']", inclusive
    ({"years": ["2020:2022", "2030"]}, at(2022, 12, 31), True),
    ({"years": ["2020:2022", "2030"]}, at(2023, 1, 1), False),
    # "For an instant of time to match a complete time interval, all fields must match"
    ({"weekdays": ["monday:friday"], **NINE_TO_FIVE}, at(2024, 3, 9, 10), False),  # Sat
    ({"weekdays": ["monday:friday"], **NINE_TO_FIVE}, at(2024, 3, 8, 10), True),
    # "If a field is left unspecified, any value will match the field"
    ({}, at(2024, 3, 8, 10), True),
    # an interval is active when any of its time_intervals matches
    ([{"weekdays": ["saturday"]}, {"months": ["march"]}], at(2024, 3, 8), True),
    ([{"weekdays": ["saturday"]}, {"months": ["april"]}], at(2024, 3, 8), False),
    # location: "If a time zone is not specified, then the times are taken to be in UTC"
    # and DST is followed: 13:30 UTC is 09:30 EDT in July but 08:30 EST in January
    ({**NINE_TO_FIVE, "location": "America/New_York"}, at(2024, 7, 1, 13, 30), True),
    ({**NINE_TO_FIVE, "location": "America/New_York"}, at(2024, 1, 8, 13, 30), False),
    # the zone also moves the weekday: Sunday 22:00 UTC is Monday 08:00 in Sydney (AEST)
    ({"weekdays": ["monday"], "location": "Australia/Sydney"}, at(2024, 6, 9, 22, 0), True),
    ({"weekdays": ["monday"]}, at(2024, 6, 9, 22, 0), False),
    # ...and the day of the month: 31 Jan 23:00 UTC is 1 Feb 00:00 in Berlin
    ({"days_of_month": ["1"], "location": "Europe/Berlin"}, at(2024, 1, 31, 23, 0), True),
    ({"location": "UTC", **NINE_TO_FIVE}, at(2024, 1, 8, 10), True),
]


@pytest.mark.parametrize(("spec", "now", "expected"), CASES)
def test_active(spec: dict[str, Any] | list[dict[str, Any]], now: float, expected: bool) -> None:
    assert active(spec, now) is expected


def test_local_uses_the_hosts_zone() -> None:
    now = at(2024, 3, 8, 10)
    hour = datetime.fromtimestamp(now).astimezone().hour
    spec = {"times": [{"start_time": f"{hour:02d}:00", "end_time": f"{hour + 1:02d}:00"}]}
    assert active({**spec, "location": "Local"}, now)


def test_an_interval_without_items_is_never_active() -> None:
    ti = TimeIntervals([TimeIntervalConfig(name="never")])
    assert not ti.active("never", at(2024, 1, 1))


def test_unknown_name_and_duplicates() -> None:
    ti = TimeIntervals([TimeIntervalConfig(name="a")])
    assert ti.names == {"a"}
    with pytest.raises(KeyError):
        ti.active("b", 0.0)
    with pytest.raises(ValueError, match="defined twice"):
        TimeIntervals([TimeIntervalConfig(name="a"), TimeIntervalConfig(name="a")])


# (spec, key, fragment) -- timeinterval.go's validation.
BAD = [
    ({"weekdays": ["saturday:sunday"]}, "weekdays", "start day is after the end day"),
    ({"weekdays": ["funday"]}, "weekdays", "not a weekday"),
    ({"weekdays": ["monday:tuesday:friday"]}, "weekdays", "range"),
    ({"days_of_month": ["0"]}, "days_of_month", "not a day of the month"),
    ({"days_of_month": ["32"]}, "days_of_month", "not a day of the month"),
    ({"days_of_month": ["-1:5"]}, "days_of_month", "must be negative"),
    ({"days_of_month": ["5:1"]}, "days_of_month", "always before"),
    ({"days_of_month": ["-1:-3"]}, "days_of_month", "always before"),
    ({"days_of_month": ["x"]}, "days_of_month", "not a valid day"),
    ({"months": ["february:january"]}, "months", "before the start month"),
    ({"months": ["13"]}, "months", "not a month"),
    ({"years": ["2022:2020"]}, "years", "before the start year"),
    ({"times": [{"start_time": "17:00", "end_time": "09:00"}]}, "times", "must be before"),
    ({"times": [{"start_time": "09:00", "end_time": "09:00"}]}, "times", "must be before"),
    ({"times": [{"start_time": "25:00", "end_time": "26:00"}]}, "times", "HH:MM"),
    ({"times": [{"start_time": "9:00", "end_time": "10:00"}]}, "times", "HH:MM"),
    ({"times": [{"start_time": "09:00"}]}, "times", "end_time"),
    ({"location": "Mars/Olympus"}, "location", "IANA"),
    ({"weekday": ["monday"]}, "weekday", "Extra inputs"),
]


@pytest.mark.parametrize(("spec", "key", "fragment"), BAD)
def test_invalid_specs_are_refused(spec: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as err:
        TimeIntervalConfig.model_validate({"name": "t", "time_intervals": [spec]})
    assert key in str(err.value) and fragment in str(err.value)
