"""Threshold rules: per matching series, alert while its latest value (or rate) crosses.

A series is a metric with its sorted attributes. Its condition is tested on every point
of it; the state moves in data time (the points' times, not arrival):

    inactive --holds--> pending --held `for_duration`--> firing --stops holding--> resolved
                           \\--stops holding--> inactive

A series without a point for ``stale_after`` is forgotten (resolved when it was firing).
Only firing and resolved are state changes worth an event; pending is visible in the
metrics. Each rule tracks at most ``max_series`` series (points of more are counted).
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alerting.slo.config import ThresholdRuleConfig
from alerting.slo.decode import Delta, Point, SeriesKey
from keiko import humanize

_LABEL = re.compile(r"[^A-Za-z0-9_]")
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


@dataclass(slots=True)
class Series:
    """One series of one rule."""

    attributes: dict[str, str]
    value: float
    seen_ns: int  # data time of its last point
    since_ns: int = 0  # when the condition began to hold (0: it does not)
    firing: bool = False


@dataclass(frozen=True, slots=True)
class RuleChange:
    """A series whose alert started or stopped firing."""

    rule: str
    key: SeriesKey
    series: Series
    firing: bool
    time_ns: int
    reason: str = ""  # resolved: "cleared" or "stale"


def series_id(key: SeriesKey) -> str:
    """A short stable id of a series."""
    h = hashlib.blake2b(digest_size=8)
    h.update(key[0].encode())
    for k, v in key[1]:
        h.update(b"\xff" + k.encode() + b"\xfe" + v.encode())
    return h.hexdigest()


def series_text(key: SeriesKey) -> str:
    """``metric{a="1",b="2"}``."""
    inner = ",".join(f'{k}="{v}"' for k, v in key[1])
    return f"{key[0]}{{{inner}}}"


@dataclass
class RuleBook:
    """Every rule's series and their states."""

    rules: dict[str, ThresholdRuleConfig]
    stale_after_s: float
    max_series: int
    series: dict[str, dict[SeriesKey, Series]] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)  # by reason
    _by_metric: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, rule in self.rules.items():
            self._by_metric.setdefault(rule.metric, []).append(name)
            self.series.setdefault(name, {})

    def metrics(self) -> frozenset[str]:
        """The metric names the rules read."""
        return frozenset(self._by_metric)

    def wants_delta(self, names: list[str]) -> bool:
        """Whether one of the rules ``names`` compares rates."""
        return any(self.rules[n].rate for n in names)

    def matching(self, point: Point) -> list[str]:
        """The rules whose metric and matchers ``point`` has."""
        names = self._by_metric.get(point.metric)
        if not names:
            return []
        a = point.attributes
        return [n for n in names if all(a.get(k) == v for k, v in self.rules[n].matchers.items())]

    def observe(self, point: Point, delta: Delta | None, names: list[str] | None = None) -> None:
        """Test the rules ``names`` (default: every rule ``point`` matches) against one
        point (``delta``: its increment, for rate rules)."""
        for name in self.matching(point) if names is None else names:
            rule = self.rules[name]
            if rule.rate:
                if point.kind != "sum":
                    self.dropped["rate_of_non_sum"] += 1
                    continue
                if delta is None or delta.seconds <= 0:
                    continue  # a baseline: the rate starts with the next point
                value = delta.counts[0] / delta.seconds
            elif point.kind == "histogram":
                self.dropped["histogram"] += 1
                continue
            else:
                value = point.value
            self._update(name, rule, point, value)

    def _update(self, name: str, rule: ThresholdRuleConfig, point: Point, value: float) -> None:
        held = self.series[name]
        key = point.key()
        s = held.get(key)
        if s is None:
            if len(held) >= self.max_series:
                self.dropped["max_series"] += 1
                return
            s = held[key] = Series(dict(point.attributes), value, point.time_ns)
        elif point.time_ns < s.seen_ns:
            self.dropped["out_of_order"] += 1
            return
        s.value, s.seen_ns = value, point.time_ns
        if OPS[rule.op](value, rule.threshold):
            s.since_ns = s.since_ns or point.time_ns
        else:
            s.since_ns = 0

    def evaluate(self, now_ns: int) -> list[RuleChange]:
        """Move every series' state to ``now_ns``; the alerts that changed."""
        changes = []
        stale_ns = now_ns - int(self.stale_after_s * 1e9)
        for name, held in self.series.items():
            hold_ns = int(self.rules[name].for_duration * 1e9)
            for key in list(held):
                s = held[key]
                if s.seen_ns < stale_ns:
                    del held[key]
                    if s.firing:
                        changes.append(RuleChange(name, key, s, False, now_ns, "stale"))
                    continue
                fire = bool(s.since_ns) and now_ns - s.since_ns >= hold_ns
                if fire != s.firing:
                    s.firing = fire
                    why = "" if fire else "cleared"
                    changes.append(RuleChange(name, key, s, fire, now_ns, why))
        return changes

    def counts(self) -> dict[str, tuple[int, int]]:
        """(pending, firing) series per rule."""
        out = {}
        for name, held in self.series.items():
            firing = sum(1 for s in held.values() if s.firing)
            pending = sum(1 for s in held.values() if s.since_ns and not s.firing)
            out[name] = (pending, firing)
        return out

    def to_json(self) -> dict[str, Any]:
        """Series states (checkpoints)."""
        return {
            name: [
                [k[0], [list(p) for p in k[1]], s.value, s.seen_ns, s.since_ns, s.firing]
                for k, s in held.items()
            ]
            for name, held in self.series.items()
        }

    def restore(self, doc: dict[str, Any]) -> int:
        """Load the series of rules that still exist on the same metric; how many."""
        n = 0
        for name, rows in doc.items():
            rule = self.rules.get(name)
            if rule is None:
                continue
            held: dict[SeriesKey, Series] = {}
            for metric, attrs, value, seen, since, firing in rows:
                if metric != rule.metric:
                    continue
                key = (str(metric), tuple((str(a), str(b)) for a, b in attrs))
                held[key] = Series(dict(key[1]), float(value), int(seen), int(since), bool(firing))
            self.series[name] = held
            n += len(held)
        return n


def label_names(attributes: dict[str, str]) -> dict[str, str]:
    """Attributes as alert labels: ``service.name`` -> ``service_name`` (Prometheus'
    translation of OTLP names; label names allow only letters, digits and ``_``)."""
    return {_LABEL.sub("_", k): v for k, v in attributes.items()}


def threshold_event(book: RuleBook, change: RuleChange) -> dict[str, Any]:
    """The ``threshold`` event of a series' alert that started or stopped firing."""
    rule = book.rules[change.rule]
    s = change.series
    labels = {"alertname": change.rule, **label_names(s.attributes), **rule.labels}
    event: dict[str, Any] = {
        "type": "threshold",
        "id": f"rule:{change.rule}:{series_id(change.key)}",
        "status": "firing" if change.firing else "resolved",
        "rule": change.rule,
        "metric": rule.metric,
        "series": series_text(change.key),
        "labels": labels,
        "annotations": dict(rule.annotations),
        "value": s.value,
        "rate": rule.rate,
        "threshold": rule.threshold,
        "op": rule.op,
        "for": humanize.duration(rule.for_duration),
        "time": humanize.rfc3339(change.time_ns),
        "time_unix_nano": change.time_ns,
    }
    if change.reason:
        event["reason"] = change.reason
    return event
