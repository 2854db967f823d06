"""WAL checkpoints on their own thread.

SQLite's automatic checkpoint runs inside the committing call and, with
synchronous=NORMAL, fsyncs the database file: on the writer thread that stalled every
append for 100-200 ms each time the WAL reached its limit (measured: p99 ack latency
~200 ms at half load). Here the writer never checkpoints (wal_autocheckpoint=0); this
thread checkpoints the active segments once their WAL passes a size, concurrently with
appends (a PASSIVE checkpoint does not block writers), and closes retired segments'
connections (closing the last connection also checkpoints).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from keiko.store.embedded.segments import connect

log = logging.getLogger(__name__)
WAL_CHECKPOINT_BYTES = 32 * 1024 * 1024
INTERVAL = 0.1


class Checkpointer:
    """Checkpoints the WAL of the paths ``active()`` names; closes retired connections."""

    def __init__(self, active: Callable[[], list[Path]], synchronous: str) -> None:
        self._active = active
        self._sync = synchronous
        self._conns: dict[Path, sqlite3.Connection] = {}
        self._retired: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="keiko-store-checkpoint", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def retire(self, conn: sqlite3.Connection) -> None:
        """Close ``conn`` (a segment the writer no longer appends to) on this thread."""
        with self._lock:
            self._retired.append(conn)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._close_retired()
        for conn in self._conns.values():
            conn.close()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            try:
                self._close_retired()
                self._checkpoint()
            except Exception:
                log.exception("WAL checkpoint failed; will retry")

    def _close_retired(self) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        for conn in retired:
            conn.close()

    def _checkpoint(self) -> None:
        active = set(self._active())
        for path in [p for p in self._conns if p not in active]:
            self._conns.pop(path).close()
        for path in active:
            try:
                wal = os.stat(f"{path}-wal").st_size
            except FileNotFoundError:
                continue
            if wal < WAL_CHECKPOINT_BYTES:
                continue
            conn = self._conns.get(path)
            if conn is None:
                conn = self._conns[path] = connect(path, synchronous=self._sync)
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
