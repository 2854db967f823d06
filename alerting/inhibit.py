"""Inhibition (Alertmanager's ``inhibit_rules``): firing source alerts mute target alerts.

A target alert (matching a rule's target matchers) is muted when some firing alert matches
the rule's source matchers and has the same values for every ``equal`` label (a label
missing on both sides counts as equal, as in AM). When the target also matches the source
matchers, only sources that do not match the target matchers count, so an alert never
inhibits itself, nor do two alerts matching both sides inhibit each other (AM's
``excludeTwoSidedMatch``); such an alert still inhibits pure targets.

:meth:`Inhibitor.update` indexes the firing sources of each rule by their tuple of ``equal``
values, so :meth:`Inhibitor.inhibited` costs O(rules) per alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from alerting.matchers import Matcher, all_match
from alerting.routing.config import InhibitRuleConfig


class AlertLike(Protocol):
    """What the inhibitor needs of an alert."""

    @property
    def labels(self) -> dict[str, str]: ...

    @property
    def fp(self) -> str: ...


@dataclass(slots=True)
class _Bucket:
    """Firing sources sharing one tuple of equal-label values."""

    any_fp: str  # some source alert
    one_sided_fp: str | None = None  # some source alert that does not match the target side


@dataclass(slots=True)
class _Rule:
    source: list[Matcher]
    target: list[Matcher]
    equal: tuple[str, ...]
    index: dict[tuple[str, ...], _Bucket] = field(default_factory=dict)

    def key(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        return tuple([labels.get(n, "") for n in self.equal])


class Inhibitor:
    """Answers "is this alert inhibited, and by which alert?" for a set of rules."""

    def __init__(self, rules: Iterable[InhibitRuleConfig]) -> None:
        self._rules = [_Rule(r.source(), r.target(), tuple(r.equal)) for r in rules]

    def update(self, firing: Iterable[AlertLike]) -> None:
        """Rebuild the per-rule source index from the alerts firing now."""
        for rule in self._rules:
            rule.index = {}
        for alert in firing:
            for rule in self._rules:
                if not all_match(rule.source, alert.labels):
                    continue
                key = rule.key(alert.labels)
                bucket = rule.index.get(key)
                if bucket is None:
                    bucket = rule.index[key] = _Bucket(alert.fp)
                if bucket.one_sided_fp is None and not all_match(rule.target, alert.labels):
                    bucket.one_sided_fp = alert.fp

    def inhibited(
        self, labels: Mapping[str, str], firing: Iterable[AlertLike] | None = None
    ) -> str | None:
        """The fingerprint of a firing alert inhibiting ``labels``, or None.

        With ``firing``, the index is rebuilt from it first (O(alerts)); without, the index
        of the last :meth:`update` is used (O(rules))."""
        if firing is not None:
            self.update(firing)
        for rule in self._rules:
            if not all_match(rule.target, labels):
                continue
            bucket = rule.index.get(rule.key(labels))
            if bucket is None:
                continue
            if not all_match(rule.source, labels):
                return bucket.any_fp
            if bucket.one_sided_fp is not None:  # both sides: only one-sided sources count
                return bucket.one_sided_fp
        return None
