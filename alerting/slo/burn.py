"""Error budgets and multiwindow, multi-burn-rate alerts (the SRE workbook, chapter 5).

Each objective keeps (good, total) call counts per time bucket in two rings: fine buckets
(``bucket_seconds``) over its longest alert window, coarse ones (``budget_bucket``) over
its period. Counts go to the bucket of the point's own time (data time, not arrival).

Over a window, the error ratio is bad / total and the burn rate is that ratio divided by
the budget (1 - target): 1 spends the budget in exactly one period. A window pair's alert
fires when both windows burn at least its factor. A window with fewer than ``min_events``
calls gives no verdict, and no verdict is never firing: an alert does not fire on too
little data, and one that fired resolves when its data thins out (the event says so:
``reason: insufficient_data``), as Prometheus' ``burn(1h) > f and burn(5m) > f`` would.

Error budget remaining over the period = 1 - (bad / total) / (1 - target): 1 when nothing
was spent, 0 when exactly all of it, negative when overspent (not clamped below: how far
over is worth seeing); 1 without calls.
"""

from __future__ import annotations

import base64
import math
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alerting.slo.config import BurnWindowConfig, ObjectiveConfig
from alerting.slo.decode import Point
from keiko import humanize

CALLS = "traces.span.metrics.calls"
DURATION = "traces.span.metrics.duration"
ERROR = "STATUS_CODE_ERROR"


