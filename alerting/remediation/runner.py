"""The remediator: one outbox target per action, the guards before each run, approvals,
dry-run, the audit trail and the check afterwards whether the alerts resolved.

Every attempt and outcome is an event ``{"type": "remediation", ...}`` appended to the
audit stream; a request's state lives in the key-value bucket, so a redelivered outbox
item runs at most what is still owed (an executed request is not executed again).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alerting.delivery import Permanent, Retryable, Target
from alerting.model import OutboxItem, rfc3339
from alerting.remediation.actions import Executor, RemediationRequest, build_executor
from alerting.remediation.config import ActionConfig, KubeAction, RemediationConfig
from alerting.remediation.guard import OPEN, PENDING, RUNNING, Book, Guard
from alerting.secrets import redact
from keiko.components import Context
from keiko.config.load import ConfigError
from keiko.errors import KeikoError
from keiko.records import Kind, NewRecord

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from alerting.remediation.kube import KubeClient

log = logging.getLogger(__name__)
Resolved = Callable[[list[str]], bool | None]
VERDICTS: dict[bool | None, str] = {
    True: "the alerts resolved",
    False: "the alerts still fire",
    None: "unknown whether the alerts resolved",
}


class UnknownRequest(KeyError):
    """No request has this id (the API answers 404)."""


class AlreadyDecided(Exception):
    """The request is not waiting for approval (the API answers 409)."""


class ActionTarget:
    """The outbox's target for one action."""

    def __init__(self, remediator: Remediator, name: str) -> None:
        self.name = name
        self._remediator = remediator

    async def deliver(self, item: OutboxItem) -> None:
        """Guard, then run, wait for approval or skip the action for ``item``."""
        await self._remediator.deliver(self.name, item)


