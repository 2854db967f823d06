"""Query parameters: parsed once, with a 400 that names the parameter when they are wrong."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from keiko.api.errors import BadParameter


def int_param(
    query: Mapping[str, str], name: str, default: int | None, low: int, high: int | None = None
) -> int | None:
    """An integer in ``[low, high]``, or ``default`` when absent."""
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise BadParameter(name, f"not an integer (got {text!r})") from None
    if value < low or (high is not None and value > high):
        allowed = f"{low}..{high}" if high is not None else f">= {low}"
        raise BadParameter(name, f"out of range (got {value}; allowed {allowed})")
    return value


def parse_time_ns(text: str) -> int:
    """RFC 3339 (``2024-05-01T10:00:00Z``) or unix seconds (``1714557600.5``) -> unix ns."""
    try:
        return int(float(text) * 1e9)
    except ValueError:
        pass
    when = datetime.fromisoformat(text)  # ValueError if neither form
    if when.tzinfo is None:
        raise ValueError("a time zone is required (e.g. Z or +02:00)")
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def time_param(query: Mapping[str, str], name: str) -> int | None:
    """A point in time as unix ns, or None when absent."""
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        return parse_time_ns(text)
    except ValueError as exc:
        raise BadParameter(
            name,
            f"not a time (got {text!r}): use RFC 3339 such as 2024-05-01T10:00:00Z "
            f"or unix seconds ({exc})",
        ) from None