class Ring:
    """(good, total) per time bucket over ``slots`` buckets; bucket i holds times
    [i * bucket_s, (i + 1) * bucket_s). The newest bucket is ``head``."""

    def __init__(self, bucket_s: float, slots: int) -> None:
        self.bucket_s = bucket_s
        self.slots = slots
        self.good = np.zeros(slots, np.float64)  # float: latency shares a bucket out
        self.total = np.zeros(slots, np.float64)
        self.head = -1  # no bucket yet

    def index(self, time_s: float) -> int:
        """The bucket of a time."""
        return math.floor(time_s / self.bucket_s)

    def advance(self, index: int) -> None:
        """Make ``index`` the newest bucket, clearing the buckets it passes over."""
        if index <= self.head:
            return
        steps = index - self.head
        if self.head < 0 or steps >= self.slots:
            self.good[:] = 0
            self.total[:] = 0
        else:
            cleared = np.arange(self.head + 1, index + 1) % self.slots
            self.good[cleared] = 0
            self.total[cleared] = 0
        self.head = index

    def add(self, time_s: float, good: float, total: float) -> bool:
        """Count calls at ``time_s``; False when that is older than the ring holds."""
        index = self.index(time_s)
        if index > self.head:
            self.advance(index)
        elif index <= self.head - self.slots:
            return False
        slot = index % self.slots
        self.good[slot] += good
        self.total[slot] += total
        return True

    def window(self, seconds: float, now_s: float) -> tuple[float, float]:
        """(good, total) over the ``seconds`` (whole buckets) ending with ``now_s``'s bucket."""
        self.advance(self.index(now_s))
        width = min(self.slots, max(1, math.ceil(seconds / self.bucket_s - 1e-9)))
        end = self.head % self.slots
        start = (self.head - width + 1) % self.slots
        if width == self.slots:
            return float(self.good.sum()), float(self.total.sum())
        if start <= end:
            picked = slice(start, end + 1)
            return float(self.good[picked].sum()), float(self.total[picked].sum())
        good = self.good[start:].sum() + self.good[: end + 1].sum()
        total = self.total[start:].sum() + self.total[: end + 1].sum()
        return float(good), float(total)

    def nbytes(self) -> int:
        """Memory of the counts."""
        return int(self.good.nbytes + self.total.nbytes)

    def to_json(self) -> dict[str, Any]:
        """Head and counts (base64 of the arrays) for checkpoints."""
        return {
            "bucket_s": self.bucket_s,
            "slots": self.slots,
            "head": self.head,
            "good": base64.b64encode(self.good.tobytes()).decode(),
            "total": base64.b64encode(self.total.tobytes()).decode(),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Ring:
        """Rebuild what ``to_json`` wrote."""
        ring = cls(float(doc["bucket_s"]), int(doc["slots"]))
        good = np.frombuffer(base64.b64decode(doc["good"]), np.float64)
        total = np.frombuffer(base64.b64decode(doc["total"]), np.float64)
        if len(good) != ring.slots or len(total) != ring.slots:
            raise ValueError("ring sizes disagree")
        ring.good[:], ring.total[:] = good, total
        ring.head = int(doc["head"])
        return ring


def good_share(bounds: tuple[float, ...], buckets: tuple[float, ...], threshold: float) -> float:
    """Calls of a histogram that took at most ``threshold``.

    Exact when ``threshold`` is one of ``bounds``; otherwise the bucket it falls in is
    shared out linearly. Calls above the last bound are never good (nothing is known of
    how long they took)."""
    full = bisect_right(bounds, threshold)  # buckets 0..full-1 end at or below it
    good = float(sum(buckets[:full]))
    if full < len(bounds) and full < len(buckets):
        lower = bounds[full - 1] if full else 0.0
        upper = bounds[full]
        if upper > lower and threshold > lower:
            good += buckets[full] * (threshold - lower) / (upper - lower)
    return good


def burn_rate(good: float, total: float, target: float) -> float | None:
    """Error ratio over the budget; None without calls."""
    if total <= 0:
        return None
    return ((total - good) / total) / (1.0 - target)


class Objective:
    """One objective's counts and the test of whether a point is about it."""

    def __init__(
        self,
        name: str,
        config: ObjectiveConfig,
        longest_s: float,
        bucket_s: float,
        budget_bucket_s: float,
    ) -> None:
        self.name = name
        self.config = config
        self.fine = Ring(bucket_s, math.ceil(longest_s / bucket_s - 1e-9))
        self.budget = Ring(budget_bucket_s, math.ceil(config.period / budget_bucket_s - 1e-9))
        self.late = 0  # counts older than the fine ring holds

    def signature(self) -> list[Any]:
        """What the counts depend on: a checkpoint with another is not restored."""
        c = self.config
        return [c.service, c.kind, c.threshold, c.span_kind, c.span_name, c.period]

    def wants(self, point: Point) -> bool:
        """Whether ``point`` counts calls of this objective."""
        c, a = self.config, point.attributes
        wanted = DURATION if c.kind == "latency" else CALLS
        return (
            point.metric == wanted
            and a.get("service.name") == c.service
            and (not c.span_kind or a.get("span.kind") == c.span_kind)
            and (not c.span_name or a.get("span.name") == c.span_name)
        )

    def count(self, point: Point, increment: tuple[float, ...]) -> None:
        """Add a point's increment (``Point.counts()`` shape) at the point's time."""
        total = increment[0]
        if total <= 0:
            return
        if self.config.kind == "latency":
            assert self.config.threshold is not None
            good = good_share(point.bounds, increment[1:], self.config.threshold)
        else:
            good = 0.0 if point.attributes.get("status.code") == ERROR else total
        time_s = point.time_ns / 1e9
        if not self.fine.add(time_s, good, total):
            self.late += 1
        self.budget.add(time_s, good, total)

    def budget_remaining(self, now_s: float) -> float:
        """1 - (bad / total) / (1 - target) over the period; 1 without calls."""
        good, total = self.budget.window(self.config.period, now_s)
        burn = burn_rate(good, total, self.config.target)
        return 1.0 if burn is None else 1.0 - burn

    def nbytes(self) -> int:
        """Memory of both rings."""
        return self.fine.nbytes() + self.budget.nbytes()


@dataclass(frozen=True, slots=True)
class WindowReading:
    """Counts and burn rate over one window."""

    seconds: float
    good: float
    total: float
    burn: float | None  # None without calls


@dataclass(frozen=True, slots=True)
class Verdict:
    """One window pair of one objective at one time."""

    objective: str
    window: str  # the window pair's name
    config: BurnWindowConfig
    long: WindowReading
    short: WindowReading
    firing: bool
    insufficient: bool  # a window had fewer than min_events calls: no verdict


def judge(
    objective: Objective, name: str, window: BurnWindowConfig, now_s: float, min_events: int
) -> Verdict:
    """Whether a window pair's alert condition holds now."""
    target = objective.config.target
    readings = []
    for seconds in (window.long, window.short):
        good, total = objective.fine.window(seconds, now_s)
        readings.append(WindowReading(seconds, good, total, burn_rate(good, total, target)))
    long, short = readings
    if long.total < min_events or short.total < min_events:
        return Verdict(objective.name, name, window, long, short, False, True)
    assert long.burn is not None and short.burn is not None
    firing = long.burn >= window.factor and short.burn >= window.factor
    return Verdict(objective.name, name, window, long, short, firing, False)


@dataclass(frozen=True, slots=True)
class Change:
    """An alert that started or stopped firing."""

    verdict: Verdict
    firing: bool
    budget_remaining: float


@dataclass
class BurnBook:
    """Every objective, its alerts' states, and the latest verdicts (for export)."""

    objectives: dict[str, Objective]
    windows: dict[str, BurnWindowConfig]
    min_events: int
    firing: set[tuple[str, str]] = field(default_factory=set)  # (objective, window)
    verdicts: list[Verdict] = field(default_factory=list)
    budgets: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        objectives: dict[str, ObjectiveConfig],
        windows: dict[str, BurnWindowConfig],
        min_events: int,
        bucket_s: float,
        budget_bucket_s: float,
    ) -> BurnBook:
        """Objectives with empty rings."""
        longest = max((w.long for w in windows.values()), default=bucket_s)
        built = {
            name: Objective(name, c, longest, bucket_s, budget_bucket_s)
            for name, c in objectives.items()
        }
        return cls(built, dict(windows), min_events)

    def __post_init__(self) -> None:
        # Objectives by (metric, service): a point finds its few with one lookup.
        self._index: dict[tuple[str, str], list[Objective]] = {}
        for o in self.objectives.values():
            metric = DURATION if o.config.kind == "latency" else CALLS
            self._index.setdefault((metric, o.config.service), []).append(o)

    def services(self, metric: str) -> frozenset[str]:
        """The services some objective reads ``metric`` of."""
        return frozenset(s for m, s in self._index if m == metric)

    def wanted(self, point: Point) -> list[Objective]:
        """The objectives ``point`` counts calls of."""
        found = self._index.get((point.metric, point.attributes.get("service.name", "")))
        return [o for o in found if o.wants(point)] if found else []

    def observe(self, point: Point, increment: tuple[float, ...]) -> None:
        """Count one point's increment in every objective it is about."""
        for objective in self.wanted(point):
            objective.count(point, increment)

    def evaluate(self, now_s: float) -> list[Change]:
        """Judge every window pair at ``now_s``; the alerts whose state changed."""
        changes, verdicts, budgets = [], [], {}
        for objective in self.objectives.values():
            budget = objective.budget_remaining(now_s)
            budgets[objective.name] = budget
            for name, window in self.windows.items():
                verdict = judge(objective, name, window, now_s, self.min_events)
                verdicts.append(verdict)
                key = (objective.name, name)
                was, now = key in self.firing, verdict.firing
                if now != was:
                    (self.firing.add if now else self.firing.discard)(key)
                    changes.append(Change(verdict, now, budget))
        self.verdicts, self.budgets = verdicts, budgets  # replaced whole: read by scrapes
        return changes

    def to_json(self) -> dict[str, Any]:
        """Rings and alert states (checkpoints)."""
        return {
            "objectives": {
                name: {
                    "signature": o.signature(),
                    "fine": o.fine.to_json(),
                    "budget": o.budget.to_json(),
                }
                for name, o in self.objectives.items()
            },
            "firing": sorted([list(k) for k in self.firing]),
        }

    def restore(self, doc: dict[str, Any]) -> int:
        """Take the counts of objectives whose definition and ring sizes did not change;
        how many. Alert states of objectives and windows that still exist come back too."""
        restored = 0
        for name, saved in doc["objectives"].items():
            o = self.objectives.get(name)
            if o is None or saved["signature"] != o.signature():
                continue
            fine, budget = Ring.from_json(saved["fine"]), Ring.from_json(saved["budget"])
            same = (fine.bucket_s, fine.slots) == (o.fine.bucket_s, o.fine.slots)
            if same and (budget.bucket_s, budget.slots) == (o.budget.bucket_s, o.budget.slots):
                o.fine, o.budget = fine, budget
                restored += 1
        self.firing = {
            (str(a), str(b)) for a, b in doc["firing"] if a in self.objectives and b in self.windows
        }
        return restored


