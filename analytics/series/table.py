"""SeriesTable: stable series keys interned into dense int ids, with a cap and idle eviction.

Ids are 0..n-1 and are reused after eviction (lowest free id first), so detector state can
live in numpy arrays indexed by id. ``snapshot()``/``restore()`` keep ids stable across
restarts. ``last_seen`` is in the points' own time (unix seconds), not the wall clock, so
replaying old records evicts nothing that was live at that time.
"""

from __future__ import annotations

import heapq
import json
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from analytics.series.types import SeriesInfo, SeriesKind

SNAPSHOT_VERSION = 1
EvictListener = Callable[[np.ndarray], None]


class SeriesTable:
    """Interns series keys into dense ids, at most ``max_series`` live at once.

    ``refused`` counts refused *points*, not distinct keys (that would need unbounded
    memory): every ``intern`` call that returned -1 (unless ``count_refused=False``) plus
    what callers that cache refusals report through ``refuse()``. MetricsDecoder counts one
    per refused data point (and once per refused histogram quantile series).
    """

    def __init__(self, max_series: int) -> None:
        if max_series < 1:
            raise ValueError(f"max_series must be >= 1, got {max_series}")
        self.max_series = max_series
        self._listeners: list[EvictListener] = []
        self._reset()

    def _reset(self) -> None:
        self.refused = 0
        self._ids: dict[str, int] = {}
        self._infos: list[SeriesInfo | None] = []
        self._free: list[int] = []  # heap of evicted ids
        self._last_seen = np.full(min(self.max_series, 1024), -np.inf)

    def __len__(self) -> int:
        """Live series."""
        return len(self._ids)

    @property
    def high_water(self) -> int:
        """One past the highest id ever handed out: size arrays indexed by id with this."""
        return len(self._infos)

    @property
    def last_seen(self) -> np.ndarray:
        """Latest point time (unix seconds) per id; -inf for free ids. A read-only view."""
        view = self._last_seen[: self.high_water]
        view.flags.writeable = False
        return view

    def lookup(self, key: str) -> int:
        """The id of ``key``, or -1 when it is not in the table (never interns)."""
        return self._ids.get(key, -1)

    def info(self, series_id: int) -> SeriesInfo | None:
        """The series behind an id, None for a free or never used id."""
        if 0 <= series_id < len(self._infos):
            return self._infos[series_id]
        return None

    def intern(
        self,
        key: str,
        metric: str,
        service: str,
        kind: SeriesKind,
        unit: str = "",
        labels: dict[str, str] | None = None,
        now: float = -np.inf,
        *,
        count_refused: bool = True,
    ) -> int:
        """The id of ``key``, created when new; -1 when the table is full.

        A refusal adds 1 to ``refused`` unless ``count_refused`` is False (callers that
        cache the -1 and count each refused point with ``refuse()``).
        """
        sid = self._ids.get(key)
        if sid is not None:
            return sid
        if len(self._ids) >= self.max_series:
            self.refused += count_refused
            return -1
        sid = heapq.heappop(self._free) if self._free else len(self._infos)
        info = SeriesInfo(sid, key, metric, service, kind, unit, dict(labels or {}))
        if sid == len(self._infos):
            self._infos.append(info)
            self._grow(sid + 1)
        else:
            self._infos[sid] = info
        self._ids[key] = sid
        self._last_seen[sid] = now
        return sid

    def refuse(self, points: int = 1) -> None:
        """Count points refused by a caller that cached an earlier -1 from ``intern``."""
        self.refused += points

    def touch(self, ids: np.ndarray, times: np.ndarray) -> None:
        """Record that these series had points at these times (ids must be valid, >= 0)."""
        if len(ids):
            np.maximum.at(self._last_seen, ids, times)

    def evict_idle(self, older_than: float) -> np.ndarray:
        """Free every series last seen before ``older_than`` (unix s); return the freed ids.

        Listeners (``on_evict``) are told first, so decoders drop caches and counter state
        before any id is reused; callers must reset their detector state for these ids.
        """
        n = self.high_water
        freed = np.flatnonzero(self._last_seen[:n] < older_than)
        freed = np.array([i for i in freed if self._infos[i] is not None], dtype=np.int64)
        if not len(freed):
            return freed
        for sid in freed.tolist():
            info = self._infos[sid]
            assert info is not None
            del self._ids[info.key]
            self._infos[sid] = None
            self._last_seen[sid] = -np.inf
            heapq.heappush(self._free, sid)
        for listener in self._listeners:
            listener(freed)
        return freed

    def on_evict(self, listener: EvictListener) -> None:
        """Call ``listener(freed_ids)`` on every eviction."""
        self._listeners.append(listener)

    def snapshot(self) -> bytes:
        """Every live series (id, key, info, last_seen) as zlib-compressed JSON."""
        rows = [
            [i.id, i.key, i.metric, i.service, str(i.kind), i.unit, i.labels, self._seen(i.id)]
            for i in self._infos
            if i is not None
        ]
        doc = {"v": SNAPSHOT_VERSION, "refused": self.refused, "series": rows}
        return zlib.compress(json.dumps(doc, separators=(",", ":")).encode(), 6)

    def restore(self, data: bytes) -> None:
        """Replace the table with a ``snapshot()``; ids above this table's cap are dropped.

        Listeners are told that every previously live id was freed (their meaning changed).

        Raises ValueError naming the problem when ``data`` is not a series table snapshot.
        """
        try:
            doc = json.loads(zlib.decompress(data))
            if doc.get("v") != SNAPSHOT_VERSION:
                raise ValueError(f"snapshot version {doc.get('v')!r}, expected 1")
            rows = [_row(r) for r in doc["series"]]
        except (ValueError, KeyError, TypeError, zlib.error) as e:
            raise ValueError(f"not a series table snapshot: {e}") from e
        rows = [r for r in rows if r[0].id < self.max_series]
        old = np.array(sorted(self._ids.values()), dtype=np.int64)
        self._reset()
        top = max((r[0].id for r in rows), default=-1) + 1
        self._infos = [None] * top
        self._grow(top)
        for info, seen in rows:
            self._infos[info.id] = info
            self._ids[info.key] = info.id
            self._last_seen[info.id] = seen
        self._free = [i for i in range(top) if self._infos[i] is None]
        self.refused = int(doc.get("refused", 0))
        if len(old):  # the old ids mean other series now: caches keyed on them must go
            for listener in self._listeners:
                listener(old)

    def _seen(self, sid: int) -> float | None:
        t = float(self._last_seen[sid])
        return t if np.isfinite(t) else None

    def _grow(self, size: int) -> None:
        if size > len(self._last_seen):
            bigger = np.full(min(self.max_series, max(size, 2 * len(self._last_seen))), -np.inf)
            bigger[: len(self._last_seen)] = self._last_seen
            self._last_seen = bigger


def _row(r: list[Any]) -> tuple[SeriesInfo, float]:
    sid, key, metric, service, kind, unit, labels, seen = r
    if not isinstance(sid, int) or sid < 0 or not isinstance(key, str):
        raise ValueError(f"bad series row {r!r}")
    info = SeriesInfo(sid, key, metric, service, SeriesKind(kind), unit, dict(labels))
    return info, -np.inf if seen is None else float(seen)
