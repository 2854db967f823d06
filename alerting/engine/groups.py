"""Aggregation groups and their timers, with Alertmanager's semantics, and escalation.

An alert goes into one group per route it matches, keyed by the route and the values of
the route's ``group_by`` labels. A new group flushes after ``group_wait`` (at once when
the alert started longer ago than that), then every ``group_interval``. At a flush the
group's receivers are told only what they have not been told (Alertmanager's
notification log): new firing alerts, the group resolving, or the same firing alerts
again after ``repeat_interval``. Silenced and inhibited alerts are left out; a route in
a mute time interval tells nobody. Resolved alerts leave the group once told.

Beyond Alertmanager: an escalation policy on the route adds receivers level by level
while the group's firing alerts are not all acknowledged; acknowledged groups are not
repeated; a route grouping by ``incident`` sends all alerts of one keiko incident (its own
alert, and any alert naming one of its services) as one notification, whatever its other
``group_by`` labels; alerts outside incidents group by those other labels.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from alerting.engine.correlate import INCIDENT_LABEL
from alerting.model import Alert, Notification

TOLD_MAX = 100_000  # notification counts kept per (receiver, group key); oldest go first


class RouteLike(Protocol):
    """What the dispatcher needs of a route (alerting.routing.tree.Route)."""

    id: str
    receiver: str
    group_by: frozenset[str] | None  # None: group_by ['...'] (every label)
    group_wait: float
    group_interval: float
    repeat_interval: float
    escalation: str | None
    remediation: list[str]

    def group_labels(self, labels: dict[str, str]) -> dict[str, str]: ...


@dataclass(frozen=True)
class Level:
    """One escalation level: these receivers, this long after the first notification."""

    after: float
    receivers: tuple[str, ...]


@dataclass
class Sent:
    """What one receiver was last told about one group (the notification log)."""

    firing: set[str]
    resolved: set[str]
    time: float
    count: int


@dataclass
class Group:
    """One aggregation group."""

    key: str
    route: RouteLike
    labels: dict[str, str]
    next_flush: float
    alerts: dict[str, Alert] = field(default_factory=dict)
    sent: dict[str, Sent] = field(default_factory=dict)
    first_notified: float | None = None  # escalation counts from here
    flushed: bool = False  # AM's hasFlushed: only before it does an old alert flush at once


@dataclass
class Flush:
    """What one flush decided: notifications, and remediation requests with their route."""

    group: Group
    notifications: list[Notification]
    remediations: list[str]  # action names to request (new firing alerts only)


@dataclass
class Hooks:
    """What the dispatcher asks the rest of the engine at a flush."""

    suppressed: Callable[[Alert], bool]  # silenced or inhibited now
    muted: Callable[[RouteLike, float], bool]  # the route is in a mute time interval
    acknowledged: Callable[[str], bool]  # by fingerprint
    evidence: Callable[[list[Alert]], list[dict[str, Any]]]
    incident_of: Callable[[dict[str, str]], str | None]


def group_key(route: RouteLike, labels: dict[str, str]) -> str:
    """``route-id:{"label":"value",...}`` like Alertmanager's group keys."""
    return f"{route.id}:{json.dumps(labels, sort_keys=True, separators=(',', ':'))}"


def notification_id(receiver: str, group: Group, firing: list[Alert], count: int) -> str:
    """The same group state told to the same receiver the same time gets the same id."""
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{receiver}\0{group.key}\0{count}\0".encode())
    for a in sorted(firing, key=lambda a: a.fp):
        h.update(f"{a.fp}@{a.starts_at:.3f};".encode())
    fps = {a.fp for a in firing}  # `a not in firing` compared dataclasses: O(n^2) per flush
    resolved = sorted(fp for fp in group.alerts if fp not in fps)
    h.update(",".join(resolved).encode())
    return h.hexdigest()


