"""WAL checkpoints off the writer thread, on segments nobody writes to any more.

SQLite's automatic checkpoint runs inside the committing call and, with
synchronous=NORMAL, fsyncs the database file: on the writer thread that stalled appends
for 100-200 ms each time (measured: p99 ack latency ~200 ms at half load). Checkpointing
the active segment from another thread does not work either under sustained load: a
PASSIVE checkpoint never catches up with the writer, so the WAL never restarts and grows
without bound. So the active segment is never checkpointed (wal_autocheckpoint=0; its WAL
is bounded by store.embedded.segment_bytes), and when the writer moves to a new segment,
this thread checkpoints the old one completely (TRUNCATE: no writer competes for it any
more) and closes it.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading

log = logging.getLogger(__name__)


class Checkpointer:
    """Checkpoints and closes the connections of retired segments, one at a time."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[sqlite3.Connection | None] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._run, name="keiko-store-checkpoint", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def retire(self, conn: sqlite3.Connection) -> None:
        """Checkpoint and close ``conn`` (the writer no longer appends to it) on this thread."""
        self._queue.put(conn)

    def stop(self) -> None:
        """Finish the retired segments queued so far, then end the thread."""
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while (conn := self._queue.get()) is not None:
            close(conn)


def close(conn: sqlite3.Connection) -> None:
    """Move the WAL into the database file, truncate the WAL, close."""
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:  # a reader holds an old snapshot: the close retries it
        log.warning("checkpoint of a retired segment deferred: %s", exc)
    finally:
        conn.close()
