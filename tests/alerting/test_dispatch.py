"""Aggregation groups and notification, driven through ``Dispatcher`` with a real routing
tree, a real ``AlertBook``, real silences, inhibition rules, time intervals and incident
correlation, at injected times (no sleeping).

Each case cites the Alertmanager rule it checks: docs/configuration.md (``<route>``:
group_wait, group_interval, repeat_interval, continue, group_by, mute_time_intervals),
dispatch/dispatch.go (``aggrGroup``: insert, flush, deletion of resolved alerts),
notify/notify.go (``MuteStage``, ``TimeMuteStage``, ``MultiStage``, ``DedupStage.needsUpdate``)
and nflog (what was told to each receiver). keiko's additions (escalation, acknowledgement,
incident grouping, notification ids, checkpoints) cite alerting/engine/groups.py.

Times in the table are seconds after ``T0`` (05:00 UTC; the "maintenance" time interval
is 05:00-05:10 UTC). A notification is written ``receiver firing=A,B resolved=C`` (alert
names sorted), with `` L<n>`` for an escalation level.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from alerting.engine.book import AlertBook, Change
from alerting.engine.correlate import SERVICE_LABELS, Correlator
from alerting.engine.groups import Dispatcher, Hooks, Level, RouteLike
from alerting.inhibit import Inhibitor
from alerting.matchers import parse_matchers
from alerting.model import Alert, Notification, parse_time
from alerting.routing.load import load_alertmanager
from alerting.routing.tree import Route
from alerting.silences import Silence, Silences

T0 = parse_time("2026-11-24T05:00:00Z")
DAY = 86400.0

MAINTENANCE = {"start_time": "05:00", "end_time": "05:10"}
BASE: dict[str, Any] = {
    "route": {
        "receiver": "ops",
        "group_by": ["cluster"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "1h",
    },
    "receivers": [{"name": n} for n in ("ops", "dev", "boss", "cto")],
    "inhibit_rules": [
        {
            "source_matchers": ['severity="critical"'],
            "target_matchers": ['severity="warning"'],
            "equal": ["cluster"],
        }
    ],
    "time_intervals": [
        {"name": "maintenance", "time_intervals": [{"times": [MAINTENANCE]}]},
    ],
}
POLICIES = {"page": [Level(600, ("boss",)), Level(1800, ("cto",))]}


def config(**route: Any) -> dict[str, Any]:
    """BASE with the root route's settings replaced by ``route``."""
    return {**BASE, "route": {**BASE["route"], **route}}


class Engine:
    """What the stage wires around the dispatcher, with ``now`` given by the test."""

    def __init__(
        self, cfg: dict[str, Any], resolve_timeout: float = DAY, max_alerts: int = 0
    ) -> None:
        self.max_alerts = max_alerts
        am = load_alertmanager(yaml.safe_dump(cfg))
        self.tree: Route = am.tree()
        self.intervals = am.intervals()
        self.inhibitor = Inhibitor(am.inhibit_rules)
        self.silences = Silences()
        self.correlator = Correlator()
        self.resolve_timeout = resolve_timeout
        self.now = T0
        self.book = AlertBook(resolve_timeout, 10_000)
        self.dispatcher = self._dispatcher()

    def _dispatcher(self) -> Dispatcher:
        hooks = Hooks(
            suppressed=self._suppressed,
            muted=self._muted,
            acknowledged=lambda fp: fp in self.book.acks,
            evidence=self.correlator.evidence,
            incident_of=self.correlator.incident_of,
        )
        return Dispatcher(hooks, POLICIES, self.max_alerts)

    def _suppressed(self, alert: Alert) -> bool:
        if self.silences.silenced_by(alert.labels, self.now):
            return True
        return self.inhibitor.inhibited(alert.labels) is not None

    def _muted(self, route: RouteLike, now: float) -> bool:
        r: Any = route
        if self.intervals.any_active(r.mute_time_intervals, now):
            return True
        active = r.active_time_intervals
        return bool(active) and not self.intervals.any_active(active, now)

    def send(self, alert: Alert, now: float) -> None:
        """An alert arrives (the stage's ``_apply``): book, correlation, groups."""
        self.now = now
        held, _ = self.book.put(alert, now)
        assert held is not None
        grown = self.correlator.observe(held, now) if alert.evidence is not None else None
        if grown is not None:
            self.dispatcher.forget_keys()
        self.dispatcher.insert(held, self.tree.match(held.labels), now)
        if grown is not None:  # the stage's _join: earlier alerts of its services join it
            members = [
                a
                for a in self.book.firing(now)
                if any(a.labels.get(k) in grown.services for k in SERVICE_LABELS)
            ]
            self.dispatcher.regroup(members, lambda a: self.tree.match(a.labels), now)

    def flush(self, now: float) -> list[Notification]:
        """The stage's tick: expire alerts, refresh inhibition, flush due groups."""
        self.now = now
        self.book.expired(now)
        self.inhibitor.update(self.book.firing(now))
        return [n for f in self.dispatcher.flush_due(now) for n in f.notifications]

    def checkpoint(self) -> str:
        """The stage's checkpoint of the book and the groups (JSON)."""
        return json.dumps({"book": self.book.snapshot(), "groups": self.dispatcher.snapshot()})

    def restore(self, text: str) -> None:
        """A fresh book and dispatcher rebuilt from :meth:`checkpoint` output."""
        doc = json.loads(text)
        self.book = AlertBook(self.resolve_timeout, 10_000)
        self.book.restore(doc["book"])
        self.dispatcher = self._dispatcher()
        routes: dict[str, RouteLike] = {r.id: r for r in self.tree.walk()}
        assert self.dispatcher.restore(doc["groups"], routes, self.book.alerts) == 0


