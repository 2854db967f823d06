"""The alert engine stage: reads the ``alerts`` stream, keeps alert state, routes, groups,
and owes notifications and remediation to the outbox.

Everything that changes an alert comes through the ``alerts`` stream (the API's accepted
requests, keiko's own alerts, acknowledgements), so a restart replays exactly what was
accepted after the last checkpoint. Each state change of an alert is an ``alert`` event.
Flushes become :class:`~alerting.model.OutboxItem` records on the ``outbox`` stream with
ids that repeat when a replay repeats a flush, so the outbox delivers them once.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from alerting.api.postable import AlertsError, decode_alerts
from alerting.engine.book import AlertBook, Change
from alerting.engine.correlate import SERVICE_LABELS, Correlator
from alerting.engine.groups import Dispatcher, Flush, Hooks, Level, RouteLike
from alerting.inhibit import Inhibitor
from alerting.model import (
    ALERTS_KIND,
    ALERTS_STREAM,
    OUTBOX_KIND,
    OUTBOX_STREAM,
    Alert,
    OutboxItem,
    rfc3339,
)
from alerting.routing.timeintervals import TimeIntervals
from alerting.routing.tree import Route
from alerting.silencekeeper import SilenceKeeper
from keiko.components import Context
from keiko.errors import KeikoError
from keiko.records import Kind, NewRecord, Record
from keiko.stream.config import CheckpointConfig
from keiko.stream.worker import StreamWorker, WorkerStats

log = logging.getLogger(__name__)
OPS_KIND = "keiko.alert-op+json"  # {"op": "ack"|"resolve", "fp", "by", "comment"}
GROUP = "alerting"
MIN_FETCH_WAIT = 0.005  # seconds: a fetch that returns at once still yields to the loop


@dataclass
class EngineStats(WorkerStats):
    """Worker counters plus alerts by what happened to them."""

    alerts: Counter[str] = field(default_factory=Counter)  # received, firing, resolved ...
    notifications: Counter[str] = field(default_factory=Counter)  # by receiver
    remediations: Counter[str] = field(default_factory=Counter)  # by action
    outbox_failures: int = 0


@dataclass
class Parts:
    """What the engine is built from (the component assembles it from config)."""

    tree: Route
    inhibitor: Inhibitor
    intervals: TimeIntervals
    silences: SilenceKeeper
    policies: dict[str, list[Level]]
    resolve_timeout: float
    max_alerts: int
    max_alerts_per_notification: int
    retention: float  # resolved alerts are kept this long for the API


class AlertEngine(StreamWorker):
    """The stage; ``lock`` (shared with the silences) guards the state against the API."""

    stats: EngineStats

    def __init__(
        self, parts: Parts, ctx: Context, checkpoint: CheckpointConfig, fetch_batch: int
    ) -> None:
        super().__init__(
            ctx,
            name="alerting",
            stream=ALERTS_STREAM,
            group=GROUP,
            checkpoint=checkpoint,
            fetch_batch=fetch_batch,
            fetch_timeout=0.2,  # the timers need ticks even when nothing arrives
            checkpoint_name="engine",
            stats=EngineStats(),
        )
        self.parts = parts
        self.lock = parts.silences.lock  # one lock for alerts and silences
        self.book = AlertBook(parts.resolve_timeout, parts.max_alerts)
        self.correlator = Correlator()
        self.routes_by_id: dict[str, RouteLike] = {r.id: r for r in parts.tree.walk()}
        self._routes: dict[str, list[Route]] = {}  # fp -> matched routes (labels never change)
        hooks = Hooks(
            suppressed=self._suppressed,
            muted=self._muted,
            acknowledged=lambda fp: fp in self.book.acks,
            evidence=self.correlator.evidence,
            incident_of=self.correlator.incident_of,
        )
        self.dispatcher = Dispatcher(hooks, parts.policies, parts.max_alerts_per_notification)
        self.pending: list[OutboxItem] = []  # decided, not yet in the outbox stream
        self._inhibit_dirty = True
        self._last_gc = 0.0

    # -- routing helpers ----------------------------------------------------------------------

    def routes(self, alert: Alert) -> list[Route]:
        """The routes ``alert`` matches (cached by fingerprint)."""
        found = self._routes.get(alert.fp)
        if found is None:
            found = self._routes[alert.fp] = self.parts.tree.match(alert.labels)
        return found

    def _suppressed(self, alert: Alert) -> bool:
        now = time.time()
        if self.parts.silences.silences.silenced_by(alert.labels, now):
            return True
        return self.parts.inhibitor.inhibited(alert.labels) is not None

    def _muted(self, route: RouteLike, now: float) -> bool:
        intervals = self.parts.intervals
        r: Any = route
        if any(intervals.active(name, now) for name in r.mute_time_intervals):
            return True
        active = r.active_time_intervals
        return bool(active) and not any(intervals.active(name, now) for name in active)

    def status(self, alert: Alert, now: float) -> dict[str, Any]:
        """Alertmanager's alert status: state, silencedBy, inhibitedBy."""
        silenced = self.parts.silences.silences.silenced_by(alert.labels, now)
        inhibitor = self.parts.inhibitor.inhibited(alert.labels)
        inhibited = [inhibitor] if inhibitor else []
        state = "suppressed" if silenced or inhibited else "active"
        return {"state": state, "silencedBy": silenced, "inhibitedBy": inhibited}

    # -- StreamWorker hooks -------------------------------------------------------------------

    def process(self, records: list[Record]) -> list[NewRecord]:
        """Fold accepted alerts and operations into the state; their changes as events."""
        changes: list[Change] = []
        for record in records:
            now = time.time()
            try:
                with self.lock:
                    changes.extend(self._apply(record, now))
            except (AlertsError, ValueError, KeyError, TypeError) as exc:
                self.stats.skipped_records["undecodable"] += 1
                log.warning("alerting: alerts record %d not read: %s", record.offset, exc)
        return [self._change_event(c) for c in changes]

    def _apply(self, record: Record, now: float) -> list[Change]:
        if record.kind == OPS_KIND:
            return self._operation(json.loads(record.payload), now)
        if record.kind != ALERTS_KIND:
            self.stats.skipped_records["kind"] += 1
            return []
        keiko = record.key != "api"
        source = record.key or "api"
        alerts = decode_alerts(record.payload, record.time_ns / 1e9, source=source, evidence=keiko)
        self.stats.alerts["received"] += len(alerts)
        changes = []
        for alert in alerts:
            held, change = self.book.put(alert, now)
            if held is None:
                self.stats.alerts["refused"] += 1
                continue
            grown = self.correlator.observe(held, now) if keiko else None
            if grown is not None:
                self.dispatcher.forget_keys()  # alerts of its services group with it now
            self.dispatcher.insert(held, self.routes(held), now)
            if grown is not None:
                self._join(grown.services, now)
            if change is not None:
                changes.append(change)
                self._inhibit_dirty = True
        return changes

    def _join(self, services: set[str], now: float) -> None:
        """An incident appeared or grew: its services' alerts join its groups."""
        members = [
            a
            for a in self.book.firing(now)
            if any(a.labels.get(k) in services for k in SERVICE_LABELS)
        ]
        self.dispatcher.regroup(members, self.routes, now)

    def _operation(self, op: dict[str, Any], now: float) -> list[Change]:
        fp, by, comment = op["fp"], op.get("by", ""), op.get("comment", "")
        if op["op"] == "ack":
            change = self.book.acknowledge(fp, by, comment, now)
        elif op["op"] == "resolve":
            change = self.book.resolve(fp, now)
            if change is not None:
                self.dispatcher.insert(change.alert, self.routes(change.alert), now)
        else:
            raise ValueError(f"unknown operation {op['op']!r}")
        return [change] if change is not None else []

    def fetch_wait(self) -> float:
        """Up to the next group timer, so a group_wait of 100 ms takes 100 ms, not a tick."""
        with self.lock:
            due = self.dispatcher.next_due()
        if due is None:
            return self.fetch_timeout
        return min(self.fetch_timeout, max(MIN_FETCH_WAIT, due - time.time()))

    async def tick(self) -> list[NewRecord]:
        """Flush due groups into the outbox; resolve timed-out alerts; forget old ones."""
        now = time.time()
        events: list[NewRecord] = []
        with self.lock:
            expired = self.book.expired(now)
            if expired or self._inhibit_dirty:
                self.parts.inhibitor.update(self.book.firing(now))
                self._inhibit_dirty = False
            due = self.dispatcher.next_due()
            flushes = self.dispatcher.flush_due(now) if due is not None and due <= now else []
            for flush in flushes:
                self.pending.extend(self._items(flush, now))
                events.extend(self._flush_events(flush))
            if now - self._last_gc > 60:
                self._gc(now)
        events.extend(self._change_event(c) for c in expired)
        await self._send_pending()
        return events

    def _items(self, flush: Flush, now: float) -> list[OutboxItem]:
        items = []
        for note in flush.notifications:
            self.stats.notifications[note.receiver] += 1
            items.append(OutboxItem(note.id, "notification", note.receiver, note.to_json(), now))
        for action in flush.remediations:
            self.stats.remediations[action] += 1
            firing = [a for a in flush.group.alerts.values() if not a.resolved(now)]
            rid = f"{action}-{flush.notifications[0].id}" if flush.notifications else action
            body = {
                "request_id": rid,
                "action": action,
                "group_key": flush.group.key,
                "group_labels": flush.group.labels,
                "alerts": [a.am_json(now) for a in firing],
                "route": flush.group.route.id,
                "created": now,
            }
            items.append(OutboxItem(rid, "remediation", action, body, now))
        return items

    async def _send_pending(self) -> None:
        if not self.pending:
            return
        batch = list(self.pending)
        records = [NewRecord(OUTBOX_KIND, i.encode(), 1, i.target) for i in batch]
        try:
            await self.ctx.store.append(OUTBOX_STREAM, records)
        except KeikoError as exc:
            self.stats.outbox_failures += 1
            log.warning("alerting: %d outbox items wait (store: %s)", len(batch), exc)
            return
        with self.lock:
            del self.pending[: len(batch)]

    def _gc(self, now: float) -> None:
        self._last_gc = now
        gone = self.book.forget_resolved(now - self.parts.retention)
        if gone:
            live = self.book.alerts
            self._routes = {fp: r for fp, r in self._routes.items() if fp in live}
            self.dispatcher.forget_keys(live)

    # -- events -------------------------------------------------------------------------------

    def _change_event(self, change: Change) -> NewRecord:
        self.stats.alerts[change.status] += 1
        a = change.alert
        now = time.time()
        body: dict[str, Any] = {
            "type": "alert",
            "status": change.status,
            "fingerprint": a.fp,
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": rfc3339(a.starts_at),
            "source": a.source,
            "time": rfc3339(now),
            "time_unix_nano": int(now * 1e9),
        }
        if change.status == "resolved":
            body["endsAt"] = rfc3339(a.ends_at)
        if change.by or change.comment:
            body["by"], body["comment"] = change.by, change.comment
        return NewRecord(Kind.EVENT_JSON, json.dumps(body).encode(), 1, a.fp)

    def _flush_events(self, flush: Flush) -> list[NewRecord]:
        now = time.time()
        out = []
        for note in flush.notifications:
            body = {
                "type": "notification",
                "status": "queued",
                "id": note.id,
                "receiver": note.receiver,
                "group_key": note.group_key,
                "group_status": note.status,
                "alerts": [a["fingerprint"] for a in note.alerts],
                "escalation_level": note.escalation_level,
                "incidents": [e.get("id") for e in note.evidence],
                "time": rfc3339(now),
                "time_unix_nano": int(now * 1e9),
            }
            out.append(NewRecord(Kind.EVENT_JSON, json.dumps(body).encode(), 1, note.id))
        return out

    # -- checkpoints --------------------------------------------------------------------------

    def snapshot_parts(self) -> dict[str, bytes]:
        """Alerts, groups with their notification logs, incidents, undelivered outbox items."""
        with self.lock:
            doc = {
                "book": self.book.snapshot(),
                "groups": self.dispatcher.snapshot(),
                "incidents": self.correlator.snapshot(),
                "pending": [json.loads(i.encode()) for i in self.pending],
            }
        return {"engine": json.dumps(doc).encode()}  # the checkpoint store compresses

    def restore_parts(self, parts: dict[str, bytes]) -> str:
        """Rebuild the state; groups of routes that no longer exist are re-formed."""
        doc = json.loads(parts["engine"])
        book = AlertBook(self.parts.resolve_timeout, self.parts.max_alerts)
        book.restore(doc["book"])
        correlator = Correlator()
        correlator.restore(doc["incidents"])
        with self.lock:
            self.book = book
            self.correlator.incidents = correlator.incidents
            dropped = self.dispatcher.restore(doc["groups"], self.routes_by_id, book.alerts)
            grouped = {fp for g in self.dispatcher.groups.values() for fp in g.alerts}
            now = time.time()
            for alert in book.alerts.values():  # alerts of dropped groups, or a new tree
                if alert.fp not in grouped and not alert.resolved(now):
                    self.dispatcher.insert(alert, self.routes(alert), now)
            self.pending = [
                OutboxItem(d["id"], d["kind"], d["target"], d["body"], d["created"])
                for d in doc["pending"]
            ]
        extra = f", {dropped} groups of removed routes re-formed" if dropped else ""
        return f"{len(book)} alerts, {len(self.dispatcher.groups)} groups{extra}"

    def summary(self) -> str:
        """For the checkpoint log line."""
        return f"{len(self.book)} alerts, {len(self.dispatcher.groups)} groups"
