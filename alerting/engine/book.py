"""Every alert keiko knows, by fingerprint, merged the way Alertmanager merges them.

A re-sent alert updates the one held (annotations, end time); an alert that comes back
after it resolved starts a new instance. Alerts without an end time end after
``resolve_timeout`` unless they are re-sent. Each change of state (new, resolved,
re-fired, acknowledged) is returned as a :class:`Change` so the stage can write it as an
event; plain re-sends are not changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alerting.model import Alert


@dataclass(frozen=True, slots=True)
class Change:
    """A state change of one alert: ``firing``, ``resolved`` or ``acknowledged``."""

    alert: Alert
    status: str
    by: str = ""
    comment: str = ""


class AlertBook:
    """Alerts by fingerprint, with acknowledgements; bounded by ``max_alerts``."""

    def __init__(self, resolve_timeout: float, max_alerts: int) -> None:
        self.resolve_timeout = resolve_timeout
        self.max_alerts = max_alerts
        self.alerts: dict[str, Alert] = {}
        self.acks: dict[str, dict[str, Any]] = {}  # fp -> {by, comment, time}
        self.refused = 0  # new alerts refused at the cap
        self.reported: set[str] = set()  # resolved alerts whose change was already returned

    def __len__(self) -> int:
        return len(self.alerts)

    def put(self, alert: Alert, now: float) -> tuple[Alert | None, Change | None]:
        """Merge ``alert`` in; the alert as held now (None if refused) and its change."""
        if alert.ends_at == 0:
            alert.ends_at, alert.timeout = now + self.resolve_timeout, True
        alert.updated_at = now
        held = self.alerts.get(alert.fp)
        if held is None:
            if len(self.alerts) >= self.max_alerts:
                self.refused += 1
                return None, None
            self.alerts[alert.fp] = alert
            return alert, self._new(alert, now)
        was_resolved = held.resolved(now)
        if was_resolved and alert.starts_at > held.ends_at:  # it came back: a new instance
            self.alerts[alert.fp] = alert
            self.acks.pop(alert.fp, None)
            self.reported.discard(alert.fp)
            return alert, self._new(alert, now)
        held.starts_at = min(held.starts_at, alert.starts_at) if alert.starts_at else held.starts_at
        held.ends_at, held.timeout = self._merged_end(held, alert, now)
        held.annotations = alert.annotations
        held.generator_url = alert.generator_url or held.generator_url
        held.updated_at = now
        if alert.evidence is not None:
            held.evidence = alert.evidence
        if not was_resolved and held.resolved(now):
            self.reported.add(held.fp)
            return held, Change(held, "resolved")
        if was_resolved and not held.resolved(now):  # firing again, merged (same startsAt)
            self.reported.discard(held.fp)
            return held, Change(held, "firing")
        return held, None

    @staticmethod
    def _merged_end(held: Alert, new: Alert, now: float) -> tuple[float, bool]:
        """Alertmanager's merge of end times (two Prometheus replicas send the same alert):
        among resolved ones the latest end wins; while firing, a later end the sender gave
        explicitly (not a resolve_timeout) is kept."""
        if new.resolved(now):
            if held.resolved(now) and held.ends_at > new.ends_at:
                return held.ends_at, held.timeout
        elif held.ends_at > new.ends_at and not held.timeout:
            return held.ends_at, held.timeout
        return new.ends_at, new.timeout

    def _new(self, alert: Alert, now: float) -> Change | None:
        if alert.resolved(now):  # sent already resolved: nothing to tell
            self.reported.add(alert.fp)
            return None
        return Change(alert, "firing")

    def resolve(self, fp: str, now: float) -> Change | None:
        """End an alert now (the API's resolve); None if unknown or already resolved."""
        held = self.alerts.get(fp)
        if held is None or held.resolved(now):
            return None
        held.ends_at, held.updated_at = now, now
        self.reported.add(fp)
        return Change(held, "resolved")

    def acknowledge(self, fp: str, by: str, comment: str, now: float) -> Change | None:
        """Mark a firing alert acknowledged (stops escalation); None if unknown/resolved."""
        held = self.alerts.get(fp)
        if held is None or held.resolved(now):
            return None
        self.acks[fp] = {"by": by, "comment": comment, "time": now}
        return Change(held, "acknowledged", by, comment)

    def expired(self, now: float) -> list[Change]:
        """Alerts whose end time has passed since the last call: their resolved changes.

        Called periodically; ``reported`` keeps each from being reported twice."""
        out = []
        for fp, alert in self.alerts.items():
            if alert.resolved(now) and fp not in self.reported:
                self.reported.add(fp)
                out.append(Change(alert, "resolved"))
        return out

    def forget_resolved(self, before: float) -> int:
        """Drop alerts resolved before ``before`` (history stays in the events)."""
        gone = [fp for fp, a in self.alerts.items() if 0 < a.ends_at < before]
        for fp in gone:
            del self.alerts[fp]
            self.acks.pop(fp, None)
            self.reported.discard(fp)
        return len(gone)

    def firing(self, now: float) -> list[Alert]:
        """Alerts not resolved at ``now``."""
        return [a for a in self.alerts.values() if not a.resolved(now)]

    def snapshot(self) -> dict[str, Any]:
        """JSON-able state for the checkpoint."""
        return {
            "alerts": [a.to_json() for a in self.alerts.values()],
            "acks": self.acks,
            "reported": sorted(self.reported),
        }

    def restore(self, doc: dict[str, Any]) -> None:
        """Rebuild from :meth:`snapshot` output."""
        self.alerts = {a.fp: a for a in map(Alert.from_json, doc["alerts"])}
        self.acks = doc["acks"]
        self.reported = set(doc["reported"])
