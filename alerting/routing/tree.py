"""The routing tree built from a :class:`RouteConfig`, with Alertmanager's semantics.

Settings a route leaves unset (receiver, group_by, the three intervals, keiko's escalation
and remediation) are inherited from its parent; mute/active time intervals are not (as AM).
:meth:`Route.match` walks depth first: the first matching child wins unless it has
``continue``, and a route none of whose children match is itself the match.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from alerting.matchers import Matcher, all_match, format_matchers, sort_key
from alerting.routing.config import (
    DEFAULT_GROUP_INTERVAL,
    DEFAULT_GROUP_WAIT,
    DEFAULT_REPEAT_INTERVAL,
    RouteConfig,
)


class Route:
    """One node of the tree with its effective (inherited) settings."""

    def __init__(self, cfg: RouteConfig, parent: Route | None = None, position: int = 0) -> None:
        self.parent = parent
        self.receiver: str = cfg.receiver or (parent.receiver if parent else "")
        self._inherit_grouping(cfg, parent)
        self.group_wait: float = _pick(
            cfg.group_wait, parent.group_wait if parent else DEFAULT_GROUP_WAIT
        )
        self.group_interval: float = _pick(
            cfg.group_interval, parent.group_interval if parent else DEFAULT_GROUP_INTERVAL
        )
        self.repeat_interval: float = _pick(
            cfg.repeat_interval, parent.repeat_interval if parent else DEFAULT_REPEAT_INTERVAL
        )
        self.continue_ = cfg.continue_
        self.mute_time_intervals = list(cfg.mute_time_intervals)
        self.active_time_intervals = list(cfg.active_time_intervals)
        self.escalation: str | None = cfg.escalation or (parent.escalation if parent else None)
        # An explicit `remediation: []` stops inheritance; an unset one inherits.
        if parent is not None and "remediation" not in cfg.model_fields_set:
            self.remediation: list[str] = list(parent.remediation)
        else:
            self.remediation = list(cfg.remediation)
        self.matchers: list[Matcher] = sorted(cfg.all_matchers(), key=sort_key)
        # AM's Key(): the chain of matcher sets; group keys are built on it.
        matchers_text = format_matchers(self.matchers)
        self.key: str = f"{parent.key}/{matchers_text}" if parent else matchers_text
        # AM's ID() adds the position among siblings; chaining the parent's id (not key)
        # keeps it unique at any depth (equal to AM's for the root's children).
        self.id: str = f"{parent.id}/{matchers_text}/{position}" if parent else matchers_text
        self.routes = [Route(c, self, i) for i, c in enumerate(cfg.routes)]

    def _inherit_grouping(self, cfg: RouteConfig, parent: Route | None) -> None:
        if cfg.group_by is not None:
            self.group_by_all = cfg.group_by == ["..."]
            self.group_by: frozenset[str] | None = (
                None if self.group_by_all else frozenset(cfg.group_by)
            )
        elif parent is not None:
            self.group_by_all, self.group_by = parent.group_by_all, parent.group_by
        else:
            self.group_by_all, self.group_by = False, frozenset()

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes an alert with ``labels`` goes to (empty if this route does not match)."""
        if not all_match(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            hits = child.match(labels)
            found += hits
            if hits and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels an alert is grouped by on this route (only those it has)."""
        if self.group_by_all:
            return dict(labels)
        assert self.group_by is not None
        return {k: v for k, v in labels.items() if k in self.group_by}

    def group_key(self, labels: Mapping[str, str]) -> str:
        """AM's aggregation group key: ``route key:{group labels}``."""
        group = self.group_labels(labels)
        inner = ", ".join(f'{k}="{_escape(group[k])}"' for k in sorted(group))
        return f"{self.key}:{{{inner}}}"

    def walk(self) -> Iterator[Route]:
        """This route and its descendants, depth first."""
        yield self
        for child in self.routes:
            yield from child.walk()

    def path(self) -> str:
        """Where the route is in the config, e.g. ``route.routes[1].routes[0]``."""
        if self.parent is None:
            return "route"
        return f"{self.parent.path()}.routes[{self.parent.routes.index(self)}]"

    def __repr__(self) -> str:
        return f"Route({self.id!r}, receiver={self.receiver!r})"


def _pick(own: float | None, inherited: float) -> float:
    return inherited if own is None else own


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def build_tree(cfg: RouteConfig, receiver_names: set[str], interval_names: set[str]) -> Route:
    """The tree of ``cfg`` after AM's checks; ValueError naming the route path and the fix."""
    if not cfg.receiver:
        raise ValueError("route: the root route must have a receiver (the default one)")
    if cfg.all_matchers():
        raise ValueError("route: the root route must not have matchers (it matches every alert)")
    if cfg.mute_time_intervals or cfg.active_time_intervals:
        raise ValueError(
            "route: the root route must not have mute_time_intervals or active_time_intervals; "
            "put them on a child route"
        )
    if cfg.continue_:
        raise ValueError("route: the root route cannot have continue: true")
    root = Route(cfg)
    for route in root.walk():
        _check_names(route, receiver_names, interval_names)
    return root


def _check_names(route: Route, receivers: set[str], intervals: set[str]) -> None:
    if route.receiver not in receivers:
        known = ", ".join(sorted(receivers)) or "none"
        raise ValueError(
            f"{route.path()}: receiver {route.receiver!r} is not defined under receivers "
            f"(defined: {known})"
        )
    for name in [*route.mute_time_intervals, *route.active_time_intervals]:
        if name not in intervals:
            raise ValueError(
                f"{route.path()}: time interval {name!r} is not defined under time_intervals"
            )
