"""What a config reload changes, and which of those changes apply without a restart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from keiko.components import SECTIONS
from keiko.config import KeikoConfig

# Core keys that `keiko run` applies at run time; every other core key needs a restart.
RUNTIME_KEYS = (
    "store.retention.",
    "store.limits.",
    "logging.",
    "api.auth",
    "api.metrics_auth",
    "api.shutdown_grace",
)


@dataclass
class ConfigChanges:
    """Changed keys (dotted, values left out: they may be secrets), by how they apply."""

    applied: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)
    components: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.applied or self.restart or self.components)


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            _flatten(child, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def flat(config: KeikoConfig) -> dict[str, Any]:
    """``{"store.limits.retry_after": 1.0, ...}`` for every leaf of the config."""
    out: dict[str, Any] = {}
    _flatten(config.model_dump(mode="json"), "", out)
    return out


def _present_in_both(key: str, *sides: dict[str, Any]) -> str:
    """``key``, or its nearest ancestor that is a leaf on the side lacking ``key``."""
    parts = key.split(".")
    for side in sides:
        if key not in side:
            for end in range(len(parts) - 1, 0, -1):
                if ".".join(parts[:end]) in side:
                    return ".".join(parts[:end])
    return key


def diff(old: KeikoConfig, new: KeikoConfig) -> ConfigChanges:
    """The keys whose values differ, sorted into applied / needs restart / for components."""
    before, after = flat(old), flat(new)
    changed = set()
    for key in before.keys() | after.keys():
        if before.get(key, KeyError) != after.get(key, KeyError):
            # A section set where it was null (or the reverse) is one change, named by the
            # section: api.auth, not every key inside it.
            changed.add(_present_in_both(key, before, after))
    changes = ConfigChanges()
    for key in sorted(changed):
        if key.split(".", 1)[0] in SECTIONS:
            changes.components.append(key)
        elif any(
            key == k or key.startswith(k if k.endswith(".") else k + ".") for k in RUNTIME_KEYS
        ):
            changes.applied.append(key)
        else:
            changes.restart.append(key)
    return changes
