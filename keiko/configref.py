"""The config reference, generated from the models: defaults as YAML, JSON schema, Markdown.

The core model keeps component sections as open mappings (components are plug-ins), so
this module first builds the *full* model, with one field per installed component, and
derives everything from its fields and their descriptions. docs/config.md is its output.
"""

from __future__ import annotations

import json
import textwrap
import types
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, Field, create_model
from pydantic.fields import FieldInfo
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from keiko import humanize
from keiko.components import SECTIONS, registry
from keiko.config import KeikoConfig
from keiko.store.config import Strict
from keiko.units import parse_bytes, parse_duration, parse_endpoint

_SPECIAL = {parse_bytes: "size", parse_duration: "duration", parse_endpoint: "host:port"}
_SCALARS = {bool: "boolean", int: "integer", float: "number", str: "string", Path: "path"}


def full_model() -> type[KeikoConfig]:
    """KeikoConfig with each component section typed by the installed components' models."""
    specs = registry()
    fields: dict[str, Any] = {}
    for section in SECTIONS:
        members: dict[str, Any] = {
            name: (
                spec.config_model,
                Field(default_factory=spec.config_model, description=spec.description or None),
            )
            for (sec, name), spec in sorted(specs.items())
            if sec == section
        }
        model = create_model(f"{section.title()}Section", __base__=Strict, **members)
        model.__doc__ = KeikoConfig.model_fields[section].description
        fields[section] = (
            model,
            Field(default_factory=model, description=KeikoConfig.model_fields[section].description),
        )
    full: type[KeikoConfig] = create_model("KeikoConfig", __base__=KeikoConfig, **fields)
    full.__doc__ = KeikoConfig.__doc__
    return full


_SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*([kKmMgGtT]i?[bB]?|[bB])?\s*$"
# What the config types accept as input (the models store plain numbers and strings).
_INPUT_SCHEMAS: dict[Any, dict[str, Any]] = {
    parse_bytes: {
        "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": _SIZE_PATTERN}],
        "description": "bytes, or a size such as 512KiB, 64MiB, 10GiB",
    },
    parse_duration: {
        "anyOf": [
            {"type": "number", "minimum": 0},
            {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d|w))+$"},
        ],
        "description": "seconds, or a duration such as 250ms, 30s, 5m, 1h30m, 7d",
    },
    parse_endpoint: {"type": "string", "pattern": r"^.+:\d{1,5}$", "description": "host:port"},
}


class _InputSchema(GenerateJsonSchema):
    """Describes sizes, durations and endpoints by what a config file may write."""

    def function_before_schema(
        self, schema: core_schema.BeforeValidatorFunctionSchema
    ) -> JsonSchemaValue:
        known = _INPUT_SCHEMAS.get(schema["function"]["function"])
        return dict(known) if known else super().function_before_schema(schema)


def json_schema() -> dict[str, Any]:
    """The JSON schema of the whole config file (for editors and CI checks)."""
    schema = full_model().model_json_schema(mode="validation", schema_generator=_InputSchema)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "keiko config"
    return schema


# -- describing one field -----------------------------------------------------------------


def _special(metadata: list[Any]) -> str | None:
    for item in metadata:
        name = _SPECIAL.get(getattr(item, "func", None))  # type: ignore[arg-type]
        if name:
            return name
    return None


