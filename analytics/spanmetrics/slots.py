"""Interned keys in numbered slots with free-slot reuse: the row index of the aggregates."""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

import numpy as np

K = TypeVar("K", bound=Hashable)


class Slots(Generic[K]):
    """Key -> slot number, at most ``cap`` keys; freed slots are reused first."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.ids: dict[K, int] = {}
        self.keys: list[K | None] = []  # by slot; None when free
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def high_water(self) -> int:
        """One past the highest slot ever used (the rows an array must have)."""
        return len(self.keys)

    def intern(self, key: K) -> int:
        """The slot of ``key``, a new one if there is room, else -1."""
        sid = self.ids.get(key)
        if sid is not None:
            return sid
        if len(self.ids) >= self.cap:
            return -1
        if self._free:
            sid = self._free.pop()
            self.keys[sid] = key
        else:
            sid = len(self.keys)
            self.keys.append(key)
        self.ids[key] = sid
        return sid

    def free(self, slots: np.ndarray) -> None:
        """Forget the keys of ``slots`` (their rows must be zeroed by the owner)."""
        for sid in slots.tolist():
            key = self.keys[sid]
            if key is not None:
                del self.ids[key]
                self.keys[sid] = None
                self._free.append(sid)

    def used(self) -> Iterator[tuple[int, K]]:
        """(slot, key) of every held key, in slot order."""
        for sid, key in enumerate(self.keys):
            if key is not None:
                yield sid, key

    def mask(self) -> np.ndarray:
        """Per slot up to the high water: held or not."""
        return np.array([k is not None for k in self.keys], bool)

    def restore(self, keys: list[K | None]) -> None:
        """Take the key list of a snapshot (slots keep their numbers)."""
        self.keys = list(keys)
        self.ids = {k: i for i, k in enumerate(self.keys) if k is not None}
        self._free = [i for i, k in enumerate(self.keys) if k is None]


def grow(array: np.ndarray, rows: int) -> np.ndarray:
    """``array`` with at least ``rows`` rows (doubling; new rows zero)."""
    if len(array) >= rows:
        return array
    new = np.zeros((max(rows, 2 * len(array), 64), *array.shape[1:]), array.dtype)
    new[: len(array)] = array
    return new


def buckets_of(durations_ns: np.ndarray, bounds_ns: np.ndarray) -> np.ndarray:
    """The explicit bucket of each duration: bucket i holds (bounds[i-1], bounds[i]] (OTLP)."""
    return np.searchsorted(bounds_ns, durations_ns, side="left")