def show(n: Notification) -> str:
    """``receiver firing=A,B resolved=C [Ln]``."""
    names: dict[str, list[str]] = {"firing": [], "resolved": []}
    for a in n.alerts:
        names[a["status"]].append(a["labels"]["alertname"])
    parts = [n.receiver] + [f"{k}={','.join(sorted(v))}" for k, v in names.items() if v]
    return " ".join(parts) + (f" L{n.escalation_level}" if n.escalation_level else "")


# -- steps of a case: each one acts on the engine at T0 + t ----------------------------------

Step = Callable[[Engine], None]


def labels_of(name: str, labels: dict[str, str]) -> dict[str, str]:
    return {"alertname": name, "cluster": "c1", **labels}


def fire(t: float, name: str, starts: float | None = None, **labels: str) -> Step:
    """Alert ``name`` sent firing (no endsAt, as Prometheus sends it), started at ``starts``."""
    start = T0 + (t if starts is None else starts)
    return lambda e: e.send(Alert(labels_of(name, labels), starts_at=start), T0 + t)


def resolve(t: float, name: str, **labels: str) -> Step:
    """Alert ``name`` re-sent with endsAt = now (how Prometheus sends a resolved alert)."""

    def run(e: Engine) -> None:
        lab = labels_of(name, labels)
        held = e.book.alerts[Alert(lab).fp]
        e.send(Alert(lab, starts_at=held.starts_at, ends_at=T0 + t), T0 + t)

    return run


def at(t: float, *expected: str) -> Step:
    """Flush at ``t``: exactly these notifications (any order)."""

    def run(e: Engine) -> None:
        got = sorted(show(n) for n in e.flush(T0 + t))
        assert got == sorted(expected), f"flush at +{t}s: {got}"

    return run


def silence(t: float, matchers: str, until: float = DAY) -> Step:
    """A silence from ``t`` to ``until``."""

    def run(e: Engine) -> None:
        e.silences.upsert(Silence("", parse_matchers(matchers), T0 + t, T0 + until), T0 + t)

    return run


def ack(t: float, name: str, **labels: str) -> Step:
    """Alert ``name`` acknowledged (the API's ack)."""

    def run(e: Engine) -> None:
        assert e.book.acknowledge(Alert(labels_of(name, labels)).fp, "me", "", T0 + t)

    return run


def groups(n: int) -> Step:
    """The dispatcher holds ``n`` groups."""

    def run(e: Engine) -> None:
        assert len(e.dispatcher.groups) == n, sorted(e.dispatcher.groups)

    return run


def restart() -> Step:
    """A checkpoint written and read back into a fresh book and dispatcher."""
    return lambda e: e.restore(e.checkpoint())