def _type_name(annotation: Any, metadata: list[Any] | None = None) -> str:
    special = _special(metadata or [])
    if special:
        return special
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        named = " or ".join(
            _type_name(get_args(a)[0] if get_args(a) else a, list(getattr(a, "__metadata__", ())))
            for a in inner
        )
        return f"{named} or null" if len(inner) < len(args) else named
    if origin is list:
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict or annotation is dict:
        return "mapping"
    if isinstance(annotation, type):
        if issubclass(annotation, Enum):
            return "one of: " + ", ".join(str(m.value) for m in annotation)
        if issubclass(annotation, BaseModel):
            return "mapping"
    return _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _constraints(info: FieldInfo) -> str:
    found = []
    for item in info.metadata:
        for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(item, attr, None) is not None:
                found.append(f"{symbol} {getattr(item, attr)}")
        if getattr(item, "pattern", None):
            found.append(f"matches `{item.pattern}`")
    return ", ".join(found)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def display_default(info: FieldInfo) -> Any:
    """The default as a person writes it in YAML (sizes and durations in units)."""
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    special = _special(info.metadata)
    if special == "size" and isinstance(value, int):
        return humanize.size(value)
    if special == "duration" and isinstance(value, int | float):
        return humanize.duration(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    return value


def _fields(model: type[BaseModel]) -> Iterator[tuple[str, FieldInfo, type[BaseModel] | None]]:
    for name, info in model.model_fields.items():
        yield name, info, _model_of(info.annotation)


# -- defaults as commented YAML -----------------------------------------------------------


def _scalar(value: Any) -> str:
    text: str = yaml.safe_dump([value], default_flow_style=True, width=1000).strip()
    return text[1:-1]  # drop the brackets of the one-element list


def _yaml_lines(model: type[BaseModel], indent: int) -> Iterator[str]:
    pad = "  " * indent
    for name, info, sub in _fields(model):
        if info.description:
            for line in textwrap.wrap(info.description, 96 - len(pad)):
                yield f"{pad}# {line}"
        default = info.get_default(call_default_factory=True)
        if sub is not None and get_origin(info.annotation) is dict:
            keys = ", ".join(sub.model_fields)
            yield f"{pad}{name}: {_scalar(default)}  # NAME: a mapping with: {keys}"
        elif sub is not None and get_origin(info.annotation) is list:
            keys = ", ".join(sub.model_fields)
            yield f"{pad}{name}: {_scalar(default)}  # a list of mappings with: {keys}"
        elif sub is not None and not sub.model_fields:
            yield f"{pad}{name}: {{}}  # none installed"
        elif sub is not None and default is not None:
            yield f"{pad}{name}:"
            yield from _yaml_lines(sub, indent + 1)
        elif sub is not None:
            keys = ", ".join(sub.model_fields)
            yield f"{pad}{name}: null  # a mapping with: {keys}"
        else:
            yield f"{pad}{name}: {_scalar(display_default(info))}"


def defaults_yaml() -> str:
    """Every key with its default value and description, as a YAML file `keiko run` takes."""
    head = [
        "# keiko config: every key with its default (generated by `keiko config defaults`).",
        "# Write only the keys you change; see docs/config.md for the reference.",
        "",
    ]
    return "\n".join([*head, *_yaml_lines(full_model(), 0)]) + "\n"


# -- Markdown reference -------------------------------------------------------------------

_INTRO = """\
# Configuration reference

keiko reads one YAML file: `keiko run --config keiko.yaml` (or `KEIKO_CONFIG=keiko.yaml`).
Every key is optional; a missing key takes the default below. Unknown keys are refused,
and `keiko config check keiko.yaml` names every problem with the key, the bad value and
what is allowed. `keiko config defaults` prints a complete file with every default.

**Environment overrides.** `KEIKO_<SECTION>__<KEY>__<SUBKEY>=value` sets one key, read as
YAML: `KEIKO_STORE__EMBEDDED__PATH=/var/lib/keiko`, `KEIKO_API__ENDPOINT=0.0.0.0:8470`,
`KEIKO_RECEIVERS__OTLP__GRPC__ENABLED=false`.

**Units.** A *size* is a number of bytes or a number with a unit: `512KiB`, `64MiB`,
`10GiB` (powers of 1024) or `64MB` (powers of 1000). A *duration* is seconds or a number
with units: `250ms`, `30s`, `5m`, `1h30m`, `7d`.

**Reload.** `SIGHUP` re-reads the file. Store retention and limits, logging, API auth and
`api.shutdown_grace` apply at once; the log says which changed keys need a restart.

*Generated by `keiko config docs` from the config models; edit their descriptions, not
this file.*
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _anchor(path: str) -> str:
    return path.replace(".", "").lower()  # GitHub drops the dots of a heading


def _section(model: type[BaseModel], path: str, ancestors: dict[type[BaseModel], str]) -> list[str]:
    """The table of ``model`` at ``path``, then its sub-models' tables; a model used again
    inside itself (a route's routes) links to its own table."""
    lines = [f"## {path}", ""]
    if model.__doc__ and not model.__doc__.startswith(("Create a new model", "!!!")):
        lines += [" ".join(model.__doc__.split()).replace("``", "`"), ""]
    if not model.model_fields:
        return [*lines, "No component of this kind is installed.", ""]
    lines += ["| key | type | default | description |", "|---|---|---|---|"]
    subsections = []
    for name, info, sub in _fields(model):
        kind = _type_name(info.annotation, info.metadata)
        limits = _constraints(info)
        kind += f" ({limits})" if limits else ""
        desc = info.description or ""
        if sub is not None:
            child = f"{path}.{name}"
            target = ancestors.get(sub, child)
            desc += f" See [{target}](#{_anchor(target)})."
            default = "" if info.get_default(call_default_factory=True) is not None else "`null`"
            if target == child:
                subsections.append((sub, child))
        elif info.is_required():
            default = "required"
        else:
            default = f"`{_scalar(display_default(info))}`"
        lines.append(f"| `{name}` | {_cell(kind)} | {_cell(default)} | {_cell(desc.strip())} |")
    lines.append("")
    for sub, child in subsections:
        lines += _section(sub, child, {**ancestors, sub: child})
    return lines


def docs_markdown() -> str:
    """docs/config.md: one table per config section, every key with type and default."""
    lines = [_INTRO]
    for name, _info, sub in _fields(full_model()):
        if sub is not None:
            lines += _section(sub, name, {sub: name})
    return "\n".join(lines).rstrip() + "\n"


def schema_json() -> str:
    """The JSON schema as indented text."""
    return json.dumps(json_schema(), indent=2) + "\n"
