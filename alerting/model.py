"""What alerting passes between its parts: alerts, their fingerprints, outbox items.

An :class:`Alert` has Alertmanager's shape (labels identify it; annotations describe it;
``starts_at``/``ends_at`` bound it) plus keiko's ``evidence`` (root causes, traces) for
alerts that come from keiko's own incidents. Times are unix seconds (floats) inside keiko
and RFC 3339 on the wire. An :class:`OutboxItem` is one delivery owed to one target (a
receiver's notification or a remediation action) in the persistent outbox stream.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Streams of the alerting stages (created on first append).
ALERTS_STREAM = "alerts"  # accepted alerts (API, keiko events, rules) and acks/resolves
OUTBOX_STREAM = "outbox"  # owed deliveries: one record per (target, notification/action)
ALERTS_KIND = "keiko.alerts+json"  # payload: {"op": "alerts"|"ack"|"resolve", ...}
OUTBOX_KIND = "keiko.outbox+json"  # payload: OutboxItem.to_json()

LABEL_NAME_MAX = 256
LABEL_VALUE_MAX = 16 * 1024  # a bigger value is refused with a 400 (huge labels)
LABELS_MAX = 128


def fingerprint(labels: dict[str, str]) -> str:
    """A stable 16-hex-digit id of a label set (like Alertmanager's, not bit-equal to it:
    blake2b over the sorted pairs costs ~1 µs, an FNV loop in Python ~20 µs)."""
    text = "".join(f"{k}\xff{v}\xff" for k, v in sorted(labels.items()))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def rfc3339(unix_s: float) -> str:
    """Unix seconds as RFC 3339 with milliseconds, UTC (``Z``)."""
    moment = datetime.fromtimestamp(unix_s, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(text: str) -> float:
    """RFC 3339 (``Z`` or an offset, any fraction) -> unix seconds; ValueError naming it."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError, TypeError):
        raise ValueError(f"{text!r} is not an RFC 3339 time such as 2026-11-24T06:00:00Z") from None


@dataclass(slots=True)
class Alert:
    """One alert as keiko holds it; ``ends_at`` 0 means "until resolve_timeout"."""

    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: float = 0.0
    ends_at: float = 0.0
    generator_url: str = ""
    source: str = "api"  # api | keiko | rule | slo
    updated_at: float = 0.0
    evidence: dict[str, Any] | None = None  # keiko incidents: root causes, traces, path, links
    fp: str = ""
    timeout: bool = False  # ends_at came from resolve_timeout, not from the sender

    def __post_init__(self) -> None:
        if not self.fp:
            self.fp = fingerprint(self.labels)

    def resolved(self, now: float) -> bool:
        """Whether the alert has ended by ``now``."""
        return 0 < self.ends_at <= now

    def to_json(self) -> dict[str, Any]:
        """Keiko's own JSON of the alert (stream records, checkpoints, events)."""
        doc: dict[str, Any] = {
            "labels": self.labels,
            "annotations": self.annotations,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "generator_url": self.generator_url,
            "source": self.source,
            "updated_at": self.updated_at,
            "fp": self.fp,
        }
        if self.timeout:
            doc["timeout"] = True
        if self.evidence is not None:
            doc["evidence"] = self.evidence
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Alert:
        """The inverse of :meth:`to_json`."""
        return cls(
            labels=doc["labels"],
            annotations=doc.get("annotations", {}),
            starts_at=doc.get("starts_at", 0.0),
            ends_at=doc.get("ends_at", 0.0),
            generator_url=doc.get("generator_url", ""),
            source=doc.get("source", "api"),
            updated_at=doc.get("updated_at", 0.0),
            evidence=doc.get("evidence"),
            fp=doc.get("fp", ""),
            timeout=doc.get("timeout", False),
        )

    def am_json(self, now: float) -> dict[str, Any]:
        """Alertmanager's webhook shape of the alert (status, RFC 3339 times)."""
        return {
            "status": "resolved" if self.resolved(now) else "firing",
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": rfc3339(self.starts_at),
            "endsAt": rfc3339(self.ends_at) if self.ends_at else "0001-01-01T00:00:00Z",
            "generatorURL": self.generator_url,
            "fingerprint": self.fp,
        }


@dataclass(slots=True)
class Notification:
    """What one receiver is told about one aggregation group at one flush.

    ``id`` is the deduplication key: the same group state told to the same receiver at the
    same repeat count gets the same id, so a flush replayed after a restart is sent once."""

    id: str
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    status: str  # firing | resolved
    alerts: list[dict[str, Any]]  # Alert.am_json() of each alert
    evidence: list[dict[str, Any]] = field(default_factory=list)  # incidents it belongs to
    escalation_level: int = 0
    created: float = 0.0
    truncated_alerts: int = 0

    def common(self, key: str) -> dict[str, str]:
        """Labels or annotations (``key``) every alert shares."""
        if not self.alerts:
            return {}
        first = dict(self.alerts[0][key])
        for a in self.alerts[1:]:
            first = {k: v for k, v in first.items() if a[key].get(k) == v}
        return first

    def to_json(self) -> dict[str, Any]:
        """JSON of the notification (the outbox item's body)."""
        return {
            "id": self.id,
            "receiver": self.receiver,
            "group_key": self.group_key,
            "group_labels": self.group_labels,
            "status": self.status,
            "alerts": self.alerts,
            "evidence": self.evidence,
            "escalation_level": self.escalation_level,
            "created": self.created,
            "truncated_alerts": self.truncated_alerts,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Notification:
        """The inverse of :meth:`to_json`."""
        return cls(**doc)


@dataclass(slots=True)
class OutboxItem:
    """One delivery owed to one target: ``kind`` notification (target = receiver name) or
    remediation (target = action name). ``id`` is unique per delivery (dedup key)."""

    id: str
    kind: str  # notification | remediation
    target: str
    body: dict[str, Any]
    created: float

    def encode(self) -> bytes:
        """The stream record's payload."""
        return json.dumps(
            {
                "id": self.id,
                "kind": self.kind,
                "target": self.target,
                "body": self.body,
                "created": self.created,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, payload: bytes) -> OutboxItem:
        """The inverse of :meth:`encode`; ValueError/KeyError on a bad payload."""
        doc = json.loads(payload)
        return cls(doc["id"], doc["kind"], doc["target"], doc["body"], doc["created"])
