"""The demo's load generator: an open loop of shop requests at a fixed rate.

Open loop: requests are sent on schedule whether or not earlier ones have answered, as
real users would, so a slow service shows up as latency rather than as a lower rate. At
most ``concurrency`` requests are in flight; a request due beyond that is counted as
dropped instead of queueing without bound.
"""

from __future__ import annotations

import http.client
import itertools
import json
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# (weight, method, path, body): what users do on the shop.
Route = tuple[int, str, str, dict[str, str] | None]  # weight, method, path, JSON body
MIX: tuple[Route, ...] = (
    (5, "GET", "/", None),
    (3, "POST", "/checkout", {}),
    (2, "POST", "/assistant", {"question": "What is in my cart?"}),
)
USERS = 40


def interleave(mix: tuple[Route, ...]) -> list[Route]:
    """One round of the mix with each route ``weight`` times, spread out (smooth weighted
    round robin): every route, and so every service, is called within the first round,
    so even a two-second demo shows them all; random draws could leave one out."""
    total = sum(weight for weight, *_ in mix)
    current = [0] * len(mix)
    order = []
    for _ in range(total):
        current = [c + weight for c, (weight, *_) in zip(current, mix, strict=True)]
        best = max(range(len(mix)), key=current.__getitem__)
        current[best] -= total
        order.append(mix[best])
    return order


TIMEOUT_S = 15.0


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class LoadStats:
    """What the load generator saw, from the users' side."""

    sent: int = 0
    ok: int = 0
    failed: int = 0
    dropped: int = 0  # due while ``concurrency`` requests were still in flight
    by_route: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # "POST /checkout 502"
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))  # seconds
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, route: str, status: int | str, seconds: float) -> None:
        """Count one answered (or failed) request."""
        with self._lock:
            self.by_route[route] += 1
            self.latencies.append(seconds)
            if status == 200:
                self.ok += 1
            else:
                self.failed += 1
                self.errors[f"{route} {status}"] += 1

    def summary(self) -> dict[str, object]:
        """Counts and latency quantiles (ms) as a JSON-ready dict."""
        with self._lock:
            lat = list(self.latencies)
            return {
                "sent": self.sent,
                "ok": self.ok,
                "failed": self.failed,
                "dropped": self.dropped,
                "by_route": dict(self.by_route),
                "errors": dict(self.errors),
                "p50_ms": round(percentile(lat, 0.5) * 1000, 1),
                "p95_ms": round(percentile(lat, 0.95) * 1000, 1),
                "max_ms": round(max(lat, default=0.0) * 1000, 1),
            }


class LoadGenerator:
    """Sends the request mix to the frontend at ``rate`` requests per second."""

    def __init__(
        self, frontend_url: str, rate: float, concurrency: int = 32, seed: int | None = None
    ) -> None:
        url = urlsplit(frontend_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.rate = rate
        self.concurrency = concurrency
        self.stats = LoadStats()
        self._rng = random.Random(seed)
        self._routes = itertools.cycle(interleave(MIX))
        self._inflight = threading.Semaphore(concurrency)

    def run(
        self,
        duration: float,
        stop: threading.Event,
        progress: Callable[[float], None] | None = None,
        every: float = 5.0,
    ) -> float:
        """Send until ``duration`` seconds passed (0: until ``stop`` is set); return the time.

        ``progress(elapsed)`` is called every ``every`` seconds from this thread.
        """
        started = time.monotonic()
        next_report = every
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="demo-load") as pool:
            n = 0
            while not stop.is_set():
                elapsed = time.monotonic() - started
                if duration and elapsed >= duration:
                    break
                if progress is not None and elapsed >= next_report:
                    progress(elapsed)
                    next_report += every
                due = n / self.rate
                if due > elapsed:
                    stop.wait(min(due - elapsed, next_report - elapsed))
                    continue
                n += 1
                self._submit(pool)
        return time.monotonic() - started

    def _submit(self, pool: ThreadPoolExecutor) -> None:
        self.stats.sent += 1
        if not self._inflight.acquire(blocking=False):
            self.stats.dropped += 1
            return
        _, method, path, body = next(self._routes)
        user = f"u{self._rng.randint(1, USERS)}"
        pool.submit(self._request, method, path, {**(body or {}), "user": user}, user)

    def _request(self, method: str, path: str, body: dict[str, object], user: str) -> None:
        route = f"{method} {path}"
        started = time.perf_counter()
        status: int | str
        conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_S)
        try:
            if method == "GET":
                conn.request(method, f"{path}?user={user}")
            else:
                conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            status = response.status
        except OSError as exc:
            status = type(exc).__name__
        finally:
            conn.close()
            self._inflight.release()
        self.stats.record(route, status, time.perf_counter() - started)
