"""Config value types: byte sizes ("64MiB") and durations ("30s", "7d")."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_bytes(value: Any) -> int:
    """``1048576``, ``"1MiB"``, ``"64MB"``, ``"512k"`` -> bytes (KiB = 1024, kB = 1000)."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64MiB, not a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return int(value)
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(
            f"{value!r} is not a size: use a number of bytes or e.g. 512KiB, 64MiB, 10GiB"
        )
    unit = (m.group(2) or "").lower()
    unit = unit[:-1] if unit.endswith("b") else unit
    return int(float(m.group(1)) * _SIZE_UNITS[unit])


def parse_duration(value: Any) -> float:
    """``30``, ``"30s"``, ``"1h30m"``, ``"7d"``, ``"250ms"`` -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, not a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    text = str(value).strip().lower()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        raise ValueError(
            f"{value!r} is not a duration: use seconds or e.g. 250ms, 30s, 5m, 1h30m, 7d"
        )
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


ByteSize = Annotated[int, BeforeValidator(parse_bytes), PlainSerializer(int)]
Duration = Annotated[float, BeforeValidator(parse_duration), PlainSerializer(float)]


def parse_endpoint(value: Any) -> str:
    """Check ``host:port`` (``[::1]:4317`` for IPv6) and return it unchanged."""
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port, e.g. 0.0.0.0:4317 or 127.0.0.1:4318")
    return text


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``"[::1]:4317"`` -> ``("::1", 4317)``."""
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), int(port)


Endpoint = Annotated[str, BeforeValidator(parse_endpoint)]
