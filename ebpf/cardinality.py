"""Bounded label values per metric family: the first N distinct keys pass, later ones fold.

A key that has not been seen for ``idle_expiry`` seconds frees its slot, so a node where
pods come and go does not end up folding every new pod into "other" forever.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Hashable

OTHER = "other"


class Limiter:
    """Per family (metric name), at most ``limit`` distinct keys of one label."""

    def __init__(self, label: str, limit: int, idle_expiry: float = 600.0) -> None:
        self.label = label  # what is bounded: "cgroup", "remote" (the self-metric's label)
        self.limit = limit
        self.idle_expiry = idle_expiry
        self._seen: dict[str, dict[Hashable, float]] = {}
        self.folded: Counter[str] = Counter()  # points folded, by family

    def admit(self, family: str, key: Hashable, now: float | None = None) -> bool:
        """True if ``key`` keeps its own series in ``family``; False: fold it into "other"."""
        now = time.monotonic() if now is None else now
        seen = self._seen.setdefault(family, {})
        if key in seen or len(seen) < self.limit:
            seen[key] = now
            return True
        self.folded[family] += 1
        return False

    def expire(self, now: float | None = None) -> int:
        """Forget keys idle for longer than ``idle_expiry``; return how many."""
        now = time.monotonic() if now is None else now
        gone = 0
        for seen in self._seen.values():
            old = [k for k, t in seen.items() if now - t > self.idle_expiry]
            for k in old:
                del seen[k]
            gone += len(old)
        return gone

    @property
    def folded_total(self) -> int:
        return sum(self.folded.values())

    def size(self, family: str) -> int:
        return len(self._seen.get(family, ()))
