"""Alertmanager API v2 ``PostableAlerts`` in, keiko :class:`Alert` s out.

The API validates a whole request before it stores it: one bad alert refuses the request
with a 400 naming the alert's index and the field (Alertmanager stores the valid ones and
reports the rest; keiko changes nothing on bad input). The engine decodes the stored
request with the same checks, so what was accepted is what is routed.

This is the hot path of alert ingest (both in the API and in the engine), hence the small
caches: label names and timestamps recur in every request Prometheus sends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from alerting.model import LABEL_NAME_MAX, LABEL_VALUE_MAX, LABELS_MAX, Alert, parse_time

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time (unset), which Alertmanager clients send
CACHE_MAX = 50_000
_good_names: set[str] = set()
_times: dict[str, float] = {}


class AlertsError(ValueError):
    """A request that cannot be accepted; the message names the alert and the field."""


def _pairs(doc: Any, i: int, key: str, names: bool) -> dict[str, str]:
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise AlertsError(f"alerts[{i}].{key}: must be an object of string values")
    if len(doc) > LABELS_MAX:
        raise AlertsError(f"alerts[{i}].{key}: {len(doc)} entries, at most {LABELS_MAX}")
    for k, v in doc.items():
        if not isinstance(v, str):
            raise AlertsError(f"alerts[{i}].{key}.{k}: must be a string, not {type(v).__name__}")
        if len(v) > LABEL_VALUE_MAX:
            raise AlertsError(
                f"alerts[{i}].{key}.{k}: value of {len(v)} bytes, at most {LABEL_VALUE_MAX}"
            )
        if names and k not in _good_names:
            if len(k) > LABEL_NAME_MAX or not LABEL_NAME.match(k):
                raise AlertsError(
                    f"alerts[{i}].{key}: invalid label name {k[:64]!r} (use [a-zA-Z_][a-zA-Z0-9_]*)"
                )
            if len(_good_names) < CACHE_MAX:
                _good_names.add(k)
    return doc


def _time(item: dict[str, Any], i: int, key: str) -> float:
    value = item.get(key)
    if value in (None, "", ZERO_TIME):
        return 0.0
    seen = _times.get(value) if isinstance(value, str) else None
    if seen is not None:
        return seen
    if not isinstance(value, str):
        raise AlertsError(f"alerts[{i}].{key}: must be an RFC 3339 time string")
    try:
        found = max(0.0, parse_time(value))  # Go's zero time in any precision: unset
    except ValueError as exc:
        raise AlertsError(f"alerts[{i}].{key}: {exc}") from None
    if len(_times) >= CACHE_MAX:
        _times.clear()
    _times[value] = found
    return found


def _checked(
    payload: bytes | str,
) -> Iterator[tuple[dict[str, Any], dict[str, str], dict[str, str], float, float]]:
    """``(item, labels, annotations, startsAt, endsAt)`` of each valid alert; AlertsError
    on the first problem."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AlertsError(f"body is not JSON: {exc}") from None
    if not isinstance(doc, list):
        raise AlertsError("body must be a JSON array of alerts (Alertmanager's PostableAlerts)")
    for i, item in enumerate(doc):
        if not isinstance(item, dict):
            raise AlertsError(f"alerts[{i}]: must be an object")
        labels = _pairs(item.get("labels"), i, "labels", True)
        if not labels:
            raise AlertsError(f"alerts[{i}].labels: at least one label is required")
        annotations = _pairs(item.get("annotations"), i, "annotations", False)
        starts, ends = _time(item, i, "startsAt"), _time(item, i, "endsAt")
        if ends and starts and ends < starts:
            raise AlertsError(f"alerts[{i}]: endsAt is before startsAt")
        if not isinstance(item.get("generatorURL", ""), str):
            raise AlertsError(f"alerts[{i}].generatorURL: must be a string")
        yield item, labels, annotations, starts, ends


def validate_alerts(payload: bytes | str) -> int:
    """Check a PostableAlerts body (the API, before storing it); the number of alerts."""
    return sum(1 for _ in _checked(payload))


def decode_alerts(
    payload: bytes | str, received: float, *, source: str = "api", evidence: bool = False
) -> list[Alert]:
    """Validate and decode a PostableAlerts body; AlertsError on the first problem.

    ``received`` stands in for a missing ``startsAt``. ``evidence``: take keiko's
    ``evidence`` field (only from keiko's own sources, never from the API)."""
    out = []
    for item, labels, notes, starts, ends in _checked(payload):
        ev = item.get("evidence") if evidence else None
        out.append(
            Alert(
                labels=labels,
                annotations=notes,
                starts_at=starts or received,
                ends_at=ends,
                generator_url=item.get("generatorURL", ""),
                source=source,
                evidence=ev if isinstance(ev, dict) else None,
            )
        )
    return out
