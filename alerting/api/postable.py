"""Alertmanager API v2 ``PostableAlerts`` in, keiko :class:`Alert` s out.

The API validates a whole request before it stores it: one bad alert refuses the request
with a 400 naming the alert's index and the field (Alertmanager stores the valid ones and
reports the rest; keiko changes nothing on bad input). The engine decodes the stored
request with the same function, so what was accepted is what is routed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from alerting.model import LABEL_NAME_MAX, LABEL_VALUE_MAX, LABELS_MAX, Alert, parse_time

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time, which Alertmanager clients send


class AlertsError(ValueError):
    """A request that cannot be accepted; the message names the alert and the field."""


def _pairs(doc: Any, where: str, *, names: bool) -> dict[str, str]:
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise AlertsError(f"{where}: must be an object of string values")
    if len(doc) > LABELS_MAX:
        raise AlertsError(f"{where}: {len(doc)} entries, at most {LABELS_MAX}")
    for k, v in doc.items():
        if not isinstance(v, str):
            raise AlertsError(f"{where}.{k}: must be a string, not {type(v).__name__}")
        if len(v) > LABEL_VALUE_MAX:
            raise AlertsError(f"{where}.{k}: value of {len(v)} bytes, at most {LABEL_VALUE_MAX}")
        if names and (len(k) > LABEL_NAME_MAX or not LABEL_NAME.match(k)):
            raise AlertsError(
                f"{where}: invalid label name {k[:64]!r} (use [a-zA-Z_][a-zA-Z0-9_]*)"
            )
    return doc


def _time(doc: dict[str, Any], key: str, where: str) -> float:
    value = doc.get(key)
    if value in (None, "", ZERO_TIME):
        return 0.0
    if not isinstance(value, str):
        raise AlertsError(f"{where}.{key}: must be an RFC 3339 time string")
    try:
        return parse_time(value)
    except ValueError as exc:
        raise AlertsError(f"{where}.{key}: {exc}") from None


def decode_alerts(
    payload: bytes | str, received: float, *, source: str = "api", evidence: bool = False
) -> list[Alert]:
    """Validate and decode a PostableAlerts body; AlertsError on the first problem.

    ``received`` stands in for a missing ``startsAt``. ``evidence``: take keiko's
    ``evidence`` field (only from keiko's own sources, never from the API)."""
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AlertsError(f"body is not JSON: {exc}") from None
    if not isinstance(doc, list):
        raise AlertsError("body must be a JSON array of alerts (Alertmanager's PostableAlerts)")
    out = []
    for i, item in enumerate(doc):
        where = f"alerts[{i}]"
        if not isinstance(item, dict):
            raise AlertsError(f"{where}: must be an object")
        labels = _pairs(item.get("labels"), f"{where}.labels", names=True)
        if not labels:
            raise AlertsError(f"{where}.labels: at least one label is required")
        annotations = _pairs(item.get("annotations"), f"{where}.annotations", names=False)
        starts, ends = _time(item, "startsAt", where), _time(item, "endsAt", where)
        if ends and starts and ends < starts:
            raise AlertsError(f"{where}: endsAt is before startsAt")
        url = item.get("generatorURL", "")
        if not isinstance(url, str):
            raise AlertsError(f"{where}.generatorURL: must be a string")
        ev = item.get("evidence") if evidence else None
        out.append(
            Alert(
                labels=labels,
                annotations=annotations,
                starts_at=starts or received,
                ends_at=ends,
                generator_url=url,
                source=source,
                evidence=ev if isinstance(ev, dict) else None,
            )
        )
    return out
