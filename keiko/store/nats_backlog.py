"""How far behind the slowest consumer group of a JetStream stream is, in bytes.

JetStream counts a consumer's lag in messages (num_pending: not yet delivered, plus
num_ack_pending: delivered, not acknowledged), not in bytes. The bytes behind are
approximated as that count times the stream's average stored message size (stream bytes
/ messages, which includes the subject and headers of each message).

Asking JetStream costs two API calls, so the figure is cached for ``TTL`` seconds per
stream; appends made through this process add their bytes to the cached figure at once
and commits made through it drop the cache, so a single process sees its own effect
immediately and other processes' within ``TTL``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from keiko.store.nats_api import JsApi

TTL = 0.5


@dataclass
class _Entry:
    at: float  # monotonic time of the figure
    behind: int  # bytes the slowest group is behind
    has_groups: bool


class Backlog:
    """Cached bytes-behind of the slowest durable consumer, per JetStream stream."""

    def __init__(self, api: Callable[[], JsApi]) -> None:
        self._api = api
        self._entries: dict[str, _Entry] = {}
        self._refreshing: dict[str, asyncio.Future[_Entry]] = {}

    async def behind(self, js_stream: str) -> int | None:
        """Bytes the slowest group is behind; None when the stream has no group."""
        entry = self._entries.get(js_stream)
        if entry is None or time.monotonic() - entry.at > TTL:
            entry = await self._refresh(js_stream)
        return entry.behind if entry.has_groups else None

    def appended(self, js_stream: str, nbytes: int) -> None:
        entry = self._entries.get(js_stream)
        if entry is not None and entry.has_groups:
            entry.behind += nbytes

    def invalidate(self, js_stream: str | None = None) -> None:
        if js_stream is None:
            self._entries.clear()
        else:
            self._entries.pop(js_stream, None)

    async def _refresh(self, js_stream: str) -> _Entry:
        # Concurrent appends share one refresh instead of each asking JetStream.
        pending = self._refreshing.get(js_stream)
        if pending is None:
            pending = asyncio.ensure_future(self._measure(js_stream))
            self._refreshing[js_stream] = pending
            pending.add_done_callback(lambda _: self._refreshing.pop(js_stream, None))
        entry = await asyncio.shield(pending)
        self._entries[js_stream] = entry
        return entry

    async def _measure(self, js_stream: str) -> _Entry:
        api = self._api()
        at = time.monotonic()
        info, consumers = await asyncio.gather(api.stream_info(js_stream), api.consumers(js_stream))
        lags = [
            c.get("num_pending", 0) + c.get("num_ack_pending", 0)
            for c in consumers
            if c.get("config", {}).get("durable_name")
        ]
        if not lags:
            return _Entry(at, 0, False)
        state = info.get("state", {})
        messages = state.get("messages", 0)
        average = state.get("bytes", 0) / messages if messages else 0.0
        return _Entry(at, int(max(lags) * average), True)
