"""The outbox component: one :class:`~alerting.outbox.lane.Lane` per target on the outbox
stream, the dedup-key garbage collector, and the Prometheus collector.

Another part of keiko appends ``OutboxItem.encode()`` records (kind ``OUTBOX_KIND``, key
the target) to the ``outbox`` stream; this delivers them. A receiver that is down holds
up only its own lane. Targets with an ``async close()`` are closed at shutdown. Targets
that ask for it (a ``use_ledger(ledger)`` method) get a
:class:`~alerting.outbox.dedup.Ledger` scoped to them in the dedup bucket, to remember
partial deliveries across retries and restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping

from alerting.delivery import Target
from alerting.model import OUTBOX_KIND, OutboxItem
from alerting.outbox.audit import Audit
from alerting.outbox.config import OutboxConfig
from alerting.outbox.dedup import DedupBucket
from alerting.outbox.export import OutboxExport
from alerting.outbox.lane import Lane
from alerting.outbox.stats import OutboxStats
from keiko.components import Context
from keiko.errors import KeikoError
from keiko.records import Record

log = logging.getLogger(__name__)
UNKNOWN_TARGETS_MAX = 100  # distinct unknown target names tracked (bounded)
GC_INTERVAL_MAX = 3600.0
START_RETRY = 2.0


class Outbox:
    """Delivers the outbox stream's items to their targets (a keiko component)."""

    name = "outbox"

    def __init__(self, config: OutboxConfig, ctx: Context, targets: Mapping[str, Target]) -> None:
        self.config, self.ctx = config, ctx
        self.targets = dict(targets)
        self.stats = OutboxStats()
        self.lanes: dict[str, Lane] = {}
        self.dedup: DedupBucket | None = None
        self.export = OutboxExport(self)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._registered = False

    async def start(self) -> None:
        """Open the bucket and start one lane per target in a task; returns at once."""
        if not self.targets:
            log.warning("outbox: no targets configured: nothing will be delivered")
        self.ctx.telemetry.registry.register(self.export)
        self._registered = True
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def shutdown(self, deadline: float) -> None:
        """Stop fetching, let deliveries in flight finish by ``deadline`` (monotonic),
        cancel what is left (uncommitted: delivered again after a restart). Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        tasks = [t for t in (self._task, *self._tasks) if t is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
            for task in late:
                task.cancel()
            if late:
                log.warning(
                    "outbox: %d deliveries still running at the deadline: cancelled "
                    "(they are retried after the restart)",
                    len(late),
                )
                await asyncio.wait(late, timeout=1.0)
        for lane in self.lanes.values():
            await lane.close()
        for name, target in self.targets.items():
            close = getattr(target, "close", None)  # optional: connections, clients
            if callable(close):
                try:
                    await close()
                except Exception:
                    log.exception("outbox: closing target %r failed", name)
        if self._registered:
            with contextlib.suppress(KeyError):
                self.ctx.telemetry.registry.unregister(self.export)
            self._registered = False

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                kv = await self.ctx.store.kv(self.config.bucket)
                break
            except KeikoError as exc:
                log.warning("outbox: store not usable yet (%s); retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), START_RETRY)
        else:
            return
        self.dedup = DedupBucket(kv)
        audit = Audit(self.ctx.store, self.stats)
        for k, (name, target) in enumerate(sorted(self.targets.items())):
            use_ledger = getattr(target, "use_ledger", None)
            if callable(use_ledger):
                use_ledger(self.dedup.ledger(name))
            # The first lane alone reports records no lane takes (every lane sees them).
            other = self._census if k == 0 else None
            lane = Lane(
                name, target, self.config, self.ctx.store, self.dedup, audit, self._stop, other
            )
            self.lanes[name] = lane
            self._tasks.append(asyncio.create_task(lane.run(), name=f"outbox-{name}"))
        self._tasks.append(asyncio.create_task(self._collect_garbage(), name="outbox-gc"))
        log.info(
            "outbox: delivering to %d targets (%s); retries %g..%gs for up to %gs; dedup bucket %r",
            len(self.targets),
            ", ".join(sorted(self.targets)) or "none",
            self.config.retry_base,
            self.config.retry_max,
            self.config.max_age,
            self.config.bucket,
        )

    def _census(self, record: Record, item: OutboxItem | None) -> None:
        """Count a record that no lane delivers (it is not some configured target's)."""
        if item is None:
            reason = "kind" if record.kind != OUTBOX_KIND else "undecodable"
            self.stats.skipped_records[reason] += 1
            return
        if item.target in self.targets:
            return
        self.stats.skipped_records["unknown_target"] += 1
        seen = self.stats.unknown_targets
        if item.target not in seen and len(seen) >= UNKNOWN_TARGETS_MAX:
            return
        if item.target not in seen:
            log.warning(
                "outbox: records for target %r, which is not configured (config changed?): "
                "skipped; add the receiver/action back to deliver new ones",
                item.target,
            )
        seen[item.target] += 1

    async def _collect_garbage(self) -> None:
        """Delete dedup keys older than dedup_ttl, at start and then periodically."""
        interval = min(GC_INTERVAL_MAX, max(1.0, self.config.dedup_ttl / 4))
        while not self._stop.is_set():
            try:
                assert self.dedup is not None
                self.stats.dedup_collected += await self.dedup.collect(self.config.dedup_ttl)
            except KeikoError as exc:
                log.warning("outbox: dedup key garbage collection failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