def slo_event(book: BurnBook, change: Change, time_ns: int) -> dict[str, Any]:
    """The ``slo_burn`` event of an alert that started (firing) or stopped (resolved)."""
    v = change.verdict
    objective = book.objectives[v.objective]
    c = objective.config
    long, short = humanize.duration(v.long.seconds), humanize.duration(v.short.seconds)
    labels = {
        "alertname": "SLOBurnRate",
        "objective": v.objective,
        "service": c.service,
        "slo_kind": c.kind,
        "severity": v.config.severity,
        "window": v.window,
        **c.labels,
    }
    event: dict[str, Any] = {
        "type": "slo_burn",
        "id": f"slo:{v.objective}:{v.window}",
        "status": "firing" if change.firing else "resolved",
        "objective": v.objective,
        "service": c.service,
        "kind": c.kind,
        "target": c.target,
        "threshold": c.threshold,
        "severity": v.config.severity,
        "window": v.window,
        "burn_rate": {"long": _round(v.long.burn), "short": _round(v.short.burn)},
        "calls": {"long": v.long.total, "short": v.short.total},
        "windows": {"long": long, "short": short},
        "factor": v.config.factor,
        "budget_remaining": _round(change.budget_remaining),
        "labels": labels,
        "time": humanize.rfc3339(time_ns),
        "time_unix_nano": time_ns,
    }
    if not change.firing:
        event["reason"] = "insufficient_data" if v.insufficient else "below_factor"
    return event


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)