def incident(t: float, iid: str, *services: str) -> Step:
    """keiko's incident alert naming its services (correlate.py)."""
    evidence = {"id": iid, "services": list(services)}
    lab = {"alertname": "KeikoIncident", "incident": iid}
    return lambda e: e.send(Alert(lab, starts_at=T0 + t, evidence=evidence), T0 + t)


@dataclass
class Case:
    """One documented rule, the config it needs and the steps that show it."""

    name: str
    steps: list[Step]
    cfg: dict[str, Any] = field(default_factory=lambda: BASE)
    resolve_timeout: float = DAY


CHILD = {"matchers": ['team="db"'], "receiver": "dev"}

CASES = [
    # configuration.md group_wait: "How long to initially wait to send a notification for a
    # group of alerts."
    Case("first notification after group_wait", [fire(0, "A"), at(29), at(30, "ops firing=A")]),
    # dispatch.go aggrGroup.insert: "Immediately trigger a flush if the wait duration for
    # this alert is already over."
    Case("old alert flushes at once", [fire(100, "A", starts=0), at(100, "ops firing=A")]),
    # configuration.md group_wait: "...collect more initial alerts for the same group."
    Case(
        "alerts within group_wait share a notification",
        [
            fire(0, "A"),
            fire(20, "B"),
            fire(25, "C", cluster="c2"),
            at(30, "ops firing=A,B"),
            at(55, "ops firing=C"),
        ],
    ),
    # configuration.md group_interval: "How long to wait before sending a notification about
    # new alerts that are added to a group of alerts for which an initial notification has
    # already been sent."; needsUpdate: "!entry.IsFiringSubset(firing)" notifies at once.
    Case(
        "a later alert waits for group_interval",
        [
            fire(0, "A"),
            at(30, "ops firing=A"),
            fire(40, "B"),
            at(329),
            at(330, "ops firing=A,B"),
            at(630),
        ],
    ),
    # dispatch.go: an old alert flushes at once only before the group's first flush.
    Case(
        "an old alert added later still waits for group_interval",
        [
            fire(0, "A"),
            at(30, "ops firing=A"),
            fire(40, "B", starts=-1000),
            at(40),
            at(330, "ops firing=A,B"),
        ],
    ),
    # dispatch.go: "if !ag.hasFlushed && alert.StartsAt.Add(ag.opts.GroupWait).Before(now)"
    # -- a group flushed with nothing to tell (all silenced) is flushed all the same, so a
    # re-sent old alert does not pull the next alert's notification forward.
    Case(
        "after a silent first flush a new alert still waits for group_interval",
        [
            silence(0, '{alertname="A"}'),
            fire(0, "A"),
            at(30),
            fire(40, "B"),
            fire(45, "A", starts=0),
            at(45),
            at(329),
            at(330, "ops firing=B"),
        ],
    ),
    # configuration.md repeat_interval: "How long to wait before sending a notification again
    # if it has already been sent successfully"; needsUpdate: nothing changed -> only after
    # repeat. (AM's strict Timestamp.Before pushes the repeat to the next tick; keiko repeats
    # at the first flush at or after last + repeat_interval.)
    Case(
        "repeat only after repeat_interval",
        [
            fire(0, "A"),
            at(30, "ops firing=A"),
            at(330),
            at(3330),
            at(3630, "ops firing=A"),
            at(3930),
        ],
    ),
    # book.py / AM's alerts provider: a re-sent alert merges into the one held; nothing new.
    Case(
        "a re-sent alert is not news",
        [
            fire(0, "A"),
            at(30, "ops firing=A"),
            fire(100, "A", starts=0),
            fire(200, "A", starts=0),
            at(330),
        ],
    ),
    # needsUpdate: "Notify about all alerts being resolved"; dispatch.go flush: "Delete all
    # resolved alerts as we already sent them"; an empty group is removed.
    Case(
        "resolution is told, then the group is gone",
        [
            fire(0, "A"),
            at(30, "ops firing=A"),
            resolve(100, "A"),
            groups(1),
            at(330, "ops resolved=A"),
            groups(0),
            at(630),
        ],
    ),
    # needsUpdate with send_resolved: "!entry.IsResolvedSubset(resolved)" (keiko tells
    # resolutions always; a receiver's send_resolved filters at delivery).
    Case(
        "a partial resolution is told with the alerts still firing",
        [
            fire(0, "A"),
            fire(0, "B"),
            at(30, "ops firing=A,B"),
            resolve(100, "B"),
            at(330, "ops firing=A resolved=B"),
            at(630),
        ],
    ),
    # needsUpdate: "If we haven't notified about the alert group before, notify right away
    # unless we only have resolved alerts."
    Case(
        "resolved before ever told is never told",
        [fire(0, "A"), resolve(10, "A"), at(30), groups(0), at(330)],
    ),
    # dispatch.go flush hands the pipeline every alert of the group: an alert that fired and
    # resolved unseen goes along with the resolution that is told.
    Case(
        "fired and resolved between flushes after a resolution",
        [
            fire(0, "A"),
            at(30, "ops firing=A"),
            resolve(40, "A"),
            fire(50, "B"),
            resolve(60, "B"),
            at(330, "ops resolved=A,B"),
            groups(0),
        ],
    ),
    # AM's provider: an alert that starts after the held one ended is a new instance; its
    # new group waits group_wait again.
    Case(
        "an alert that comes back is a new group",
        [
            fire(0, "A"),
            at(30, "ops firing=A"),
            resolve(100, "A"),
            at(330, "ops resolved=A"),
            fire(1000, "A"),
            at(1029),
            at(1030, "ops firing=A"),
        ],
    ),
    # configuration.md global.resolve_timeout: "the time after which an alert is declared
    # resolved if it has not been updated" (alerts sent without endsAt).
    Case(
        "resolve_timeout resolves an alert not re-sent",
        [fire(0, "A"), at(30, "ops firing=A"), at(330), at(630, "ops resolved=A")],
        resolve_timeout=600,
    ),
    Case(
        "re-sending keeps it firing past resolve_timeout",
        [
            fire(0, "A"),
            at(30, "ops firing=A"),
            fire(300, "A", starts=0),
            at(630),
            fire(800, "A", starts=0),
            at(930),
        ],
        resolve_timeout=600,
    ),
    # configuration.md continue: "Whether an alert should continue matching subsequent
    # sibling nodes."
    Case(
        "continue: true tells two receivers",
        [
            fire(0, "A", team="db"),
            fire(0, "B"),
            at(30, "dev firing=A", "boss firing=A", "ops firing=B"),
        ],
        config(
            routes=[{**CHILD, "continue": True}, {"matchers": ['team="db"'], "receiver": "boss"}]
        ),
    ),
    Case(
        "without continue the first match wins",
        [fire(0, "A", team="db"), at(30, "dev firing=A")],
        config(routes=[CHILD, {"matchers": ['team="db"'], "receiver": "boss"}]),
    ),
    # configuration.md group_by: "the special value '...' ... aggregate by all possible
    # labels ... effectively disables aggregation entirely"
    Case(
        "group_by ['...']: one group per label set",
        [
            fire(0, "A"),
            fire(0, "A", x="1"),
            fire(0, "B"),
            groups(3),
            at(30, "ops firing=A", "ops firing=A", "ops firing=B"),
        ],
        config(group_by=["..."]),
    ),
    # configuration.md group_by: alerts with equal values of the listed labels are batched.
    Case(
        "group_by a label: one group per value",
        [
            fire(0, "A"),
            fire(0, "B"),
            fire(0, "A", cluster="c2"),
            groups(2),
            at(30, "ops firing=A,B", "ops firing=A"),
        ],
    ),
    # notify.go MuteStage (silences): silenced alerts are left out of the notification.
    Case(
        "a silenced alert is left out",
        [silence(0, '{alertname="B"}'), fire(0, "A"), fire(0, "B"), at(30, "ops firing=A")],
    ),
    # notify.go MultiStage: "if len(alerts) == 0 { return ctx, nil, nil }" -- a group whose
    # alerts are all silenced tells nothing (no empty notification, no log entry).
    Case(
        "a group silenced after it was told tells nothing",
        [fire(0, "A"), at(30, "ops firing=A"), silence(100, '{alertname="A"}'), at(330), at(3630)],
    ),
    # nflog: the log keeps what was told while muted, so when the silence ends the same
    # firing alert is not news; it is repeated after repeat_interval as before.
    Case(
        "a silence ending does not re-tell what was told",
        [
            fire(0, "A"),
            at(30, "ops firing=A"),
            silence(100, '{alertname="A"}', until=1000),
            at(930),
            at(1230),
            at(3330),
            at(3630, "ops firing=A"),
        ],
    ),
    # MuteStage drops a silenced alert before DedupStage: its resolution is not told either.
    Case(
        "a silenced alert that resolves is not told",
        [
            fire(0, "A"),
            fire(0, "B"),
            at(30, "ops firing=A,B"),
            silence(100, '{alertname="B"}'),
            resolve(200, "B"),
            at(330),
            groups(1),
            resolve(400, "A"),
            at(630, "ops resolved=A"),
            groups(0),
        ],
    ),
    # notify.go MuteStage (inhibitor): configuration.md <inhibit_rule> "mute an alert (target)
    # ... if an alert (source) exists", with equal labels.
    Case(
        "an inhibited alert is left out",
        [
            fire(0, "Disk", severity="warning"),
            fire(0, "Node", severity="critical"),
            fire(0, "Cpu", severity="warning", cluster="c2"),
            at(30, "ops firing=Node", "ops firing=Cpu"),
        ],
    ),
    # configuration.md mute_time_intervals: "Times when the route should be muted"; notify.go
    # TimeMuteStage stops the pipeline; the next flush after the interval tells.
    Case(
        "a muted route tells nobody, later tells",
        [
            fire(0, "A", team="db"),
            fire(0, "B"),
            at(30, "ops firing=B"),
            at(330),
            at(630, "dev firing=A"),
        ],
        config(routes=[{**CHILD, "mute_time_intervals": ["maintenance"]}]),
    ),
    # ... and Prometheus re-sending the muted alert does not flush the group off its timer.
    Case(
        "a muted group keeps its timer while its alert is re-sent",
        [
            fire(0, "A", team="db"),
            at(30),
            fire(60, "A", team="db", starts=0),
            at(60),
            at(330),
            fire(610, "A", team="db", starts=0),
            at(610),
            at(630, "dev firing=A"),
        ],
        config(routes=[{**CHILD, "mute_time_intervals": ["maintenance"]}]),
    ),
    # configuration.md active_time_intervals: "Times when the route should be active"
    Case(
        "an active interval: told only inside it",
        [fire(0, "A", team="db"), at(30, "dev firing=A"), fire(700, "B", team="db"), at(930)],
        config(routes=[{**CHILD, "active_time_intervals": ["maintenance"]}]),
    ),
    # groups.py escalation: level receivers join once `after` has passed since the first
    # notification, while not all firing alerts are acknowledged; told levels hear the end.
    Case(
        "escalation adds levels while unacknowledged",
        [
            fire(0, "A"),
            at(30, "ops firing=A"),
            at(330),
            at(630, "boss firing=A L1"),
            at(1830, "cto firing=A L2"),
            resolve(1900, "A"),
            at(2130, "ops resolved=A", "boss resolved=A L1", "cto resolved=A L2"),
        ],
        config(escalation="page"),
    ),
    # groups.py: "resolved: a new episode escalates from the start" -- a level told the
    # last episode's end waits `after` again (the group lives on with a silenced alert).
    Case(
        "a new episode escalates from the start",
        [
            silence(0, '{alertname="C"}'),
            fire(0, "C"),
            fire(0, "A"),
            at(30, "ops firing=A"),
            at(630, "boss firing=A L1"),
            resolve(700, "A"),
            at(930, "ops resolved=A", "boss resolved=A L1"),
            groups(1),
            fire(1000, "D"),
            at(1230, "ops firing=D"),
            at(1830, "boss firing=D L1"),
        ],
        config(escalation="page"),
    ),
    Case(
        "an acknowledged group does not escalate nor repeat",
        [
            fire(0, "A"),
            at(30, "ops firing=A"),
            ack(100, "A"),
            at(630),
            at(1830),
            at(3630),
            at(7230),
        ],
        config(escalation="page"),
    ),
    Case(
        "a new unacknowledged alert escalates again",
        [
            fire(0, "A"),
            at(30, "ops firing=A"),
            ack(100, "A"),
            at(630),
            fire(700, "B"),
            at(930, "ops firing=A,B", "boss firing=A,B L1"),
        ],
        config(escalation="page"),
    ),
    Case(
        "acknowledged after a level: no further levels",
        [
            fire(0, "A"),
            at(30, "ops firing=A"),
            at(630, "boss firing=A L1"),
            ack(700, "A"),
            at(1830),
            at(3630),
        ],
        config(escalation="page"),
    ),
    # correlate.py: an alert whose service belongs to an open incident groups under the
    # `incident` label when the route groups by it; others keep their own group.
    Case(
        "incident correlation groups by incident",
        [
            incident(0, "inc-1", "payments"),
            fire(0, "Latency", service="payments"),
            fire(0, "Disk", service="ledger"),
            groups(2),
            at(30, "ops firing=KeikoIncident,Latency", "ops firing=Disk"),
        ],
        config(group_by=["incident"]),
    ),
    Case(
        "grouping by incident and cluster: an incident is one group across clusters",
        [
            incident(0, "inc-1", "payments"),
            fire(0, "Latency", service="payments"),
            fire(0, "Errors", service="payments", cluster="c2"),
            fire(0, "Disk", service="ledger"),
            fire(0, "Cpu", service="ledger", cluster="c2"),
            groups(3),
            at(30, "ops firing=Errors,KeikoIncident,Latency", "ops firing=Disk", "ops firing=Cpu"),
        ],
        config(group_by=["cluster", "incident"]),
    ),
    Case(
        "an alert before its incident joins the incident's group",
        [
            fire(0, "Latency", service="payments"),
            incident(10, "inc-1", "payments"),
            groups(1),
            at(40, "ops firing=KeikoIncident,Latency"),
        ],
        config(group_by=["incident"]),
    ),
    Case(
        "an incident does not delay alerts on a route not grouping by it",
        [
            fire(0, "Latency", service="payments"),
            incident(10, "inc-1", "payments"),
            groups(2),
            at(30, "ops firing=Latency"),
            at(40, "ops firing=KeikoIncident"),
        ],
    ),
    # checkpoints: timers and the notification log survive a restart (no double notification).
    Case(
        "restart keeps group_wait",
        [fire(0, "A"), restart(), at(29), at(30, "ops firing=A")],
    ),
    Case(
        "restart keeps the notification log and the repeat timer",
        [
            fire(0, "A"),
            at(30, "ops firing=A"),
            restart(),
            at(330),
            at(3330),
            at(3630, "ops firing=A"),
        ],
    ),
    Case(
        "restart keeps escalation",
        [
            fire(0, "A"),
            at(30, "ops firing=A"),
            restart(),
            at(630, "boss firing=A L1"),
            restart(),
            at(930),
            ack(1000, "A"),
            at(1830),
        ],
        config(escalation="page"),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_dispatch(case: Case) -> None:
    engine = Engine(case.cfg, case.resolve_timeout)
    for step in case.steps:
        step(engine)


def ids_at(engine: Engine, t: float) -> list[str]:
    return sorted(n.id for n in engine.flush(T0 + t))


def test_notification_ids_repeat_for_a_replayed_flush() -> None:
    """groups.py notification_id: a flush replayed after a restart from a checkpoint taken
    before it gets the same ids (the outbox delivers it once); a repeat or another state
    gets new ones."""
    engine = Engine(BASE)
    fire(0, "A")(engine)
    saved = engine.checkpoint()
    first = ids_at(engine, 30)
    assert len(first) == 1
    engine.restore(saved)  # crashed before the checkpoint after the flush
    assert ids_at(engine, 31) == first
    assert ids_at(engine, 331) == []
    repeat = ids_at(engine, 3631)
    assert len(repeat) == 1 and repeat != first
    other = Engine(BASE)
    fire(0, "A")(other)
    fire(0, "B")(other)
    changed = ids_at(other, 30)
    assert len(changed) == 1 and changed != first


def test_ids_differ_per_receiver_and_group() -> None:
    cfg = config(
        routes=[{**CHILD, "continue": True}, {"matchers": ['team="db"'], "receiver": "boss"}]
    )
    engine = Engine(cfg)
    fire(0, "A", team="db")(engine)
    fire(0, "A", team="db", cluster="c2")(engine)
    ids = ids_at(engine, 30)
    assert len(ids) == 4 and len(set(ids)) == 4


@pytest.mark.parametrize("restart_between", [False, True])
def test_a_group_that_re_forms_never_reuses_an_id(restart_between: bool) -> None:
    """An alert back to firing with its old startsAt (re-sent after a partition longer than
    its endsAt) re-forms its group; the outbox skips ids it delivered, so the new firing
    notification must not repeat the first one's id. AM's nflog keeps a group key's entry
    after the aggregation group is gone, for its retention."""
    engine = Engine(BASE)
    fire(0, "A")(engine)
    first = ids_at(engine, 30)
    resolve(100, "A")(engine)
    told = ids_at(engine, 330)
    assert len(engine.dispatcher.groups) == 0
    if restart_between:
        engine.restore(engine.checkpoint())
    fire(400, "A", starts=0)(engine)  # merged: the same alert, firing again
    again = engine.flush(T0 + 400)
    assert [show(n) for n in again] == ["ops firing=A"]
    assert len({*first, *told, again[0].id}) == 3


def test_restore_reads_a_checkpoint_of_groups_only() -> None:
    """Checkpoints written before the counts were kept hold the list of groups alone."""
    engine = Engine(BASE)
    fire(0, "A")(engine)
    ids_at(engine, 30)
    groups_only = engine.dispatcher.snapshot()["groups"]
    restored = Engine(BASE)
    restored.book = engine.book
    routes: dict[str, RouteLike] = {r.id: r for r in restored.tree.walk()}
    assert restored.dispatcher.restore(groups_only, routes, engine.book.alerts) == 0
    assert ids_at(restored, 330) == []
    assert len(ids_at(restored, 3630)) == 1


def test_book_an_alert_firing_again_is_a_change_each_time() -> None:
    """AlertBook: an alert re-sent firing after it ended, with its old startsAt (merged, AM's
    provider replaces it), is a ``firing`` change (the stage refreshes inhibition and writes
    the event on changes), and its next end is a ``resolved`` change again."""
    book = AlertBook(600, 10)
    a = Alert({"alertname": "A"}, starts_at=T0)
    assert _status(book.put(a, T0)) == "firing"
    assert [c.status for c in book.expired(T0 + 600)] == ["resolved"]
    assert _status(book.put(Alert({"alertname": "A"}, starts_at=T0), T0 + 700)) == "firing"
    assert _status(book.put(Alert({"alertname": "A"}, starts_at=T0), T0 + 800)) is None
    assert book.expired(T0 + 1300) == []
    assert [c.status for c in book.expired(T0 + 1400)] == ["resolved"]


def _status(put: tuple[Alert | None, Change | None]) -> str | None:
    return put[1].status if put[1] is not None else None


def test_max_alerts_per_notification_truncates_and_counts() -> None:
    """AM's webhook ``max_alerts``: "Alerts above this threshold are truncated", the number
    left out sent as ``truncatedAlerts``; keiko lists firing alerts before resolved ones."""
    engine = Engine(config(group_by=[]), max_alerts=2)
    for name in "ABC":
        fire(0, name)(engine)
    (note,) = engine.flush(T0 + 30)
    assert (len(note.alerts), note.truncated_alerts) == (2, 1)
    resolve(100, "A")(engine)
    fire(100, "D")(engine)
    (note,) = engine.flush(T0 + 330)
    assert [a["status"] for a in note.alerts] == ["firing", "firing"]
    assert note.truncated_alerts == 2


def test_flush_cost_is_linear_in_the_group() -> None:
    """A group of 10k alerts flushes well under a second (the notification id once
    compared every alert with every other: ~8 s here, holding the engine's lock)."""
    engine = Engine(config(group_by=[]))
    for i in range(10_000):
        engine.send(Alert({"alertname": "A", "i": str(i)}, starts_at=T0), T0)
    t0 = time.perf_counter()
    (note,) = engine.flush(T0 + 30)
    assert time.perf_counter() - t0 < 1.0
    assert len(note.alerts) == 10_000


def test_an_incident_notification_carries_its_evidence() -> None:
    """correlate.py: notifications carry the evidence of the incidents their alerts belong
    to, once each."""
    engine = Engine(config(group_by=["incident"]))
    incident(0, "inc-1", "payments")(engine)
    fire(0, "Latency", service="payments")(engine)
    fire(0, "Errors", service="payments")(engine)
    (note,) = engine.flush(T0 + 30)
    assert note.group_labels == {"incident": "inc-1"}
    assert note.evidence == [{"id": "inc-1", "services": ["payments"]}]
