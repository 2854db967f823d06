"""The service graph's edges: per (client, server, connection type) request and failure
counts, client and server latency histograms, when last seen and by what (spans, eBPF)."""

from __future__ import annotations

import io
import json
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from analytics.spanmetrics.slots import Slots, buckets_of, grow

EdgeKey = tuple[str, str, str]  # client, server, connection type ("" for a plain call)
SEEN_SPANS, SEEN_EBPF = 1, 2


@dataclass(frozen=True, slots=True)
class EdgeView:
    """One edge's totals, as read for export."""

    client: str
    server: str
    connection_type: str
    requests: int
    failed: int
    server_buckets: tuple[int, ...]
    server_sum: float
    client_buckets: tuple[int, ...]
    client_sum: float
    seen_by: tuple[str, ...]
    rate: float  # requests per second over the rate window (0 when unknown)
    error_rate: float  # failed per second over the rate window


class EdgeTable:
    """Edge totals in slot-indexed arrays; reads for export under ``lock``."""

    def __init__(self, bounds_s: Sequence[float], max_edges: int, rate_window_s: float) -> None:
        self.bounds_s = tuple(float(b) for b in bounds_s)
        self.bounds_ns = np.array([round(b * 1e9) for b in self.bounds_s], np.int64)
        self.width = len(self.bounds_s) + 1
        self.slots: Slots[EdgeKey] = Slots(max_edges)
        self.requests = np.zeros(0, np.int64)
        self.failed = np.zeros(0, np.int64)
        self.server_counts = np.zeros((0, self.width), np.int64)
        self.client_counts = np.zeros((0, self.width), np.int64)
        self.server_sums = np.zeros(0)
        self.client_sums = np.zeros(0)
        self.last_ns = np.zeros(0, np.int64)
        self.seen = np.zeros(0, np.uint8)
        self.refused = 0  # requests of edges beyond max_edges
        self.window_ns = int(rate_window_s * 1e9)
        # (time, requests, failed) at past marks: the rates' baseline
        self.history: deque[tuple[int, np.ndarray, np.ndarray]] = deque()
        self.lock = threading.RLock()

    def __len__(self) -> int:
        return len(self.slots)

    def ids(self, keys: Sequence[EdgeKey]) -> np.ndarray:
        """Slots of ``keys`` (new ones interned; -1 beyond max_edges)."""
        ids = np.array([self.slots.intern(k) for k in keys], np.int64)
        rows = self.slots.high_water
        if rows > len(self.requests):
            self.requests, self.failed, self.server_sums, self.client_sums = (
                grow(a, rows)
                for a in (self.requests, self.failed, self.server_sums, self.client_sums)
            )
            self.last_ns, self.seen = grow(self.last_ns, rows), grow(self.seen, rows)
            self.server_counts = grow(self.server_counts, rows)
            self.client_counts = grow(self.client_counts, rows)
        return ids

    def add(
        self,
        ids: np.ndarray,
        failed: np.ndarray,
        client_ns: np.ndarray,
        server_ns: np.ndarray,
        ends: np.ndarray,
        seen: int = SEEN_SPANS,
        requests: np.ndarray | None = None,
    ) -> None:
        """Requests of edges ``ids`` (one per row unless ``requests`` says how many);
        latencies below 0 are unknown (not in the histograms)."""
        ok = ids >= 0
        counts = np.ones(len(ids), np.int64) if requests is None else requests
        self.refused += int(counts[~ok].sum())
        ids, failed, client_ns, server_ns, ends, counts = (
            a[ok] for a in (ids, failed, client_ns, server_ns, ends, counts)
        )
        if not len(ids):
            return
        rows = len(self.requests)
        self.requests += np.bincount(ids, weights=counts, minlength=rows).astype(np.int64)
        self.failed += np.bincount(ids, weights=failed, minlength=rows).astype(np.int64)
        for latency, hist, sums in (
            (server_ns, self.server_counts, self.server_sums),
            (client_ns, self.client_counts, self.client_sums),
        ):
            known = latency >= 0
            kid, lat = ids[known], latency[known]
            flat = kid * self.width + buckets_of(lat, self.bounds_ns)
            hist += np.bincount(flat, minlength=rows * self.width).reshape(rows, self.width)
            sums += np.bincount(kid, weights=lat / 1e9, minlength=rows)
        np.maximum.at(self.last_ns, ids, ends)
        self.seen[np.unique(ids)] |= seen

    def mark(self, time_ns: int) -> None:
        """Remember the totals at ``time_ns`` (span time) as a baseline of the rates."""
        if time_ns <= 0:  # no spans yet
            return
        with self.lock:
            if self.history and time_ns <= self.history[-1][0]:
                self.history.pop()  # no newer spans: the latest totals at the same time
            self.history.append((time_ns, self.requests.copy(), self.failed.copy()))
            while len(self.history) > 2 and self.history[1][0] <= time_ns - self.window_ns:
                self.history.popleft()

    def evict_idle(self, older_ns: int) -> int:
        """Remove edges not seen since ``older_ns``; how many."""
        with self.lock:
            held = self.slots.mask()
            idle = np.flatnonzero(held & (self.last_ns[: len(held)] < older_ns))
            if len(idle):
                self.slots.free(idle)
                for a in (self.requests, self.failed, self.server_sums, self.client_sums):
                    a[idle] = 0
                self.last_ns[idle], self.seen[idle] = 0, 0
                self.server_counts[idle], self.client_counts[idle] = 0, 0
                self.history.clear()  # slots will be reused: old baselines would mislead
            return len(idle)

    def views(self) -> list[EdgeView]:
        """Every edge with its totals and rates (locks)."""
        with self.lock:
            rates, errors = self._rates()
            out = []
            sc, cc = self.server_counts.tolist(), self.client_counts.tolist()
            for sid, (client, server, ctype) in self.slots.used():
                seen = int(self.seen[sid])
                by = tuple(
                    n for bit, n in ((SEEN_SPANS, "spans"), (SEEN_EBPF, "ebpf")) if seen & bit
                )
                out.append(
                    EdgeView(
                        client,
                        server,
                        ctype,
                        int(self.requests[sid]),
                        int(self.failed[sid]),
                        tuple(sc[sid]),
                        float(self.server_sums[sid]),
                        tuple(cc[sid]),
                        float(self.client_sums[sid]),
                        by,
                        float(rates[sid]),
                        float(errors[sid]),
                    )
                )
            return out

    def _rates(self) -> tuple[np.ndarray, np.ndarray]:
        rows = len(self.requests)
        if len(self.history) < 2:
            return np.zeros(rows), np.zeros(rows)
        t0, r0, f0 = self.history[0]
        t1, r1, f1 = self.history[-1]
        seconds = (t1 - t0) / 1e9
        if seconds <= 0:
            return np.zeros(rows), np.zeros(rows)

        def padded(a: np.ndarray) -> np.ndarray:
            out = np.zeros(rows)
            out[: min(len(a), rows)] = a[:rows]
            return out

        requests = np.maximum(padded(r1) - padded(r0), 0) / seconds
        failed = np.maximum(padded(f1) - padded(f0), 0) / seconds
        return requests, failed

    # -- checkpoints --------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """Keys and totals (npz with the keys as JSON); the rate baselines are not kept."""
        with self.lock:
            rows = self.slots.high_water
            buffer = io.BytesIO()
            np.savez_compressed(
                buffer,
                keys=np.frombuffer(json.dumps(self.slots.keys).encode(), np.uint8),
                bounds=np.array(self.bounds_s),
                requests=self.requests[:rows],
                failed=self.failed[:rows],
                server_counts=self.server_counts[:rows],
                client_counts=self.client_counts[:rows],
                server_sums=self.server_sums[:rows],
                client_sums=self.client_sums[:rows],
                last_ns=self.last_ns[:rows],
                seen=self.seen[:rows],
                refused=np.array([self.refused], np.int64),
            )
            return buffer.getvalue()

    def restore(self, data: bytes) -> None:
        """Load a snapshot; ValueError when its buckets differ from the configured ones."""
        with np.load(io.BytesIO(data)) as z:
            if tuple(z["bounds"].tolist()) != self.bounds_s:
                raise ValueError(
                    "the checkpoint's service graph buckets differ from analytics.spanmetrics"
                    ".graph.buckets: cumulative histograms cannot continue"
                )
            raw = json.loads(bytes(z["keys"]).decode())
            arrays = {k: z[k].copy() for k in z.files if k not in ("keys", "bounds")}
        keys: list[EdgeKey | None] = [
            None if k is None else (str(k[0]), str(k[1]), str(k[2])) for k in raw
        ]
        with self.lock:
            self.slots.restore(keys)
            self.requests, self.failed = arrays["requests"], arrays["failed"]
            self.server_counts, self.client_counts = (
                arrays["server_counts"],
                arrays["client_counts"],
            )
            self.server_sums, self.client_sums = arrays["server_sums"], arrays["client_sums"]
            self.last_ns, self.seen = arrays["last_ns"], arrays["seen"]
            self.refused = int(arrays["refused"][0])
            self.history.clear()
