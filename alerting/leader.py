"""Which replica of alerting is active: a lease in the store's key-value space.

Replicas sharing one store (NATS JetStream) all take alerts, acknowledgements and silences
through the API (they only append to the store), but only the lease holder routes,
notifies and remediates, so that two replicas never notify twice. The holder renews the
lease every third of its ``ttl``; a standby tries to take it as often and gets it once the
holder has not renewed for a ``ttl`` (it died). A holder that cannot renew in time stops
its own process (SIGTERM, a clean shutdown) rather than risk a second leader: its
supervisor restarts it as a standby. On one machine with the embedded store there is only
one process, so it always holds the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from keiko.errors import KeikoError
from keiko.store.base import Store
from keiko.store.lease import Lease

log = logging.getLogger(__name__)
KEY = "leader"


class Elector:
    """Holds or waits for the lease; calls ``on_lead`` once when this replica becomes leader."""

    def __init__(
        self,
        store: Store,
        bucket: str,
        ttl: float,
        info: dict[str, Any],
        on_lead: Callable[[], Awaitable[None]],
    ) -> None:
        self.store, self.bucket, self.ttl, self.info = store, bucket, ttl, info
        self.on_lead = on_lead
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.is_leader = False
        self.leader: dict[str, Any] | None = None  # the holder's record, as last seen
        self._lease: Lease | None = None
        self._renewed = 0.0  # monotonic time of the last successful renewal
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Try once (a lone replica leads from the start), then keep trying / renewing."""
        kv = await self.store.kv(self.bucket)
        self._lease = Lease(kv, KEY, self.holder, self.ttl, self.info)
        await self._step()
        self._task = asyncio.create_task(self._run(), name="alerting-leader")

    async def shutdown(self) -> None:
        """Stop renewing and hand the lease back, so a standby takes over at once."""
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.is_leader and self._lease is not None:
            with contextlib.suppress(Exception):
                await self._lease.release()
            self.is_leader = False

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.ttl / 3)
            if not self._stop.is_set():
                await self._step()

    async def _step(self) -> None:
        assert self._lease is not None
        try:
            if self.is_leader:
                if not await self._lease.renew():
                    self._lose("another replica holds the lease now")
                    return
                self._renewed = time.monotonic()
            elif await self._lease.acquire():
                self.is_leader, self._renewed = True, time.monotonic()
                self.leader = {"holder": self.holder, "info": self.info}
                log.info("alerting: this replica (%s) leads: routing and notifying", self.holder)
                await self.on_lead()
            else:
                found = await self._lease.current()
                seen = (self.leader or {}).get("holder")
                if found is not None and found.get("holder") != seen:
                    log.info("alerting: standby; %s leads", found.get("holder"))
                self.leader = found
        except KeikoError as exc:
            log.warning("alerting: leader lease not reachable (%s)", exc)
            if self.is_leader and time.monotonic() - self._renewed > self.ttl * 0.6:
                self._lose(f"could not renew for {time.monotonic() - self._renewed:.0f}s")

    def _lose(self, why: str) -> None:
        self.is_leader = False
        log.error(
            "alerting: lost the leader lease (%s): stopping this process so that it restarts "
            "as a standby (two leaders would notify twice)",
            why,
        )
        os.kill(os.getpid(), signal.SIGTERM)
