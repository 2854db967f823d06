"""Span metrics: a call count and a duration histogram per (service, span name, span kind,
status code), like the OpenTelemetry Collector's spanmetrics connector.

One fetch is folded in at once: spans are mapped to series slots through one dict lookup
each (new keys interned up to ``max_series``; spans of refused keys are counted), then
bucketed with ``searchsorted`` and added with ``bincount``. The status is
``STATUS_CODE_ERROR`` or ``STATUS_CODE_UNSET`` (the decoded spans keep only whether a span
failed, so an explicit OK counts as unset).
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np

from analytics.spanmetrics.slots import Slots, buckets_of, grow
from analytics.traces.spans import KIND_NAMES, SpanBatch

SeriesKey = tuple[str, str, int, bool]  # service, span name, kind, error
MAX_AHEAD_NS = 300 * 10**9  # span ends later than this after the wall clock: bad clocks


def newest_end(ends: np.ndarray) -> int:
    """The latest span end of ``ends``, at most MAX_AHEAD_NS after now: one span from a
    clock far ahead must not stamp every later flush in the future (or expire every
    waiting span at once)."""
    return min(int(ends.max()), time.time_ns() + MAX_AHEAD_NS)


_KINDS = {int(k): v for k, v in KIND_NAMES.items()}
STATUS_NAMES = {False: "STATUS_CODE_UNSET", True: "STATUS_CODE_ERROR"}


@dataclass(frozen=True, slots=True)
class SeriesView:
    """One series' cumulative values, as read for export."""

    service: str
    name: str
    kind: str  # SPAN_KIND_SERVER ...
    status: str  # STATUS_CODE_UNSET / STATUS_CODE_ERROR
    start_ns: int
    calls: int
    sum_s: float
    buckets: tuple[int, ...]


class SpanMetrics:
    """Cumulative span metrics of every series held (thread-safe reads under ``lock``)."""

    def __init__(self, bounds_s: Sequence[float], max_series: int) -> None:
        self.bounds_s = tuple(float(b) for b in bounds_s)
        self.bounds_ns = np.array([round(b * 1e9) for b in self.bounds_s], np.int64)
        self.width = len(self.bounds_s) + 1
        self.slots: Slots[SeriesKey] = Slots(max_series)
        self.counts = np.zeros((0, self.width), np.int64)
        self.sums = np.zeros(0)  # seconds
        self.start_ns = np.zeros(0, np.int64)
        self.last_ns = np.zeros(0, np.int64)
        self.newest_ns = 0  # latest span end seen: the time stamp of exported points
        self.spans = 0
        self.refused = 0  # spans of series beyond max_series
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.slots)

    def observe(self, batch: SpanBatch) -> None:
        """Fold the spans of ``batch`` in."""
        n = len(batch)
        if not n:
            return
        keys = list(
            zip(batch.service, batch.name, batch.kind.tolist(), batch.error.tolist(), strict=True)
        )
        ids = np.array(list(map(self.slots.ids.get, keys, repeat(-1))), np.int64)
        with self.lock:
            for i in np.flatnonzero(ids < 0).tolist():
                ids[i] = self._intern(keys[i], int(batch.end_ns[i]))
            ok = ids >= 0
            if not ok.all():
                self.refused += int((~ok).sum())
                ids = ids[ok]
                ends, durations = batch.end_ns[ok], batch.duration_ns[ok]
            else:
                ends, durations = batch.end_ns, batch.duration_ns
            self._add(ids, ends, durations)

    def _intern(self, key: SeriesKey, end_ns: int) -> int:
        new = key not in self.slots.ids  # a key repeated within the fetch keeps its start
        sid = self.slots.intern(key)
        if sid >= 0 and new:
            self._grow()
            self.start_ns[sid] = end_ns
        return sid

    def _grow(self) -> None:
        rows = self.slots.high_water
        self.counts = grow(self.counts, rows)
        self.sums, self.start_ns, self.last_ns = (
            grow(a, rows) for a in (self.sums, self.start_ns, self.last_ns)
        )

    def _add(self, ids: np.ndarray, ends: np.ndarray, durations: np.ndarray) -> None:
        if not len(ids):
            return
        rows = len(self.sums)
        flat = ids * self.width + buckets_of(durations, self.bounds_ns)
        self.counts += np.bincount(flat, minlength=rows * self.width).reshape(rows, self.width)
        self.sums += np.bincount(ids, weights=durations / 1e9, minlength=rows)
        np.maximum.at(self.last_ns, ids, ends)
        self.newest_ns = max(self.newest_ns, newest_end(ends))
        self.spans += len(ids)

    def evict_idle(self, older_ns: int) -> int:
        """Drop series without spans since ``older_ns``; how many."""
        with self.lock:
            held = self.slots.mask()
            idle = np.flatnonzero(held & (self.last_ns[: len(held)] < older_ns))
            if len(idle):
                self.slots.free(idle)
                self.counts[idle] = 0
                self.sums[idle] = self.start_ns[idle] = self.last_ns[idle] = 0
            return len(idle)

    def series(self) -> Iterator[SeriesView]:
        """Every held series (call under ``lock`` when another thread may observe)."""
        counts = self.counts.tolist()
        for sid, (service, name, kind, error) in self.slots.used():
            row = counts[sid]
            yield SeriesView(
                service,
                name,
                _KINDS.get(kind, "SPAN_KIND_UNSPECIFIED"),
                STATUS_NAMES[error],
                int(self.start_ns[sid]),
                sum(row),
                float(self.sums[sid]),
                tuple(row),
            )

    # -- checkpoints --------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Keys, counts and times (npz with the keys as JSON)."""
        with self.lock:
            rows = self.slots.high_water
            keys = json.dumps(self.slots.keys).encode()
            buffer = io.BytesIO()
            np.savez_compressed(
                buffer,
                keys=np.frombuffer(keys, np.uint8),
                bounds=np.array(self.bounds_s),
                counts=self.counts[:rows],
                sums=self.sums[:rows],
                start_ns=self.start_ns[:rows],
                last_ns=self.last_ns[:rows],
                meta=np.array([self.newest_ns, self.spans, self.refused], np.int64),
            )
            return buffer.getvalue()

    def restore(self, data: bytes) -> None:
        """Load a snapshot; ValueError when its buckets differ from the configured ones."""
        with np.load(io.BytesIO(data)) as z:
            if tuple(z["bounds"].tolist()) != self.bounds_s:
                raise ValueError(
                    "the checkpoint's span metric buckets differ from analytics.spanmetrics"
                    ".buckets: cumulative histograms cannot continue"
                )
            raw = json.loads(bytes(z["keys"]).decode())
            keys: list[SeriesKey | None] = [
                None if k is None else (str(k[0]), str(k[1]), int(k[2]), bool(k[3])) for k in raw
            ]
            counts, sums = z["counts"], z["sums"]
            start_ns, last_ns, meta = z["start_ns"], z["last_ns"], z["meta"].tolist()
        with self.lock:
            self.slots.restore(keys)
            self.counts, self.sums = counts.copy(), sums.copy()
            self.start_ns, self.last_ns = start_ns.copy(), last_ns.copy()
            self.newest_ns, self.spans, self.refused = (int(v) for v in meta)