class Dispatcher:
    """Groups by key; ``insert`` alerts as they change, ``flush_due`` on a timer."""

    def __init__(
        self, hooks: Hooks, policies: dict[str, list[Level]], max_alerts_per_notification: int
    ) -> None:
        self.hooks = hooks
        self.policies = policies
        self.max_alerts = max_alerts_per_notification
        self.groups: dict[str, Group] = {}
        # fp -> [(route, group key, group labels)]: labels never change for a fingerprint,
        # so re-sent alerts skip the key building; cleared when incidents change.
        self._keys: dict[str, list[tuple[RouteLike, str, dict[str, str]]]] = {}
        # "receiver\0group key" -> notifications told. It outlives the group (as AM's nflog
        # entries do), so a group that re-forms (an alert firing again after its resolution
        # was told) never reuses an id the outbox has already delivered and would skip.
        self.told: dict[str, int] = {}

    def insert(self, alert: Alert, routes: Iterable[RouteLike], now: float) -> None:
        """File ``alert`` (new or changed) into the group of each route it matches."""
        keyed = self._keys.get(alert.fp)
        if keyed is None:
            keyed = self._keys[alert.fp] = self._keyed(alert, routes)
        for route, key, glabels in keyed:
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = Group(key, route, glabels, now + route.group_wait)
            if not group.flushed and alert.starts_at + route.group_wait < now:
                group.next_flush = min(group.next_flush, now)  # an old alert: flush soon
            group.alerts[alert.fp] = alert

    def _keyed(
        self, alert: Alert, routes: Iterable[RouteLike]
    ) -> list[tuple[RouteLike, str, dict[str, str]]]:
        incident = alert.labels.get(INCIDENT_LABEL) or self.hooks.incident_of(alert.labels)
        out = []
        for route in routes:
            if incident and route.group_by and INCIDENT_LABEL in route.group_by:
                # Grouping by incident: all of an incident's alerts are one notification,
                # whatever the route's other group_by labels.
                glabels = {INCIDENT_LABEL: incident}
            else:
                glabels = route.group_labels(alert.labels)
            out.append((route, group_key(route, glabels), glabels))
        return out

    def forget_keys(self, keep: Iterable[str] | None = None) -> None:
        """Drop cached group keys: all (incidents changed), or all but ``keep``'s."""
        if keep is None:
            self._keys.clear()
        else:
            kept = set(keep)
            self._keys = {fp: k for fp, k in self._keys.items() if fp in kept}

    def regroup(
        self, alerts: Iterable[Alert], routes: Callable[[Alert], Sequence[RouteLike]], now: float
    ) -> None:
        """Move alerts nobody was told about yet into their incident's group (called when
        an incident appears or grows, so its alerts that came first join it)."""
        for alert in alerts:
            moved = False
            for group in list(self.groups.values()):
                by = group.route.group_by
                if by is None or INCIDENT_LABEL not in by:
                    continue  # the route does not group by incident: the alert stays put
                told = any(
                    alert.fp in s.firing or alert.fp in s.resolved for s in group.sent.values()
                )
                if alert.fp in group.alerts and not told and INCIDENT_LABEL not in group.labels:
                    del group.alerts[alert.fp]
                    moved = True
                    if not group.alerts:
                        del self.groups[group.key]
            if moved:
                self.insert(alert, routes(alert), now)

    def next_due(self) -> float | None:
        """When the next flush is due (unix seconds), None with no groups."""
        return min((g.next_flush for g in self.groups.values()), default=None)

    def flush_due(self, now: float) -> list[Flush]:
        """Flush every group whose timer has fired."""
        out = []
        for group in [g for g in self.groups.values() if g.next_flush <= now]:
            flush = self._flush(group, now)
            if flush.notifications or flush.remediations:
                out.append(flush)
        return out

    def _flush(self, group: Group, now: float) -> Flush:
        route, hooks = group.route, self.hooks
        group.next_flush = now + route.group_interval
        group.flushed = True
        shown = [a for a in group.alerts.values() if not hooks.suppressed(a)]
        firing = [a for a in shown if not a.resolved(now)]
        resolved = {a.fp for a in shown if a.resolved(now)}
        notifications: list[Notification] = []
        remediations: list[str] = []
        # AM's MultiStage stops when silences/inhibition left no alert: nothing is told
        # and the log keeps what was told (no empty "resolved" notification).
        if shown and not hooks.muted(route, now):
            acked = bool(firing) and all(hooks.acknowledged(a.fp) for a in firing)
            told: set[str] = set().union(*(s.firing for s in group.sent.values()))
            for level, receiver in self._receivers(group, now, acked):
                note = self._tell(group, receiver, level, firing, resolved, acked, now)
                if note is not None:
                    notifications.append(note)
            if notifications and route.remediation and any(a.fp not in told for a in firing):
                remediations = list(route.remediation)
            for note in notifications:
                self._record(group, note, firing, resolved, now)
        self._schedule(group, now)
        for fp in [fp for fp, a in group.alerts.items() if a.resolved(now)]:
            del group.alerts[fp]  # told, silenced or never fired: resolved alerts leave
        if not group.alerts:
            del self.groups[group.key]
        return Flush(group, notifications, remediations)

    def _receivers(self, group: Group, now: float, acked: bool) -> list[tuple[int, str]]:
        """The route's receiver, plus escalation levels due while not acknowledged (and
        levels already told, so they hear how it ends)."""
        out = {group.route.receiver: 0}
        for k, level in enumerate(self.policies.get(group.route.escalation or "", []), 1):
            due = group.first_notified is not None and now >= group.first_notified + level.after
            for r in level.receivers:
                told = r in group.sent and bool(group.sent[r].firing)  # to hear the end
                if r not in out and ((due and not acked) or told):
                    out[r] = k
        return [(k, r) for r, k in out.items()]

    def _tell(
        self,
        group: Group,
        receiver: str,
        level: int,
        firing: list[Alert],
        resolved: set[str],
        acked: bool,
        now: float,
    ) -> Notification | None:
        sent = group.sent.get(receiver)
        fps = {a.fp for a in firing}
        if sent is None:
            needed = bool(firing)
        elif not fps <= sent.firing:
            needed = True
        elif not firing:
            needed = bool(sent.firing)
        elif not resolved <= sent.resolved and resolved & sent.firing:
            needed = True
        else:
            needed = not acked and now >= sent.time + group.route.repeat_interval
        if not needed:
            return None
        count = self._count(group, receiver)
        alerts = firing + [group.alerts[fp] for fp in sorted(resolved)]
        shown = alerts[: self.max_alerts] if self.max_alerts else alerts
        return Notification(
            id=notification_id(receiver, group, firing, count),
            receiver=receiver,
            group_key=group.key,
            group_labels=group.labels,
            status="firing" if firing else "resolved",
            alerts=[a.am_json(now) for a in shown],
            evidence=self.hooks.evidence(alerts),
            escalation_level=level,
            created=now,
            truncated_alerts=len(alerts) - len(shown),
        )

    def _record(
        self, group: Group, note: Notification, firing: list[Alert], resolved: set[str], now: float
    ) -> None:
        count = self._count(group, note.receiver)
        group.sent[note.receiver] = Sent({a.fp for a in firing}, set(resolved), now, count)
        told = f"{note.receiver}\0{group.key}"
        self.told.pop(told, None)  # re-inserted last: the oldest entries are dropped first
        self.told[told] = count
        while len(self.told) > TOLD_MAX:
            del self.told[next(iter(self.told))]
        if firing and group.first_notified is None:
            group.first_notified = now
        if not firing:
            group.first_notified = None  # resolved: a new episode escalates from the start

    def _count(self, group: Group, receiver: str) -> int:
        """The number of the next notification to ``receiver`` about this group key."""
        sent = group.sent.get(receiver)
        return (sent.count if sent else self.told.get(f"{receiver}\0{group.key}", 0)) + 1

    def _schedule(self, group: Group, now: float) -> None:
        """Next flush: the group interval, or sooner when an escalation level falls due."""
        policy = self.policies.get(group.route.escalation or "")
        if not policy or group.first_notified is None:
            return
        for level in policy:
            at = group.first_notified + level.after
            if at > now:
                group.next_flush = min(group.next_flush, at)
                return

    def snapshot(self) -> dict[str, Any]:
        """Timers and notification logs of every group (alerts are in the book)."""
        groups = [
            {
                "key": g.key,
                "route": g.route.id,
                "labels": g.labels,
                "next_flush": g.next_flush,
                "alerts": sorted(g.alerts),
                "first_notified": g.first_notified,
                "flushed": g.flushed,
                "sent": {
                    r: [sorted(s.firing), sorted(s.resolved), s.time, s.count]
                    for r, s in g.sent.items()
                },
            }
            for g in self.groups.values()
        ]
        return {"groups": groups, "told": dict(self.told)}

    def restore(
        self,
        doc: dict[str, Any] | list[dict[str, Any]],
        routes: dict[str, RouteLike],
        alerts: dict[str, Alert],
    ) -> int:
        """Rebuild groups whose route still exists; the number dropped (config changed)."""
        if isinstance(doc, list):  # a checkpoint from before the counts were kept
            doc = {"groups": doc, "told": {}}
        self.told = dict(doc["told"])
        dropped = 0
        for d in doc["groups"]:
            route = routes.get(d["route"])
            if route is None:
                dropped += 1
                continue
            g = Group(d["key"], route, d["labels"], d["next_flush"])
            g.alerts = {fp: alerts[fp] for fp in d["alerts"] if fp in alerts}
            g.first_notified = d["first_notified"]
            g.flushed = d.get("flushed", g.first_notified is not None)  # older checkpoints
            g.sent = {r: Sent(set(f), set(res), t, c) for r, (f, res, t, c) in d["sent"].items()}
            self.groups[g.key] = g
        return dropped
