"""One target's queue: a consumer group on the outbox stream that delivers the target's
items in order, one at a time, and commits each offset once the item is settled
(delivered, deduplicated, failed permanently or given up). Records of other targets are
skipped (and committed past) by this group; their own groups deliver them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from alerting.delivery import Permanent, Retryable, Target
from alerting.model import OUTBOX_KIND, OUTBOX_STREAM, OutboxItem
from alerting.outbox.audit import Audit, delivery_event
from alerting.outbox.backoff import retry_delay
from alerting.outbox.breaker import Breaker, State
from alerting.outbox.config import OutboxConfig
from alerting.outbox.dedup import DedupBucket, key_part
from alerting.outbox.stats import LaneStats
from alerting.secrets import redact
from keiko.errors import KeikoError
from keiko.records import Record
from keiko.store.base import Consumer, Store
from keiko.stream.fetch import fetch_until_stopped

log = logging.getLogger(__name__)
FETCH_TIMEOUT = 1.0
RETRY_PAUSE = 2.0  # after a store error, before reopening the consumer


def group_name(target: str) -> str:
    """The consumer group of ``target`` (``outbox-<target>``, hashed if not a safe name)."""
    return f"outbox-{key_part(target)}".replace(".", "_")


class Lane:
    """The consume-deliver-commit loop of one target."""

    def __init__(
        self,
        name: str,
        target: Target,
        config: OutboxConfig,
        store: Store,
        dedup: DedupBucket,
        audit: Audit,
        stop: asyncio.Event,
        other: Callable[[Record, OutboxItem | None], None] | None = None,
    ) -> None:
        self.target, self.name = target, name  # name: the key items carry as their target
        self.config, self.store, self.dedup, self.audit = config, store, dedup, audit
        self.group = group_name(name)
        self.stop = stop
        # Told about every record that is not this target's item (one lane counts them).
        self.other = other
        self.stats = LaneStats()
        self.breaker = Breaker(name, config.breaker_failures, config.breaker_cooldown)
        self.consumer: Consumer | None = None

    async def run(self) -> None:
        """Until stopped; store errors reopen the consumer (from the committed offset)."""
        while not self.stop.is_set():
            try:
                if self.consumer is None:
                    self.consumer = await self.store.consumer(OUTBOX_STREAM, self.group)
                await self._handle(await self._fetch())
            except KeikoError as exc:
                log.warning(
                    "outbox: target %r: store error (%s); retrying in %gs",
                    self.name,
                    redact(str(exc)),
                    RETRY_PAUSE,
                )
                await self._reopen()
            except Exception:  # never crash after start
                log.exception("outbox: target %r: loop failed; retrying", self.name)
                await self._reopen()

    async def close(self) -> None:
        """Release the consumer (what was not committed is delivered to the next one)."""
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.close()
            self.consumer = None

    async def _reopen(self) -> None:
        # Fetched but unsettled records are read again from the committed offset.
        await self.close()
        self.stats.fetched_pending = 0
        await self._pause(RETRY_PAUSE)

    async def _pause(self, seconds: float) -> bool:
        """Wait ``seconds`` unless stopped first; whether the whole wait passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), max(0.0, seconds))
        return not self.stop.is_set()

    async def _fetch(self) -> list[Record]:
        """One fetch, abandoned when shutdown begins (nothing fetched is committed then)."""
        assert self.consumer is not None
        return await fetch_until_stopped(
            self.consumer, self.config.fetch_batch, FETCH_TIMEOUT, self.stop
        )

    async def _handle(self, records: list[Record]) -> None:
        assert self.consumer is not None
        # Records at or below the commit are settled already: NATS delivers again what
        # stayed uncommitted for its ack wait (an item retried for minutes holds its batch).
        done = self.stats.committed
        mine = [(r, self._mine(r) if r.offset > done else None) for r in records]
        self.stats.fetched_pending = sum(1 for _, item in mine if item is not None)
        skipped_to = 0  # last offset skipped and not yet committed
        for record, item in mine:
            if item is None:
                skipped_to = record.offset
                continue
            if not await self._settle(item):
                return  # stopping: not committed, delivered again after the restart
            await self._commit(record.offset)
            skipped_to = 0
            self.stats.fetched_pending -= 1
        if skipped_to:  # never backwards: a redelivered record is older than the commit
            await self._commit(max(skipped_to, self.stats.committed))

    async def _commit(self, offset: int) -> None:
        assert self.consumer is not None
        await self.consumer.commit(offset)
        self.stats.committed = offset

    def _mine(self, record: Record) -> OutboxItem | None:
        """The record's item if it is this target's; others go to ``other`` (if any)."""
        if self.other is None and record.kind == OUTBOX_KIND and record.key not in ("", self.name):
            return None  # another target's by its key: not worth decoding
        item: OutboxItem | None = None
        if record.kind == OUTBOX_KIND:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                item = OutboxItem.decode(record.payload)
        if item is not None and item.target == self.name:
            return item
        if self.other is not None:
            self.other(record, item)
        return None

    async def _settle(self, item: OutboxItem) -> bool:
        """Deliver ``item`` or give it up; False when stopped before it was settled."""
        if await self.dedup.seen(self.name, item.id):
            self.stats.outcomes[item.kind, "deduplicated"] += 1
            return True
        self.stats.head_created = item.created
        try:
            return await self._attempts(item)
        finally:
            self.stats.head_created = 0.0

    async def _attempts(self, item: OutboxItem) -> bool:
        attempts, cfg = 0, self.config
        while True:
            age = time.time() - item.created
            wait = self.breaker.wait(time.monotonic())
            if wait > 0 and age >= cfg.max_age:  # no probe per stale item: drain them
                await self._give_up(item, attempts, "circuit open")
                return True
            if wait > 0:
                if not await self._pause(wait):
                    return False
                continue
            attempts += 1
            error = await self._attempt(item)
            if error is None:
                self.breaker.success()
                await self.dedup.mark(self.name, item.id)
                self.stats.outcomes[item.kind, "delivered"] += 1
                await self.audit.write(delivery_event(item, "delivered", attempts))
                return True
            if isinstance(error, Permanent):
                self.stats.outcomes[item.kind, "failed"] += 1
                await self.audit.write(delivery_event(item, "failed", attempts, str(error)))
                return True
            reason = redact(str(error))
            self.breaker.failure(time.monotonic(), reason)
            if attempts == 1:  # one event per failing item, not one per retry
                self.stats.outcomes[item.kind, "retried"] += 1
                await self.audit.write(delivery_event(item, "retrying", attempts, reason))
            age = time.time() - item.created
            if age >= cfg.max_age:
                await self._give_up(item, attempts, reason)
                return True
            delay = retry_delay(attempts, cfg.retry_base, cfg.retry_max, error.retry_after)
            # Wake up at max_age at the latest: the last try is made then, not later.
            if not await self._pause(min(delay, max(0.0, cfg.max_age - age) + 0.01)):
                return False

    async def _attempt(self, item: OutboxItem) -> Permanent | Retryable | None:
        """One delivery within the timeout; the error, or None when it went through."""
        self.stats.attempts += 1
        began = time.perf_counter()
        try:
            await asyncio.wait_for(self.target.deliver(item), self.config.timeout)
        except (Permanent, Retryable) as exc:
            return exc
        except TimeoutError:
            return Retryable(f"no answer within {self.config.timeout:g}s")
        except Exception as exc:  # a target's bug: retried like an outage, and said so
            log.warning(
                "outbox: target %r raised %s (a bug in the target; retried): %s",
                self.name,
                type(exc).__name__,
                redact(str(exc)),
            )
            return Retryable(f"{type(exc).__name__}: {exc}")
        finally:
            self.stats.durations.observe(time.perf_counter() - began)
        return None

    async def _give_up(self, item: OutboxItem, attempts: int, reason: str) -> None:
        self.stats.outcomes[item.kind, "gave_up"] += 1
        log.warning(
            "outbox: gave up %s %s for target %r after %d attempts over %.0fs: %s",
            item.kind,
            item.id,
            self.name,
            attempts,
            time.time() - item.created,
            reason,
        )
        await self.audit.write(delivery_event(item, "gave_up", attempts, reason))

    @property
    def circuit(self) -> State:
        """The breaker's state (exported)."""
        return self.breaker.state
