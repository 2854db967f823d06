"""Load, override and validate the config; turn every problem into a message people can act on."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from keiko.components import SECTIONS, registry
from keiko.config.model import KeikoConfig

ENV_PREFIX = "KEIKO_"
# Environment variables that are not config overrides.
ENV_RESERVED = {"KEIKO_CONFIG"}


class ConfigError(Exception):
    """The config is invalid; ``problems`` holds one line per problem, each naming the key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid config ({source}):\n" + "\n".join(f"  - {p}" for p in problems))


def load_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> KeikoConfig:
    """Read ``path`` (YAML; none: all defaults), apply ``KEIKO_*`` overrides and validate."""
    env = os.environ if env is None else env
    source = str(path) if path else "defaults"
    raw: Any = {}
    if path:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(source, [f"cannot read the config file: {exc.strerror}"]) from exc
        except yaml.YAMLError as exc:
            raise ConfigError(source, [f"not valid YAML: {exc}"]) from exc
        if not isinstance(raw, dict):
            raise ConfigError(
                source, ["the top level must be a mapping of sections (store:, api: ...)"]
            )
    overrides = apply_env(raw, env)
    if overrides:
        source += " + " + ", ".join(overrides)
    return validate(raw, source)


def apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """Apply ``KEIKO_SECTION__KEY__SUBKEY=value`` overrides in place; return the names used.

    Values are read as YAML scalars or lists, so ``true``, ``8`` and ``[a, b]`` work.
    """
    used = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in ENV_RESERVED:
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not path:
            continue
        node = raw
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        try:
            node[path[-1]] = yaml.safe_load(env[name])
        except yaml.YAMLError:
            node[path[-1]] = env[name]
        used.append(name)
    return used


def validate(raw: dict[str, Any], source: str = "config") -> KeikoConfig:
    """Validate the core model, then every component section against its own model."""
    problems: list[str] = []
    try:
        config = KeikoConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, format_errors(exc, KeikoConfig)) from exc
    specs = registry()
    for section in SECTIONS:
        given: dict[str, Any] = getattr(config, section)
        known = sorted(name for sec, name in specs if sec == section)
        built: dict[str, Any] = {}
        for name, value in given.items():
            spec = specs.get((section, name))
            if spec is None:
                problems.append(
                    f"{section}.{name}: unknown component; known here: {', '.join(known) or 'none'}"
                )
                continue
            try:
                built[name] = spec.config_model.model_validate(value or {})
            except ValidationError as exc:
                problems += format_errors(exc, spec.config_model, prefix=(section, name))
        for name in known:
            built.setdefault(name, specs[(section, name)].config_model())
        setattr(config, section, built)
    if problems:
        raise ConfigError(source, problems)
    return config


def format_errors(
    exc: ValidationError, model: type[BaseModel], prefix: tuple[Any, ...] = ()
) -> list[str]:
    """One line per error: the dotted key, what is wrong, the value given and what is allowed."""
    lines = []
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            allowed = _fields_at(model, err["loc"][:-1])
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{key}: unknown key{hint}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        given = err.get("input")
        shown = "" if isinstance(given, dict) else f" (got {given!r})"
        lines.append(f"{key}: {msg}{shown}")
    return lines


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the nested model at ``loc`` (empty if it cannot be followed)."""
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        current = _model_in(annotation)
        if current is None:
            return []
    return sorted(getattr(current, "model_fields", {}))


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside ``X`` or ``X | None``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None
