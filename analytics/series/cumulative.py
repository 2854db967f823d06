"""Per-series state that turns cumulative counters and histograms into per-interval deltas.

Rules (times are the points' unix nanoseconds, kept as ints so differences are exact):
  - first point of a series: remembered, nothing emitted (its value covers an unknown span);
  - a point not later than the last one: skipped (``out_of_order``), state kept, so replays
    after a restore never emit anything;
  - a counter reset (the value or count went down, or ``start_time`` changed): the new
    point is the delta since its own start, used only when that start is a new one that
    lies between the previous point and this one (the counter restarted in between); else
    skipped (``counter_reset_unknown_start``): a drop with an unchanged or unknown (0)
    start has no known reset time, and a start before the previous point cannot be a
    restart after it (two processes writing one series), so no rate is guessed;
  - otherwise: delta = value - last value over time - last time.
Delta temporality needs no value state: the interval is time - start when the start is
known, else time - the series' previous point time, else the point is skipped
(``no_interval``).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

SNAPSHOT_VERSION = 1


class Step(IntEnum):
    """How a cumulative point relates to the series' previous one."""

    FIRST = 0
    STALE = 1
    RESET = 2
    NEXT = 3


def classify(
    last_start: int, last_value: float, last_time: int, start: int, t: int, v: float
) -> Step:
    """Classify a cumulative point against the remembered one (see the module rules)."""
    if t <= last_time:
        return Step.STALE
    if v < last_value or start != last_start:
        return Step.RESET
    return Step.NEXT


def reset_interval(last_start: int, last_time: int, start: int, t: int) -> int:
    """Nanoseconds since a reset counter's new start, 0 when that start is not usable."""
    return t - start if start != last_start and last_time <= start < t else 0


@dataclass(slots=True)
class HistState:
    """The last cumulative histogram point of a series (explicit or exponential buckets)."""

    start: int
    time: int
    count: int
    bounds: tuple[float, ...] = ()  # explicit buckets
    counts: tuple[int, ...] = ()
    scale: int | None = None  # exponential buckets (None: explicit)
    zero: int = 0
    pos: dict[int, int] = field(default_factory=dict)
    neg: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> list[Any]:
        pos, neg = sorted(self.pos.items()), sorted(self.neg.items())
        fields = [self.start, self.time, self.count, self.bounds, self.counts, self.scale]
        return [*fields, self.zero, pos, neg]

    @staticmethod
    def from_json(r: list[Any]) -> HistState:
        start, time, count, bounds, counts, scale, zero, pos, neg = r
        return HistState(
            int(start), int(time), int(count), tuple(map(float, bounds)),
            tuple(map(int, counts)), None if scale is None else int(scale), int(zero),
            {int(i): int(c) for i, c in pos}, {int(i): int(c) for i, c in neg},
        )  # fmt: skip


@dataclass(slots=True)
class RateState:
    """Every series' counter state, keyed by series id; bounded by the series table."""

    counters: dict[int, list[float]] = field(default_factory=dict)  # [start, value, time]
    hists: dict[int, HistState] = field(default_factory=dict)
    delta_times: dict[int, int] = field(default_factory=dict)  # last point time, delta series

    def forget(self, ids: Iterable[int]) -> None:
        """Drop the state of evicted ids (they will mean other series)."""
        for sid in ids:
            self.counters.pop(sid, None)
            self.hists.pop(sid, None)
            self.delta_times.pop(sid, None)

    def __len__(self) -> int:
        return len(self.counters) + len(self.hists) + len(self.delta_times)

    def snapshot(self, key_of: Callable[[int], str | None]) -> bytes:
        """The state keyed by series key (not id), zlib-compressed JSON."""

        def keyed(d: dict[int, object], f: Callable[[object], object]) -> dict[str, object]:
            return {k: f(v) for sid, v in d.items() if (k := key_of(sid)) is not None}

        doc = {
            "v": SNAPSHOT_VERSION,
            "counters": keyed(self.counters, lambda v: v),  # type: ignore[arg-type]
            "hists": keyed(self.hists, lambda h: h.to_json()),  # type: ignore[arg-type, attr-defined]
            "delta_times": keyed(self.delta_times, lambda v: v),  # type: ignore[arg-type]
        }
        return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 6)

    def restore(self, data: bytes, lookup: Callable[[str], int]) -> int:
        """Load a snapshot for the keys the table knows; return how many keys were dropped."""
        try:
            doc = json.loads(zlib.decompress(data))
            if doc.get("v") != SNAPSHOT_VERSION:
                raise ValueError(f"snapshot version {doc.get('v')!r}, expected 1")
            counters = {k: [int(v[0]), float(v[1]), int(v[2])] for k, v in doc["counters"].items()}
            hists = {k: HistState.from_json(v) for k, v in doc["hists"].items()}
            deltas = {k: int(v) for k, v in doc["delta_times"].items()}
        except (ValueError, KeyError, TypeError, IndexError, zlib.error) as e:
            raise ValueError(f"not a metrics decoder snapshot: {e}") from e
        self.counters.clear()
        self.hists.clear()
        self.delta_times.clear()
        dropped = 0
        pairs: list[tuple[dict[str, Any], dict[int, Any]]] = [
            (counters, self.counters),
            (hists, self.hists),
            (deltas, self.delta_times),
        ]
        for src, dst in pairs:
            for key, value in src.items():
                sid = lookup(key)
                if sid < 0:
                    dropped += 1
                else:
                    dst[sid] = value
        return dropped
