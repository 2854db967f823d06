"""Numbers and times for people: the inverse of keiko.units, used by the CLI and the docs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_BINARY = (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024))
_SPANS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def size(n: int) -> str:
    """``10737418240`` -> ``"10GiB"``; exact multiples only (config values round-trip)."""
    for unit, factor in _BINARY:
        if n and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


def approx_size(n: int | None) -> str:
    """``1536`` -> ``"1.5 KiB"``, for tables (not meant to be parsed back)."""
    if n is None:
        return "-"
    for unit, factor in _BINARY:
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} B"


def duration(seconds: float) -> str:
    """``604800`` -> ``"7d"``, ``5400`` -> ``"1h30m"``, ``0.25`` -> ``"250ms"``."""
    if seconds and seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds != int(seconds):
        return f"{seconds}s"
    left, parts = int(seconds), []
    for unit, factor in _SPANS:
        if left >= factor:
            parts.append(f"{left // factor}{unit}")
            left %= factor
    return "".join(parts) or "0s"


def rfc3339(time_ns: int | None) -> str | None:
    """Unix nanoseconds -> ``2024-05-01T10:00:00.123456Z`` (microseconds), None stays None."""
    if time_ns is None:
        return None
    dt = _EPOCH + timedelta(microseconds=time_ns // 1000)  # exact, unlike a float timestamp
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
