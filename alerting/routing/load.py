"""Read an ``alertmanager.yml``: route, inhibit rules, time intervals and receivers.

Receivers are passed through as raw dicts (their notifier settings are mapped elsewhere);
``global``, ``templates`` and ``tracing`` are accepted but not used, and named in
``ignored`` so the caller can log them. Every problem names the key path and, where the
YAML gives it, the line; references (receivers, time intervals) are checked by building the
tree once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from alerting.routing.config import InhibitRuleConfig, RouteConfig, TimeIntervalConfig
from alerting.routing.timeintervals import TimeIntervals
from alerting.routing.tree import Route, build_tree
from keiko.config.load import format_errors
from keiko.store.config import Strict

IGNORED_KEYS = ("global", "templates", "tracing")


class AlertmanagerConfigError(ValueError):
    """The file is not a usable Alertmanager config; ``problems`` has one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(
            f"invalid Alertmanager config ({source}):\n" + "\n".join(f"  - {p}" for p in problems)
        )


class _AmFile(Strict):
    """The keys of an alertmanager.yml that keiko reads (others it ignores are removed first)."""

    route: RouteConfig = Field(description="The root of the routing tree.")
    receivers: list[dict[str, Any]] = Field(
        default_factory=list, description="Receivers, passed through untouched."
    )
    inhibit_rules: list[InhibitRuleConfig] = Field(
        default_factory=list, description="Inhibition rules."
    )
    time_intervals: list[TimeIntervalConfig] = Field(
        default_factory=list, description="Named time intervals."
    )
    mute_time_intervals: list[TimeIntervalConfig] = Field(
        default_factory=list, description="Deprecated name of time_intervals (merged with it)."
    )


@dataclass
class AlertmanagerConfig:
    """A validated Alertmanager config."""

    route: RouteConfig
    inhibit_rules: list[InhibitRuleConfig] = field(default_factory=list)
    time_intervals: list[TimeIntervalConfig] = field(default_factory=list)
    receivers: list[dict[str, Any]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    @property
    def receiver_names(self) -> set[str]:
        """Names of the receivers."""
        return {r["name"] for r in self.receivers}

    def tree(self) -> Route:
        """The routing tree (already checked by the loader)."""
        return build_tree(self.route, self.receiver_names, {t.name for t in self.time_intervals})

    def intervals(self) -> TimeIntervals:
        """The named time intervals, parsed."""
        return TimeIntervals(self.time_intervals)


def load_alertmanager(path_or_text: str | Path) -> AlertmanagerConfig:
    """Load and check an Alertmanager config from a file path or from YAML text."""
    source, text = _read(path_or_text)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        line = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        raise AlertmanagerConfigError(source, [f"{line}not valid YAML: {exc.problem}"]) from None
    except yaml.YAMLError as exc:
        raise AlertmanagerConfigError(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        hint = f"; {text!r} is not a file either" if source == "text" and "\n" not in text else ""
        raise AlertmanagerConfigError(
            source, [f"the top level must be a mapping with route:, receivers: ...{hint}"]
        )
    ignored = [k for k in IGNORED_KEYS if k in raw]
    body = {k: v for k, v in raw.items() if k not in IGNORED_KEYS}
    try:
        parsed = _AmFile.model_validate(body)
    except ValidationError as exc:
        lines = format_errors(exc, _AmFile)
        pairs = zip(exc.errors(), lines, strict=True)
        located = [_with_line(node, err["loc"], msg) for err, msg in pairs]
        raise AlertmanagerConfigError(source, located) from None
    cfg = AlertmanagerConfig(
        route=parsed.route,
        inhibit_rules=parsed.inhibit_rules,
        time_intervals=[*parsed.time_intervals, *parsed.mute_time_intervals],
        receivers=parsed.receivers,
        ignored=ignored,
    )
    _check(cfg, source)
    return cfg


def _read(path_or_text: str | Path) -> tuple[str, str]:
    """(source name, YAML text): a Path or an existing file's name is read, else it is text."""
    is_file = isinstance(path_or_text, Path) or (
        "\n" not in path_or_text and len(path_or_text) < 4096 and Path(path_or_text).is_file()
    )
    if not is_file:
        return "text", str(path_or_text)
    try:
        return str(path_or_text), Path(path_or_text).read_text()
    except OSError as exc:
        raise AlertmanagerConfigError(str(path_or_text), [f"cannot read: {exc.strerror}"]) from None


def _check(cfg: AlertmanagerConfig, source: str) -> None:
    """What the models alone cannot see: receiver names, unique names, references."""
    problems: list[str] = []
    seen: set[str] = set()
    for i, r in enumerate(cfg.receivers):
        name = r.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"receivers.{i}: every receiver needs a name")
        elif name in seen:
            problems.append(f"receivers.{i}: receiver name {name!r} is not unique")
        seen.add(str(name))
    names = [t.name for t in cfg.time_intervals]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.append(
            f"time_intervals: {dup!r} is defined more than once (time_intervals and "
            "mute_time_intervals share one namespace)"
        )
    if not problems:
        try:
            cfg.tree()
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise AlertmanagerConfigError(source, problems)


def _with_line(node: yaml.Node | None, loc: tuple[Any, ...], message: str) -> str:
    """Prefix ``message`` with the line of the deepest YAML node ``loc`` reaches."""
    line = None
    for part in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        node = _child(node, part)
    if node is not None:
        line = node.start_mark.line + 1
    return f"line {line}: {message}" if line else message


def _child(node: yaml.Node, part: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == part or (part == "continue_" and key.value == "continue"):
                return value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]
    return None
