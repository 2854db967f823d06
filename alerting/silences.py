"""Silences with Alertmanager's semantics: states, API v2 shapes, update rules, matching.

A silence is *pending* before ``starts_at``, *active* until ``ends_at`` and *expired* after.
Updating a silence keeps its id only where AM does (same matchers, and for an active silence
the same start and an end not in the past; for a pending one a start not in the past);
otherwise the old silence is expired and the update becomes a new silence with a new id.
:meth:`Silences.silenced_by` pre-filters candidates by one equality matcher per silence, so
checking an alert costs about the number of its labels, not the number of silences.
"""

from __future__ import annotations

import builtins
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from alerting.matchers import (
    Matcher,
    MatcherError,
    all_match,
    matcher_from_json,
    matchers_json,
    matches_empty,
    sort_key,
)
from alerting.model import parse_time, rfc3339

SILENCES_MAX = 10_000  # not-yet-expired silences kept at once (bounded, like AM's limits)
# A regex that is only alternatives of plain text (no metacharacters): "eu-1|eu-2|us-1".
_LITERALS = re.compile(r"[\w\-/:@ ]+(?:\|[\w\-/:@ ]+)*")
_REQUIRED = ("matchers", "startsAt", "endsAt", "createdBy", "comment")


class SilenceError(ValueError):
    """A silence that cannot be created or changed; the message names the field."""


