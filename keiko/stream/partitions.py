"""A stage split over the partitions of its stream, shared by several processes.

With a shared store (NATS JetStream) several ``keiko analyze`` processes run the same
stages. Each partition of a stage's stream (``store.nats.partitions`` of ``traces`` and
``metrics``; one for other streams) is worked on by one process at a time: the holder of
the partition's lease (:mod:`keiko.store.lease`) in the ``partitions`` bucket. Each
process runs one :class:`~keiko.stream.worker.StreamWorker` per partition it holds, with
its own consumer (filtered on the partition) and its own checkpoint
(``<name>.p<n>``), so a partition's state moves with it.

Balance: every process also keeps itself in the stage's member record (holder -> expiry,
updated by compare-and-swap); each round (every second, at most a third of the lease
ttl) a process renews what it holds, counts the live members and aims at its fair share,
``ceil(partitions / members)``: it takes free or expired partitions while under it and
hands the surplus back while over it (final checkpoint first, then the lease is freed,
so the next holder restores exactly that state). A process that died stops renewing:
after the ttl its partitions are free and the others take them, restore the checkpoint and
rewind the partition's consumer to just after it, so nothing it had fetched is lost.
A holder that fails to renew in time stops its worker without a checkpoint (another
process may already own the partition).

Metrics: each partition's worker registers its Prometheus collectors into a per-stage
:class:`PartitionedCollector`, which exports them with a ``partition`` label.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from keiko.components import Context
from keiko.errors import KeikoError
from keiko.store.base import KeyValue
from keiko.store.lease import Lease

if TYPE_CHECKING:
    from keiko.config.model import KeikoConfig
    from keiko.stream.worker import StreamWorker

log = logging.getLogger(__name__)
BUCKET = "partitions"
MEMBER_SWAP_TRIES = 3
ROUND_INTERVAL = 1.0  # seconds between balancing rounds (at most a third of the lease)
STOP_GRACE = 10.0  # seconds a released partition's worker gets for its final checkpoint
SPARE = -1  # the key of a worker built ahead of its partition


class PartitionedCollector(Collector):
    """The collectors of every partition of one stage, exported with a ``partition`` label
    (without one when the stage has a single partition: the same series as ``keiko run``)."""

    def __init__(self, label: bool = True) -> None:
        self.parts: dict[int, list[Collector]] = {}  # SPARE: built, not running yet
        self.label = label

    def register(self, partition: int, collector: Collector) -> None:
        self.parts.setdefault(partition, []).append(collector)

    def forget(self, partition: int) -> None:
        self.parts.pop(partition, None)

    def collect(self) -> Iterable[Metric]:
        merged: dict[str, Metric] = {}
        for partition, collectors in sorted(self.parts.items()):
            if partition == SPARE:
                continue
            for collector in collectors:
                for family in collector.collect():
                    into = merged.get(family.name)
                    if into is None:
                        into = Metric(family.name, family.documentation, family.type, family.unit)
                        merged[family.name] = into
                    into.samples.extend(
                        _labelled(family.samples, partition) if self.label else family.samples
                    )
        return list(merged.values())


def _members(raw: bytes | None) -> dict[str, float]:
    """The member record (holder -> expiry, unix s); {} when absent or garbled."""
    try:
        record = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    if not isinstance(record, dict):
        return {}
    return {
        str(h): float(e)
        for h, e in record.items()
        if isinstance(e, int | float) and not isinstance(e, bool)
    }


def _labelled(samples: Iterable[Sample], partition: int) -> list[Sample]:
    return [s._replace(labels={**s.labels, "partition": str(partition)}) for s in samples]


class _PartitionRegistry:
    """What a partition's worker sees as ``ctx.telemetry.registry``."""

    def __init__(self, into: PartitionedCollector, partition: int) -> None:
        self.into, self.partition = into, partition

    def register(self, collector: Collector) -> None:
        self.into.register(self.partition, collector)

    def unregister(self, collector: Collector) -> None:
        collectors = self.into.parts.get(self.partition, [])
        if collector in collectors:
            collectors.remove(collector)


class _Held:
    """A partition this process holds: its lease, worker and context."""

    def __init__(self, lease: Lease, worker: StreamWorker, ctx: Context) -> None:
        self.lease, self.worker, self.ctx = lease, worker, ctx


