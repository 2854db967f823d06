"""Alertmanager receiver configs -> :class:`ReceiverConfig`, for people bringing their
alertmanager.yml. What keiko cannot honour (Go templates, http_config, other
integrations) is refused with an error naming the receiver, the key and the fix, never
silently dropped."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from alerting.notify.config import ReceiverConfig

# Alertmanager key -> keiko key, per config list; "<key>_file" maps to {file: PATH}.
_KEYS: dict[str, dict[str, str]] = {
    "webhook_configs": {"url": "url", "send_resolved": "send_resolved", "max_alerts": "max_alerts"},
    "slack_configs": {"api_url": "api_url", "channel": "channel", "send_resolved": "send_resolved"},
    "pagerduty_configs": {
        "routing_key": "routing_key",
        "url": "url",
        "send_resolved": "send_resolved",
        "severity": "severity",
    },
    "email_configs": {
        "to": "to",
        "from": "from",
        "smarthost": "smarthost",
        "auth_username": "auth_username",
        "auth_password": "auth_password",
        "require_tls": "require_tls",
        "send_resolved": "send_resolved",
    },
}
_SECRET_FILES = {
    "url_file": "url",
    "api_url_file": "api_url",
    "routing_key_file": "routing_key",
    "auth_password_file": "auth_password",
}
# Why a known key cannot be mapped, and what to do instead.
_FIXES = {
    "http_config": "keiko's channels have no http_config; use apprise_configs for proxies/auth",
    "service_key": "that is Events API v1; use an Events API v2 routing_key",
    "title": "Go templates are not evaluated; set templates.title ($-variables) on the receiver",
    "text": "Go templates are not evaluated; set templates.body ($-variables) on the receiver",
    "html": "Go templates are not evaluated; set templates.body ($-variables) on the receiver",
    "description": "Go templates are not evaluated; set templates.title on the receiver",
    "details": "Go templates are not evaluated; set templates.body on the receiver",
}


def receivers_from_alertmanager(raw: list[dict[str, Any]]) -> list[ReceiverConfig]:
    """Map Alertmanager ``receivers:`` entries; ValueError naming receiver, key and fix."""
    return [_receiver(k, entry) for k, entry in enumerate(raw)]


def _receiver(k: int, entry: dict[str, Any]) -> ReceiverConfig:
    if not isinstance(entry, dict) or not entry.get("name"):
        raise ValueError(f"receivers[{k}]: a receiver needs a name")
    name = entry["name"]
    doc: dict[str, Any] = {"name": name}
    for key, value in entry.items():
        if key == "name":
            continue
        if key not in _KEYS:
            raise ValueError(
                f"receiver {name!r}: {key} cannot be mapped to keiko; use apprise_configs with "
                f"the service's apprise URL (https://github.com/caronc/apprise/wiki)"
            )
        doc[key] = [_config(name, key, i, c) for i, c in enumerate(value or [])]
    try:
        return ReceiverConfig.model_validate(doc)
    except ValidationError as exc:
        raise ValueError(f"receiver {name!r}: {exc}") from None


def _config(name: str, key: str, i: int, config: dict[str, Any]) -> dict[str, Any]:
    known = _KEYS[key]
    out: dict[str, Any] = {}
    for field, value in config.items():
        where = f"receiver {name!r}: {key}[{i}].{field}"
        if field in known:
            out[known[field]] = value
        elif field in _SECRET_FILES and _SECRET_FILES[field] in known:
            out[_SECRET_FILES[field]] = {"file": value}
        elif field in _FIXES:
            raise ValueError(f"{where} cannot be mapped: {_FIXES[field]}")
        else:
            raise ValueError(
                f"{where} cannot be mapped to keiko; drop it or use apprise_configs with an "
                "apprise URL that expresses it"
            )
    if key == "email_configs" and "from" not in out:
        raise ValueError(
            f"receiver {name!r}: {key}[{i}] has no from (Alertmanager's global smtp_from is "
            "not read): set from on the config"
        )
    return out