@dataclass
class Silence:
    """One silence; times are unix seconds."""

    id: str
    matchers: list[Matcher]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""
    updated_at: float = 0.0

    def state(self, now: float) -> str:
        """``pending``, ``active`` or ``expired`` at ``now``.

        AM expires a silence strictly after ``endsAt``; here at ``endsAt`` itself, so that a
        silence expired at ``now`` (``ends_at = now``) is expired at once."""
        if now < self.starts_at:
            return "pending"
        if now >= self.ends_at:
            return "expired"
        return "active"

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether every matcher matches ``labels`` (regardless of time)."""
        return all_match(self.matchers, labels)

    def to_api(self, now: float) -> dict[str, Any]:
        """AM API v2 ``GettableSilence``."""
        return {
            "id": self.id,
            "matchers": matchers_json(self.matchers),
            "startsAt": rfc3339(self.starts_at),
            "endsAt": rfc3339(self.ends_at),
            "updatedAt": rfc3339(self.updated_at),
            "createdBy": self.created_by,
            "comment": self.comment,
            "status": {"state": self.state(now)},
        }

    def to_json(self) -> dict[str, Any]:
        """keiko's own JSON (snapshots): unix-second times."""
        return {
            "id": self.id,
            "matchers": matchers_json(self.matchers),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "created_by": self.created_by,
            "comment": self.comment,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Silence:
        """The inverse of :meth:`to_json`."""
        return cls(
            id=doc["id"],
            matchers=[matcher_from_json(m) for m in doc["matchers"]],
            starts_at=float(doc["starts_at"]),
            ends_at=float(doc["ends_at"]),
            created_by=doc.get("created_by", ""),
            comment=doc.get("comment", ""),
            updated_at=float(doc.get("updated_at", 0.0)),
        )


def validate(s: Silence) -> None:
    """AM's checks of a silence's content (API or direct use); SilenceError naming the field."""
    if not s.matchers:
        raise SilenceError("matchers: at least one matcher is required")
    if all(matches_empty(m) for m in s.matchers):
        raise SilenceError(
            "matchers: at least one matcher must not match the empty string "
            '(a silence of only e.g. x=~".*" would silence everything); add e.g. alertname="X"'
        )
    if s.ends_at < s.starts_at:
        raise SilenceError("endsAt: the end time must not be before the start time")


def silence_from_api(doc: Any, now: float) -> Silence:
    """A silence from AM API v2's ``PostableSilence``; SilenceError naming the field."""
    if not isinstance(doc, dict):
        raise SilenceError("the body must be a JSON object with matchers, startsAt, endsAt, ...")
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise SilenceError(f"missing required field(s): {', '.join(missing)}")
    for key in ("createdBy", "comment"):
        if not isinstance(doc[key], str):  # required, but may be "" (as Alertmanager)
            raise SilenceError(f"{key}: must be a string")
    sid = doc.get("id") or ""
    if not isinstance(sid, str):
        raise SilenceError("id: must be a string (the id of the silence to update)")
    starts, ends = _time(doc, "startsAt"), _time(doc, "endsAt")
    if ends <= starts:
        raise SilenceError("endsAt: the start time must be before the end time")
    if ends < now:
        raise SilenceError("endsAt: the end time can't be in the past")
    s = Silence(sid, _matchers(doc["matchers"]), starts, ends, doc["createdBy"], doc["comment"])
    s.updated_at = now
    validate(s)
    return s


def _time(doc: dict[str, Any], key: str) -> float:
    try:
        return parse_time(doc[key])
    except ValueError as exc:
        raise SilenceError(f"{key}: {exc}") from None


def _matchers(raw: Any) -> list[Matcher]:
    if not isinstance(raw, list) or not raw:
        raise SilenceError("matchers: must be a non-empty list of {name, value, isRegex}")
    out = []
    for i, m in enumerate(raw):
        try:
            out.append(matcher_from_json(m))
        except MatcherError as exc:
            raise SilenceError(f"matchers[{i}]: {exc}") from None
    return out


def filter_matches(s: Silence, filters: Iterable[Matcher]) -> bool:
    """AM's ``?filter=`` on silences: the filter is applied to the silence's matchers read
    as a label set (name -> value), an empty-valued filter matching an absent name."""
    values = {m.name: m.value for m in s.matchers}
    for f in filters:
        present = f.name in values
        if f.value == "" and present != f.is_equal:
            continue
        if not f.matches_value(values.get(f.name, "")):
            return False
    return True


class Silences:
    """The set of silences (in memory; the caller persists :meth:`snapshot`)."""

    def __init__(self, limit: int = SILENCES_MAX) -> None:
        self._by_id: dict[str, Silence] = {}
        self._limit = limit
        self._index: dict[tuple[str, str], set[str]] = {}  # (name, value) -> silence ids
        self._scan: set[str] = set()  # silences with nothing to index by
        self._keys: dict[str, tuple[tuple[str, str], ...]] = {}  # id -> its index keys

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, sid: str) -> Silence | None:
        """A copy of the silence with id ``sid``, or None."""
        s = self._by_id.get(sid)
        return None if s is None else replace(s, matchers=list(s.matchers))

    def list(self, filter_matchers: Iterable[Matcher] | None = None) -> builtins.list[Silence]:
        """Copies of all silences, optionally only those ``filter_matchers`` select."""
        filters = list(filter_matchers or [])
        return [
            replace(s, matchers=list(s.matchers))
            for s in self._by_id.values()
            if filter_matches(s, filters)
        ]

    def upsert(self, s: Silence, now: float) -> str:
        """Create ``s`` or update the silence ``s.id``; return the id it is stored under.

        KeyError if ``s.id`` is given but unknown; SilenceError if invalid or over the limit."""
        validate(s)
        prev = self._by_id.get(s.id) if s.id else None
        if s.id and prev is None:
            raise KeyError(f"silence {s.id!r} not found")
        if prev is not None and _can_update(prev, s, now):
            self._store(replace(s, matchers=list(s.matchers), updated_at=now))
            return s.id
        # Counting the unexpired ones is O(n): only needed once the store is that big.
        if len(self._by_id) >= self._limit and self._live(now) >= self._limit:
            raise SilenceError(f"too many silences ({self._limit}); expire some or raise the limit")
        if s.ends_at < now:  # checked before expiring the old one, so a refusal changes nothing
            raise SilenceError("endsAt: the end time can't be in the past")
        if prev is not None and prev.state(now) != "expired":
            self.expire(prev.id, now)  # AM: a change it cannot apply in place replaces it
        new = replace(s, id=str(uuid.uuid4()), matchers=list(s.matchers), updated_at=now)
        new.starts_at = max(new.starts_at, now)
        self._store(new)
        return new.id

    def expire(self, sid: str, now: float) -> None:
        """End silence ``sid`` now (a pending one never starts); KeyError if unknown,
        SilenceError if it has already expired."""
        s = self._by_id.get(sid)
        if s is None:
            raise KeyError(f"silence {sid!r} not found")
        state = s.state(now)
        if state == "expired":
            raise SilenceError(f"silence {sid} already expired")
        if state == "pending":
            s.starts_at = now
        s.ends_at = now
        s.updated_at = now

    def silenced_by(self, labels: Mapping[str, str], now: float) -> builtins.list[str]:
        """Ids of the active silences matching ``labels`` (sorted)."""
        candidates = set(self._scan)
        for item in labels.items():
            hit = self._index.get(item)
            if hit:
                candidates |= hit
        out = []
        for sid in candidates:
            s = self._by_id[sid]
            if s.starts_at <= now < s.ends_at and s.matches(labels):
                out.append(sid)
        return sorted(out)

    def gc(self, now: float, retention: float) -> int:
        """Drop silences expired for longer than ``retention`` seconds; return how many."""
        old = [sid for sid, s in self._by_id.items() if s.ends_at + retention < now]
        for sid in old:
            self._drop(sid)
        return len(old)

    def snapshot(self) -> bytes:
        """All silences as bytes for :meth:`restore`."""
        doc = {"version": 1, "silences": [s.to_json() for s in self._by_id.values()]}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def restore(cls, data: bytes, limit: int = SILENCES_MAX) -> Silences:
        """The silences of a :meth:`snapshot`; ValueError on bytes it did not write."""
        try:
            doc = json.loads(data)
            if doc.get("version") != 1:
                raise ValueError(f"unknown snapshot version {doc.get('version')!r}")
            items = [Silence.from_json(d) for d in doc["silences"]]
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a silences snapshot: {exc}") from None
        out = cls(limit)
        for s in items:
            out._store(s)
        return out

    def _live(self, now: float) -> int:
        return sum(1 for s in self._by_id.values() if s.state(now) != "expired")

    def _store(self, s: Silence) -> None:
        if s.id in self._by_id:
            self._drop(s.id)
        self._by_id[s.id] = s
        keys = self._index_keys(s)
        self._keys[s.id] = keys
        if not keys:
            self._scan.add(s.id)
        for key in keys:
            self._index.setdefault(key, set()).add(s.id)

    def _index_keys(self, s: Silence) -> tuple[tuple[str, str], ...]:
        """Label pairs one of which every alert the silence matches must carry, so the
        silence need only be checked for alerts with one of them: a non-empty equality
        matcher's pair, or the pairs of a regex of plain alternatives (``a|b|c``). Of
        several choices, the one whose buckets are smallest now (``instance="a"`` rather
        than the ``alertname="Down"`` that thousands of silences share). Empty: scan."""
        choices: list[tuple[tuple[str, str], ...]] = []
        for m in sorted(s.matchers, key=sort_key):
            if m.op == "=" and m.value:
                choices.append(((m.name, m.value),))
            elif m.op == "=~" and _LITERALS.fullmatch(m.value):
                choices.append(tuple((m.name, v) for v in m.value.split("|")))
        return min(choices, key=lambda ks: sum(len(self._index.get(k, ())) for k in ks), default=())

    def _drop(self, sid: str) -> None:
        del self._by_id[sid]
        keys = self._keys.pop(sid)
        if not keys:
            self._scan.discard(sid)
        for key in keys:
            ids = self._index.get(key, set())
            ids.discard(sid)
            if not ids:
                self._index.pop(key, None)


def _can_update(prev: Silence, new: Silence, now: float) -> bool:
    """AM's ``canUpdate``: which changes keep the silence's id."""
    if sorted(prev.matchers, key=sort_key) != sorted(new.matchers, key=sort_key):
        return False
    state = prev.state(now)
    if state == "active":
        # Equal to the millisecond: the API's times have ms precision, and a client that
        # posts back what it read must keep the id (as it does with Alertmanager).
        same_start = abs(new.starts_at - prev.starts_at) < 0.001
        return same_start and new.ends_at >= now
    if state == "pending":
        return new.starts_at >= now
    return False
