"""Named time intervals (Alertmanager's ``time_intervals``) and whether one is active at ``now``.

An interval is active when any of its items matches; an item matches when every field it
sets matches (``times`` end-exclusive, ``weekdays``/``days_of_month``/``months``/``years``
inclusive ranges, negative days counting from the end of the month), evaluated in the item's
``location`` (UTC by default, ``Local`` for the host's zone).
"""

from __future__ import annotations

import re
from calendar import monthrange
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from alerting.routing.config import TimeIntervalConfig, TimeIntervalSpec

Range = tuple[int, int]

WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
MONTHS = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
_HHMM = re.compile(r"(?:([01][0-9]|2[0-3]):([0-5][0-9]))|(24):(00)")


def parse_hhmm(text: str) -> int:
    """``"HH:MM"`` (00:00 to 24:00) -> minutes of the day."""
    m = _HHMM.fullmatch(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a time of day: use HH:MM from 00:00 to 24:00")
    hours, minutes = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return int(hours) * 60 + int(minutes)


def _split(text: str) -> tuple[str, str]:
    parts = str(text).strip().lower().split(":")
    if len(parts) == 1:
        return parts[0], parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"{text!r} is not a value or a range such as a:b")


def _int(text: str, what: str, original: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{original!r}: {text!r} is not a valid {what}") from None


def parse_weekday_range(text: str) -> Range:
    """``"monday:friday"`` or ``"sunday"`` -> (begin, end), 0 = Sunday."""
    a, b = _split(text)
    for name in (a, b):
        if name not in WEEKDAYS:
            raise ValueError(f"{text!r}: {name!r} is not a weekday; use e.g. monday:friday")
    begin, end = WEEKDAYS.index(a), WEEKDAYS.index(b)
    if begin > end:
        raise ValueError(
            f"{text!r}: the start day is after the end day; write a range over the weekend "
            "as two items, e.g. ['saturday', 'sunday'] or ['friday:saturday', 'sunday']"
        )
    return begin, end


def parse_day_range(text: str) -> Range:
    """``"1:5"``, ``"-3:-1"``, ``"15"`` -> (begin, end); negative counts from the month's end."""
    a, b = _split(text)
    begin, end = _int(a, "day of the month", text), _int(b, "day of the month", text)
    for day in (begin, end):
        if day == 0 or not -31 <= day <= 31:
            raise ValueError(f"{text!r}: {day} is not a day of the month (1..31 or -31..-1)")
    if begin < 0 < end:
        raise ValueError(f"{text!r}: the end day must be negative if the start day is")
    # As AM: catch ranges that are empty in every month (assuming the shortest, 28 days).
    if (28 + begin if begin < 0 else begin) > (28 + end if end < 0 else end):
        raise ValueError(f"{text!r}: the end day {end} is always before the start day {begin}")
    return begin, end


def parse_month_range(text: str) -> Range:
    """``"january:march"``, ``"12"`` -> (begin, end), 1 = January."""
    a, b = _split(text)
    nums = []
    for part in (a, b):
        n = MONTHS.index(part) + 1 if part in MONTHS else _int(part, "month", text)
        if not 1 <= n <= 12:
            raise ValueError(f"{text!r}: {part!r} is not a month (a name or 1..12)")
        nums.append(n)
    if nums[0] > nums[1]:
        raise ValueError(f"{text!r}: the end month is before the start month")
    return nums[0], nums[1]


def parse_year_range(text: str) -> Range:
    """``"2020:2022"`` or ``"2030"`` -> (begin, end)."""
    a, b = _split(text)
    begin, end = _int(a, "year", text), _int(b, "year", text)
    if begin <= 0 or end <= 0:
        raise ValueError(f"{text!r}: years must be positive")
    if begin > end:
        raise ValueError(f"{text!r}: the end year {end} is before the start year {begin}")
    return begin, end


def load_zone(name: str) -> tzinfo | None:
    """An IANA zone; ``"Local"`` -> None (the host's zone), ``"UTC"`` -> UTC."""
    if name == "Local":
        return None
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a time zone of the IANA database; use e.g. Europe/Berlin, "
            "America/New_York, UTC or Local"
        ) from None


@dataclass(frozen=True, slots=True)
class _Item:
    """One parsed item; None for a field means "any value"."""

    times: tuple[Range, ...] | None
    weekdays: tuple[Range, ...] | None
    days: tuple[Range, ...] | None
    months: tuple[Range, ...] | None
    years: tuple[Range, ...] | None
    zone: tzinfo | None
    local: bool

    def contains(self, now: float) -> bool:
        t = (
            datetime.fromtimestamp(now).astimezone()
            if self.local
            else (datetime.fromtimestamp(now, self.zone or UTC))
        )
        minute = t.hour * 60 + t.minute
        if self.times is not None and not any(a <= minute < b for a, b in self.times):
            return False
        if self.days is not None and not _day_matches(t, self.days):
            return False
        if self.months is not None and not _within(t.month, self.months):
            return False
        weekday = t.isoweekday() % 7  # 0 = Sunday, as AM (Go's time.Weekday)
        if self.weekdays is not None and not _within(weekday, self.weekdays):
            return False
        return self.years is None or _within(t.year, self.years)


def _within(value: int, ranges: Iterable[Range]) -> bool:
    return any(a <= value <= b for a, b in ranges)


def _day_matches(t: datetime, ranges: Iterable[Range]) -> bool:
    """AM's rule: negative days count from the month's end; ranges are clamped to the month
    and a range starting after the month's last day is skipped (31 in February)."""
    days = monthrange(t.year, t.month)[1]
    for begin, end in ranges:
        b = days + begin + 1 if begin < 0 else begin
        e = days + end + 1 if end < 0 else end
        if b > days:
            continue
        b, e = max(min(b, days), -days), max(min(e, days), -days)
        if b <= t.day <= e:
            return True
    return False


def _parse_item(spec: TimeIntervalSpec) -> _Item:
    def ranges(items: list[str] | None, parse: Callable[[str], Range]) -> tuple[Range, ...] | None:
        return None if items is None else tuple(parse(i) for i in items)

    zone = load_zone(spec.location) if spec.location else UTC
    return _Item(
        times=None if spec.times is None else tuple(tr.minutes() for tr in spec.times),
        weekdays=ranges(spec.weekdays, parse_weekday_range),
        days=ranges(spec.days_of_month, parse_day_range),
        months=ranges(spec.months, parse_month_range),
        years=ranges(spec.years, parse_year_range),
        zone=zone,
        local=spec.location == "Local",
    )


class TimeIntervals:
    """The named intervals of a config, parsed once; :meth:`active` answers at any ``now``."""

    def __init__(self, configs: Iterable[TimeIntervalConfig]) -> None:
        self._items: dict[str, tuple[_Item, ...]] = {}
        for cfg in configs:
            if cfg.name in self._items:
                raise ValueError(f"time interval {cfg.name!r} is defined twice; rename one")
            self._items[cfg.name] = tuple(_parse_item(s) for s in cfg.time_intervals)

    @property
    def names(self) -> set[str]:
        """The names defined."""
        return set(self._items)

    def active(self, name: str, now: float) -> bool:
        """Whether interval ``name`` contains ``now`` (unix seconds); KeyError if undefined."""
        return any(item.contains(now) for item in self._items[name])

    def any_active(self, names: Iterable[str], now: float) -> bool:
        """Whether any of ``names`` is active (a route's mute/active lists)."""
        return any(self.active(n, now) for n in names)
