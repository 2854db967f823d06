"""The writer thread: the only thread that writes, so offsets need no locks and appends
that arrive together are committed together (group commit)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from keiko.errors import StoreUnavailable
from keiko.records import NewRecord

log = logging.getLogger(__name__)

# Upper bound on bytes committed in one transaction: bounds the latency of a group commit.
MAX_BATCH_BYTES = 32 * 1024 * 1024


@dataclass
class Append:
    stream: str
    records: Sequence[NewRecord]
    nbytes: int
    future: asyncio.Future[list[int]]


@dataclass
class Task:
    """Any other write (commit, kv): a function run on the writer thread."""

    fn: Callable[[], Any]
    future: asyncio.Future[Any]


@dataclass
class Writer:
    """Drains a queue of appends and tasks; results go back to the event loop in one call."""

    loop: asyncio.AbstractEventLoop
    append_batch: Callable[[str, list[Sequence[NewRecord]]], list[list[int]]]
    after_batch: Callable[[set[str]], None]  # rolls, retention (writer thread)
    notify: Callable[[set[str]], None]  # wakes waiters (event loop)
    on_written: Callable[[int], None]  # pending-bytes accounting
    queue: deque[Append | Task] = field(default_factory=deque)
    cond: threading.Condition = field(default_factory=threading.Condition)
    stopping: bool = False
    error: str = ""  # last write error, for readiness
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="keiko-store-writer", daemon=True)
        self.thread.start()

    def submit(self, op: Append | Task) -> None:
        with self.cond:
            if self.stopping:
                raise StoreUnavailable("the store is shutting down")
            self.queue.append(op)
            self.cond.notify()

    def stop(self, timeout: float | None) -> None:
        """Finish what is queued, then end the thread."""
        with self.cond:
            self.stopping = True
            self.cond.notify()
        if self.thread is not None:
            self.thread.join(timeout)

    def _take(self) -> list[Append | Task]:
        with self.cond:
            while not self.queue and not self.stopping:
                self.cond.wait(timeout=1.0)
                if not self.queue:
                    return []
            ops: list[Append | Task] = []
            nbytes = 0
            while self.queue and nbytes < MAX_BATCH_BYTES:
                op = self.queue.popleft()
                nbytes += op.nbytes if isinstance(op, Append) else 0
                ops.append(op)
            return ops

    def _run(self) -> None:
        while True:
            ops = self._take()
            if not ops:
                with self.cond:
                    if self.stopping and not self.queue:
                        break
                self._housekeeping(set())
                continue
            results: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            touched = self._appends([op for op in ops if isinstance(op, Append)], results)
            for op in ops:
                if isinstance(op, Task):
                    try:
                        results.append((op.future, op.fn(), None))
                    except Exception as exc:  # reported to the caller, never kills the thread
                        results.append((op.future, None, exc))
            self.loop.call_soon_threadsafe(_deliver, results, touched, self.notify)
            self._housekeeping(touched)

    def _appends(self, appends: list[Append], results: list[Any]) -> set[str]:
        by_stream: dict[str, list[Append]] = {}
        for op in appends:
            by_stream.setdefault(op.stream, []).append(op)
        touched = set()
        for stream, ops in by_stream.items():
            try:
                offsets = self.append_batch(stream, [op.records for op in ops])
            except Exception as exc:
                self.error = f"append to {stream!r} failed: {exc}"
                log.error("store write failed, %d requests refused: %s", len(ops), self.error)
                err = StoreUnavailable(self.error, retry_after=5.0)
                results += [(op.future, None, err) for op in ops]
            else:
                self.error = ""
                touched.add(stream)
                results += [(op.future, offs, None) for op, offs in zip(ops, offsets, strict=True)]
            self.on_written(sum(op.nbytes for op in ops))
        return touched

    def _housekeeping(self, touched: set[str]) -> None:
        try:
            self.after_batch(touched)
        except Exception:
            log.exception("store housekeeping (segment roll / retention) failed; will retry")
            time.sleep(0.1)


def _deliver(
    results: list[tuple[asyncio.Future[Any], Any, BaseException | None]],
    touched: set[str],
    notify: Callable[[set[str]], None],
) -> None:
    for fut, value, exc in results:
        if fut.done():  # the caller gave up (cancelled); the write stands
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)
    if touched:
        notify(touched)