class Remediator:
    """Runs the configured actions for outbox items of kind ``remediation``."""

    name = "remediation"

    def __init__(self, config: RemediationConfig, ctx: Context, resolved: Resolved) -> None:
        self.config = config
        self.ctx = ctx
        self.resolved = resolved
        self.actions: dict[str, ActionConfig] = {a.name: a for a in config.actions}
        self._kube: KubeClient | None = None
        if any(isinstance(a, KubeAction) for a in config.actions):
            from alerting.remediation.kube import KubeClient

            self._kube = KubeClient(config.kube)
        self.executors: dict[str, Executor] = {
            a.name: build_executor(a, self._kube or config.kube) for a in config.actions
        }
        self.counts: Counter[tuple[str, str]] = Counter()  # audit events by (action, status)
        self.verified: Counter[tuple[str, str]] = Counter()  # by (action, resolved)
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()  # verifications
        self._running: dict[str, asyncio.Task[None]] = {}  # runs by request id
        self._book: Book | None = None
        self._guard: Guard | None = None
        self._metrics: RemediationMetrics | None = None

    def targets(self) -> dict[str, Target]:
        """One outbox target per action, by action name."""
        return {name: ActionTarget(self, name) for name in self.actions}

    def routes(self) -> list[BaseRoute]:
        """The HTTP API: list requests, approve and reject them."""
        from alerting.remediation.api import routes

        return routes(self)

    def dry_run(self, action: ActionConfig) -> bool:
        """Whether ``action`` only logs and audits (its own setting, else the global one)."""
        return self.config.dry_run if action.dry_run is None else action.dry_run

    async def start(self) -> None:
        """Load requests and guards from the bucket, resume owed verifications, export
        metrics. A live kubernetes action without a usable configuration fails here."""
        if self._book is not None:
            return
        if self._kube is not None and any(
            isinstance(a, KubeAction) and not self.dry_run(a) for a in self.config.actions
        ):
            try:
                await asyncio.to_thread(self._kube.get)
            except Permanent as e:
                raise ConfigError("remediation.kube", [str(e)]) from None
        kv = await self.ctx.store.kv(self.config.bucket)
        book, self._guard = Book(kv, self.config.history), Guard(kv)
        await book.load()
        await self._guard.prune(time.time())
        self._book = book
        for record in book.records.values():
            if record.get("verify_at") and "resolved" not in record:
                self._schedule_verify(record)
        self._metrics = RemediationMetrics(self)
        self.ctx.telemetry.registry.register(self._metrics)
        log.info(
            "remediation started",
            extra={"actions": len(self.actions), "dry_run": self.config.dry_run},
        )

    async def shutdown(self, deadline: float) -> None:
        """Let runs finish until ``deadline``, cancel verifications (they resume at the next
        start), unregister metrics and close clients. Idempotent."""
        running = list(self._running.values())
        if running:
            await asyncio.wait(running, timeout=max(0.0, deadline - time.monotonic()))
        tasks, self._tasks = [*self._tasks, *self._running.values()], set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        if self._metrics is not None:
            self.ctx.telemetry.registry.unregister(self._metrics)
            self._metrics = None
        for executor in self.executors.values():
            await executor.close()
        self._book = None  # deliveries now get Retryable; start() may load it again

    # -- delivery ---------------------------------------------------------------------------

    @property
    def book(self) -> Book:
        """The request records (Retryable before start: the outbox tries again later)."""
        if self._book is None:
            raise Retryable("remediation is not started")
        return self._book

    async def deliver(self, name: str, item: OutboxItem) -> None:
        """The outbox's call for action ``name``."""
        book = self.book
        request = RemediationRequest.from_item(item)
        action, executor = self.actions[name], self.executors[name]
        async with self._lock:
            record = book.get(request.request_id)
            if record is None:
                record = await self._admit(action, executor, request)
            if record["status"] == RUNNING:
                task = self._running.get(request.request_id)
                if task is None:  # it was running when keiko stopped: do not run it twice
                    reason = "interrupted by a restart while running; the outcome is unknown"
                    await self._settle(record, "failed", f"{reason} (not run again)")
                    raise Permanent(reason)
            elif record["status"] in OPEN:
                task = await self._launch(action, executor, record, retry=True)
            else:
                return  # skipped, waiting for approval, or done before a redelivery
        # The run is its own task: when the outbox's timeout cancels this wait, the run
        # goes on and settles the record; the next delivery waits for the same run.
        await asyncio.shield(task)

    async def _launch(
        self, action: ActionConfig, executor: Executor, record: dict[str, Any], *, retry: bool
    ) -> asyncio.Task[None]:
        """Mark ``record`` running and start its run (the caller holds the lock)."""
        record.update(status=RUNNING, updated=time.time())
        await self.book.put(record)
        request_id = record["request_id"]
        task = asyncio.get_running_loop().create_task(
            self._run(action, executor, record, retry=retry)
        )
        self._running[request_id] = task
        task.add_done_callback(lambda done: self._ran(request_id, done))
        return task

    def _ran(self, request_id: str, task: asyncio.Task[None]) -> None:
        self._running.pop(request_id, None)
        if not task.cancelled():
            task.exception()  # settled and audited already; a waiting delivery re-raises it

    async def _admit(
        self, action: ActionConfig, executor: Executor, request: RemediationRequest
    ) -> dict[str, Any]:
        now = time.time()
        record = new_record(request, self.dry_run(action), now)
        try:
            record["call"] = executor.plan(request)
        except Permanent as e:
            await self._settle(record, "failed", f"refused: {e}")
            raise
        assert self._guard is not None
        skip = await self._guard.admit(action, request.group_key, now)
        if skip is not None:
            await self._settle(record, "skipped", skip)
        elif action.approval:
            await self._settle(record, PENDING, "the action needs approval", keep_request=True)
        else:
            record["status"] = "admitted"
            await self.book.put(record)
        return record

    async def _run(
        self, action: ActionConfig, executor: Executor, record: dict[str, Any], *, retry: bool
    ) -> None:
        """Execute (or dry-run) the planned call and record the outcome. ``retry``: a
        Retryable error leaves the request open for the outbox's next delivery."""
        request = RemediationRequest.from_json(record["request"])
        if self.dry_run(action):
            log.info("remediation dry run", extra={"action": action.name, "call": record["call"]})
            await self._settle(record, "dry_run", "dry run: nothing was called", verify=action)
            return
        try:
            made = await executor.execute(request, record["call"])
        except Retryable as e:
            if retry:
                await self._settle(record, "retrying", str(e), keep_request=True, retry=True)
                raise
            await self._settle(record, "failed", f"{e} (not retried after an approval)")
            return
        except Permanent as e:
            await self._settle(record, "failed", str(e))
            if retry:
                raise
            return
        except Exception as e:  # a bug in an executor must not loop the outbox
            log.exception("remediation action %s failed unexpectedly", action.name)
            await self._settle(record, "failed", f"internal error: {type(e).__name__}")
            if retry:
                raise Permanent(f"internal error: {type(e).__name__}") from None
            return
        record["call"] = made
        await self._settle(record, "executed", "", verify=action)

    async def _settle(
        self,
        record: dict[str, Any],
        status: str,
        reason: str,
        *,
        keep_request: bool = False,
        verify: ActionConfig | None = None,
        **extra: Any,
    ) -> None:
        """Move ``record`` to ``status``, store it, audit it (the one place both happen)."""
        now = time.time()
        record.update(status=status, reason=redact(reason), updated=now)
        if not keep_request:
            record.pop("request", None)  # alerts are kept only while a run is owed
        if verify is not None and verify.verify_after > 0:
            record["verify_at"] = now + verify.verify_after
        await self.book.put(record)
        event_status = "failed" if status == "retrying" else status
        await self.audit(record, event_status, **extra)
        if verify is not None and verify.verify_after > 0:
            self._schedule_verify(record)

    async def audit(self, record: dict[str, Any], status: str, **extra: Any) -> None:
        """Append one remediation event to the audit stream (secrets redacted)."""
        event = {
            "type": "remediation",
            "request_id": record["request_id"],
            "action": record["action"],
            "status": status,
            "reason": record.get("reason", ""),
            "call": record.get("call"),
            "time": rfc3339(time.time()),
            "group_key": record["group_key"],
            "fingerprints": record["fingerprints"],
            "dry_run": record["dry_run"],
            **extra,
        }
        if "decided_by" in record and "by" not in event:
            event["decided_by"] = record["decided_by"]
        self.counts[(record["action"], status)] += 1
        payload = redact(json.dumps(event, separators=(",", ":"))).encode()
        try:
            await self.ctx.store.append(
                self.config.audit_stream, [NewRecord(Kind.EVENT_JSON, payload)]
            )
        except KeikoError:  # the run happened (or not) either way; say so in the log
            log.exception("remediation audit event lost", extra={"event": event["status"]})

    # -- approvals --------------------------------------------------------------------------

    async def decide(self, request_id: str, approve: bool, by: str, comment: str) -> dict[str, Any]:
        """Approve (then run, subject to dry-run) or reject a pending request."""
        async with self._lock:
            record = self.book.get(request_id)
            if record is None:
                raise UnknownRequest(request_id)
            if record["status"] != PENDING:
                raise AlreadyDecided(f"request {request_id} is {record['status']}, not pending")
            record.update(decided_by=by, comment=comment, decided_at=time.time())
            status = "approved" if approve else "rejected"
            reason = f"{status} by {by}" + (f": {comment}" if comment else "")
            await self._settle(record, status, reason, keep_request=approve, by=by, comment=comment)
            task = await self._approved(record) if approve else None
        if task is not None:
            await asyncio.shield(task)  # a client that hangs up does not stop the run
        return record

    async def _approved(self, record: dict[str, Any]) -> asyncio.Task[None] | None:
        name = record["action"]
        if name not in self.actions:  # removed from the config since it was requested
            await self._settle(record, "failed", f"action {name} is no longer configured")
            return None
        return await self._launch(self.actions[name], self.executors[name], record, retry=False)

    # -- verification -----------------------------------------------------------------------

    def _schedule_verify(self, record: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._verify(record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _verify(self, record: dict[str, Any]) -> None:
        await asyncio.sleep(max(0.0, record["verify_at"] - time.time()))
        try:
            resolved = self.resolved(list(record["fingerprints"]))
        except Exception:  # the integrator's callback: unknown rather than a dead task
            log.exception("remediation: resolved() failed")
            resolved = None
        if not isinstance(resolved, bool):
            resolved = None
        async with self._lock:
            record.update(resolved=resolved, verified_at=time.time())
            await self.book.put(record)
            reason = VERDICTS[resolved]
            await self.audit(
                record, "verified", reason=reason, resolved=resolved, after=record["status"]
            )
        label = "unknown" if resolved is None else str(resolved).lower()
        self.verified[(record["action"], label)] += 1

    # -- the API's view ---------------------------------------------------------------------

    def pending_count(self) -> int:
        """Requests waiting for approval (0 before start)."""
        return len(self._book.pending()) if self._book is not None else 0

    @staticmethod
    def public(record: dict[str, Any]) -> dict[str, Any]:
        """A record as the API shows it (no alerts; RFC 3339 times)."""
        return _public(record)

    def listing(self, status: str = "") -> list[dict[str, Any]]:
        """Recent requests, newest first, without their alerts."""
        records = sorted(self.book.records.values(), key=lambda r: r["created"], reverse=True)
        return [_public(r) for r in records if not status or r["status"] == status]


def new_record(request: RemediationRequest, dry_run: bool, now: float) -> dict[str, Any]:
    """The record of a request just received."""
    return {
        "request_id": request.request_id,
        "action": request.action,
        "status": "received",
        "reason": "",
        "call": None,
        "group_key": request.group_key,
        "group_labels": request.group_labels,
        "fingerprints": request.fingerprints,
        "route": request.route,
        "dry_run": dry_run,
        "created": now,
        "updated": now,
        "request": request.to_json(),
    }


def _public(record: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in record.items() if k != "request"}
    for key in ("created", "updated", "decided_at", "verify_at", "verified_at"):
        if shown.get(key):
            shown[key] = rfc3339(shown[key])
    return shown


class RemediationMetrics(Collector):
    """Read at scrape time: actions by status, pending approvals, verifications."""

    def __init__(self, remediator: Remediator) -> None:
        self._r = remediator

    def collect(self) -> Iterator[Metric]:
        """The three families."""
        actions = CounterMetricFamily(
            "keiko_remediation_actions",
            "Remediation audit events by action and status.",
            labels=["action", "status"],
        )
        for (action, status), n in sorted(self._r.counts.items()):
            actions.add_metric([action, status], n)
        yield actions
        pending = self._r.pending_count()
        yield GaugeMetricFamily(
            "keiko_remediation_pending_approvals",
            "Remediation requests waiting for approval.",
            value=pending,
        )
        verified = CounterMetricFamily(
            "keiko_remediation_verified",
            "Checks after a run whether the alerts resolved (true, false, unknown).",
            labels=["action", "resolved"],
        )
        for (action, resolved), n in sorted(self._r.verified.items()):
            verified.add_metric([action, resolved], n)
        yield verified