class PartitionedStage:
    """Runs the stage built by ``build`` on the partitions of its stream this process wins."""

    def __init__(
        self,
        name: str,
        build: Callable[[Context], StreamWorker],
        ctx: Context,
        *,
        count: int,
        ttl: float,
    ) -> None:
        if count < 1:
            raise ValueError(f"{name}: partition count must be >= 1, got {count}")
        self.name, self.build, self.ctx, self.count, self.ttl = name, build, ctx, count, ttl
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.collector = PartitionedCollector(label=count > 1)
        ctx.telemetry.registry.register(self.collector)
        ctx.reloaders.append(self._reload)
        self.held: dict[int, _Held] = {}
        # One fetch of this stage is processed at a time: its partition workers' threads
        # would only contend for the GIL. Other stages keep their own turn, so a long
        # span fetch does not hold up anomaly detection.
        self.processing = threading.Lock()
        # One worker is built now: config errors show at start, and its HTTP routes are
        # known before keiko's API is built, so they can be served through proxies.
        sub = self._context(SPARE)
        self._spare: tuple[StreamWorker, Context] | None = (build(sub), sub)
        ctx.routes.extend(_RouteProxy(self, route) for route in sub.routes)
        self._kv: KeyValue | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Claim what is free now (a lone process holds every partition from the start),
        then keep balancing in a task."""
        await self._round_logged()
        self._task = asyncio.create_task(self._run(), name=f"{self.name}-partitions")

    async def shutdown(self, deadline: float) -> None:
        """Stop every held partition's worker (final checkpoints) and free the leases."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, max(0.1, deadline - time.monotonic()))
        await asyncio.gather(
            *(self._release(p, deadline) for p in list(self.held)), return_exceptions=True
        )
        if self._kv is not None:
            with contextlib.suppress(Exception):
                await self._update_members(leave=True)
        with contextlib.suppress(KeyError):
            self.ctx.telemetry.registry.unregister(self.collector)

    def partitions(self) -> list[int]:
        """The partitions this process holds now."""
        return sorted(self.held)

    # -- the balancing loop ---------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stop.is_set():
            # Rounds far more often than the lease needs: a process that joins gets its
            # share within a few seconds (a backlog waits meanwhile), for a few KV
            # operations per held partition and second.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), min(ROUND_INTERVAL, self.ttl / 3))
            if not self._stop.is_set():
                await self._round_logged()

    async def _round_logged(self) -> None:
        try:
            await self._round()
        except KeikoError as exc:
            log.warning("%s: partition leases: store error (%s); retrying", self.name, exc)
        except Exception:  # never crash after start
            log.exception("%s: partition balancing failed", self.name)

    async def _round(self) -> None:
        if self._kv is None:
            self._kv = await self.ctx.store.kv(BUCKET)
        # All at once: in a degraded cluster each KV call may take seconds.
        held = list(self.held)
        renewed = await asyncio.gather(
            *(self.held[p].lease.renew() for p in held), return_exceptions=True
        )
        for p, ok in zip(held, renewed, strict=True):
            if ok is False:  # an error says nothing: renewed next round, or lost then
                await self._lost(p)
        fair = math.ceil(self.count / max(1, await self._update_members()))
        if len(self.held) > fair:  # a member joined: hand the surplus over, all at once
            surplus = sorted(self.held)[fair:]
            log.info("%s: handing partitions %s over (fair share %d)", self.name, surplus, fair)
            deadline = time.monotonic() + STOP_GRACE
            await asyncio.gather(*(self._release(p, deadline) for p in surplus))
            return
        for p in self._order():
            if len(self.held) >= fair or self._stop.is_set():
                break
            if p not in self.held:
                await self._claim(p)

    async def _update_members(self, leave: bool = False) -> int:
        """Put this process in the member record for another ttl (or take it out), drop
        expired members; how many are live. Contended swaps are retried a few times; if
        they keep losing, the count seen last will do until the next round."""
        assert self._kv is not None
        key = f"members.{self.name}"
        members: dict[str, float] = {}
        for _ in range(MEMBER_SWAP_TRIES):
            raw = await self._kv.get(key)
            now = time.time()
            members = {h: e for h, e in _members(raw).items() if e > now}
            members.pop(self.holder, None)
            if not leave:
                members[self.holder] = now + self.ttl
            if await self._kv.swap(key, raw, json.dumps(members, sort_keys=True).encode()):
                break
        return len(members)

    def _order(self) -> list[int]:
        """Partitions to try, starting at one that depends on the holder: members that
        start together then try different partitions first and rarely collide."""
        first = int(uuid.uuid5(uuid.NAMESPACE_URL, self.holder).int % self.count)
        return [(first + i) % self.count for i in range(self.count)]

    # -- one partition ----------------------------------------------------------------------

    async def _claim(self, partition: int) -> None:
        assert self._kv is not None
        lease = Lease(self._kv, f"{self.name}.p{partition}", self.holder, self.ttl)
        if not await lease.acquire():
            return
        worker, sub = self._take_spare(partition)
        worker.partition = partition if self.count > 1 else None
        if self.count > 1:  # one partition keeps the single-process names: same state
            worker.checkpoint_name = f"{worker.checkpoint_name}.p{partition}"
            worker.name = f"{worker.name}[p{partition}]"
        worker.owns = lambda: lease.held
        worker.process_lock = self.processing
        self.held[partition] = _Held(lease, worker, sub)
        log.info("%s: took partition %d of %d", self.name, partition, self.count)
        await worker.start()

    async def _release(self, partition: int, deadline: float) -> None:
        """Stop the worker with a final checkpoint, then free the lease for the next."""
        held = self.held.pop(partition, None)
        if held is None:
            return
        try:
            await held.worker.shutdown(deadline)
        finally:
            self.collector.forget(partition)
            with contextlib.suppress(Exception):
                await held.lease.release()

    async def _lost(self, partition: int) -> None:
        """The lease expired or was taken: stop at once, no checkpoint (not ours now)."""
        held = self.held.pop(partition)
        log.warning(
            "%s: lost the lease of partition %d (not renewed in %gs): stopping its worker "
            "without a checkpoint",
            self.name,
            partition,
            self.ttl,
        )
        await held.worker.shutdown(time.monotonic() + STOP_GRACE, checkpoint=False)
        self.collector.forget(partition)

    def _take_spare(self, partition: int) -> tuple[StreamWorker, Context]:
        """The worker built ahead (its collectors moved to ``partition``), or a new one."""
        if self._spare is None:
            sub = self._context(partition)
            return self.build(sub), sub
        (worker, sub), self._spare = self._spare, None
        registry = sub.telemetry.registry
        assert isinstance(registry, _PartitionRegistry)
        registry.partition = partition
        self.collector.parts[partition] = self.collector.parts.pop(SPARE, [])
        return worker, sub

    def route(self, path: str) -> BaseRoute | None:
        """A running worker's route at ``path``: the holder's with one partition; with
        several, any held worker's whose routes cover every partition."""
        for _, held in sorted(self.held.items()):
            if self.count == 1 or held.worker.serves_all_partitions:
                found = [r for r in held.ctx.routes if getattr(r, "path", None) == path]
                if found:
                    return found[0]
        return None

    def _context(self, partition: int) -> Context:
        """The worker's context: the shared store and config, its own metrics registry,
        routes and reloaders."""
        telemetry = copy.copy(self.ctx.telemetry)
        telemetry.registry = _PartitionRegistry(self.collector, partition)  # type: ignore[assignment]
        return Context(store=self.ctx.store, telemetry=telemetry, config=self.ctx.config)

    def _reload(self, config: KeikoConfig) -> None:
        if self._spare is not None:
            for reload in self._spare[1].reloaders:
                reload(config)
        for held in list(self.held.values()):
            for reload in held.ctx.reloaders:
                reload(config)


class _RouteProxy(Route):
    """A stage's route on keiko's API, answered by whichever worker runs it now."""

    def __init__(self, stage: PartitionedStage, route: BaseRoute) -> None:
        path = getattr(route, "path", "/")
        super().__init__(path, self._serve, methods=list(getattr(route, "methods", None) or []))
        self.stage = stage

    async def _serve(self, request: Request) -> Response:
        raise AssertionError("handled in handle()")  # pragma: no cover

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.stage.route(self.path)
        if route is not None:
            await route.handle(scope, receive, send)
            return
        if self.stage.count > 1 and self.stage.held:
            detail = (
                f"{self.stage.name} runs in {self.stage.count} partitions over several "
                "processes: no one process has this view; use the Prometheus metrics"
            )
        else:
            detail = f"this process is a standby for {self.stage.name}: ask one that runs it"
        response = JSONResponse({"error": "unavailable", "detail": detail}, status_code=503)
        await response(scope, receive, send)
