"""From scored points to anomaly events: one event when a series enters an excursion.

A series is *in an excursion* while its points score at or above the threshold. The
first such point after a normal one (an entry) becomes an event, unless the series had an
event less than ``cooldown`` seconds before (by point time). The state per series is two
numbers, kept in arrays indexed by series id and checkpointed with the detectors.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from analytics.anomaly.scores import Scores
from analytics.series.types import SeriesInfo
from keiko.humanize import rfc3339


@dataclass(frozen=True, slots=True)
class Entry:
    """A point at which a series entered an excursion and an event is due."""

    index: int  # in the batch
    series: int


class ExcursionTracker:
    """Per series: whether it is in an excursion and when its last event was."""

    def __init__(self, threshold: float, cooldown: float, capacity: int = 1024) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.inside = np.zeros(capacity, bool)
        self.last_event = np.full(capacity, -np.inf)

    def _grow(self, top: int) -> None:
        if top < len(self.inside):
            return
        size = max(top + 1, 2 * len(self.inside))
        self.inside = np.concatenate([self.inside, np.zeros(size - len(self.inside), bool)])
        self.last_event = np.concatenate(
            [self.last_event, np.full(size - len(self.last_event), -np.inf)]
        )

    def update(self, series: np.ndarray, times: np.ndarray, probability: np.ndarray) -> list[Entry]:
        """Advance every series over the batch; the entries that are due an event.

        Points of one series are in time order in the batch, so a stable sort by series
        puts each series' points together in order.
        """
        if len(series) == 0:
            return []
        self._grow(int(series.max()))
        high = probability >= self.threshold
        order = np.argsort(series, kind="stable")
        s, h = series[order], high[order]
        first = np.ones(len(s), bool)
        first[1:] = s[1:] != s[:-1]
        before = np.empty(len(s), bool)  # was the series inside just before this point?
        before[1:] = h[:-1]
        before[first] = self.inside[s[first]]
        last = np.ones(len(s), bool)
        last[:-1] = first[1:]
        self.inside[s[last]] = h[last]
        due = []
        for k in np.flatnonzero(h & ~before):  # entries: rare, so a Python loop is fine
            index, sid = int(order[k]), int(s[k])
            if times[index] - self.last_event[sid] >= self.cooldown:
                self.last_event[sid] = times[index]
                due.append(Entry(index, sid))
        return due

    def forget(self, ids: np.ndarray) -> None:
        """Evicted series: their ids start afresh."""
        ids = ids[ids < len(self.inside)]
        self.inside[ids] = False
        self.last_event[ids] = -np.inf

    def snapshot(self) -> bytes:
        """The state as bytes (numpy .npz)."""
        buffer = io.BytesIO()
        np.savez(buffer, inside=self.inside, last_event=self.last_event)
        return buffer.getvalue()

    def restore(self, data: bytes) -> None:
        """Take the state of ``snapshot()``."""
        with np.load(io.BytesIO(data)) as arrays:
            self.inside = arrays["inside"].astype(bool)
            self.last_event = arrays["last_event"].astype(np.float64)


def _number(x: float) -> float | None:
    """JSON has no NaN or infinity."""
    return float(x) if math.isfinite(x) else None


def _rfc3339(unix_s: float) -> str | None:
    return rfc3339(round(unix_s * 1e9)) if math.isfinite(unix_s) else None


def anomaly_event(
    info: SeriesInfo, time_s: float, value: float, scores: Scores, index: int, threshold: float
) -> dict[str, Any]:
    """The event of one excursion entry (the JSON object stored on the events stream)."""
    onset = float(scores.onset[index])
    if not math.isfinite(onset):
        onset = time_s  # the detector did not place the onset: the first anomalous point
    low, high = float(scores.expected_low[index]), float(scores.expected_high[index])
    time_ns = round(time_s * 1e9)
    return {
        "type": "anomaly",
        "id": event_id(info.key, time_ns),
        "series": info.key,
        "metric": info.metric,
        "service": info.service,
        "kind": str(info.kind),
        "unit": info.unit,
        "labels": dict(info.labels),
        "time": _rfc3339(time_s),
        "time_unix_nano": time_ns,
        "value": _number(value),
        "score": _number(float(scores.probability[index])),
        "threshold": threshold,
        "expected_range": [_number(low), _number(high)],
        "onset": _rfc3339(onset),
        "onset_unix_nano": round(onset * 1e9),
    }


def event_id(series_key: str, time_ns: int) -> str:
    """Stable id of the event of a series at a point time: the same after a replay (a crash
    between writing events and the next checkpoint writes them again), so readers dedupe."""
    digest = hashlib.sha256(series_key.encode()).hexdigest()[:16]
    return f"anomaly-{digest}-{time_ns}"


def encode_event(event: dict[str, Any]) -> bytes:
    """Compact JSON bytes of an event."""
    return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
