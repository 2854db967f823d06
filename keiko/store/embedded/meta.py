"""The meta database: consumer group offsets, key-value buckets and per-stream counters."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from keiko.store.embedded.segments import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    stream        TEXT NOT NULL,
    grp           TEXT NOT NULL,
    committed     INTEGER NOT NULL,
    committed_cum INTEGER NOT NULL,  -- the stream's cum_bytes at `committed` (for lag in bytes)
    updated_ns    INTEGER NOT NULL,
    PRIMARY KEY (stream, grp)
);
CREATE TABLE IF NOT EXISTS kv (
    bucket TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  BLOB NOT NULL,
    PRIMARY KEY (bucket, key)
);
CREATE TABLE IF NOT EXISTS streams (
    name               TEXT PRIMARY KEY,
    expired_unconsumed INTEGER NOT NULL DEFAULT 0
);
"""


class Meta:
    """Small, frequently updated state. Written only by the writer thread."""

    def __init__(self, path: Path, synchronous: str, readonly: bool = False) -> None:
        self.conn = connect(path, synchronous=synchronous, readonly=readonly)
        if not readonly:
            self.conn.executescript(SCHEMA)

    def groups(self, stream: str | None = None) -> list[tuple[str, str, int, int]]:
        """(stream, group, committed, committed_cum) rows."""
        sql = "SELECT stream, grp, committed, committed_cum FROM groups"
        if stream is None:
            return self.conn.execute(sql + " ORDER BY stream, grp").fetchall()
        return self.conn.execute(sql + " WHERE stream = ? ORDER BY grp", (stream,)).fetchall()

    def ensure_group(self, stream: str, group: str, now_ns: int) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO groups VALUES (?, ?, 0, 0, ?)", (stream, group, now_ns)
        )

    def commit(self, stream: str, group: str, offset: int, cum: int, now_ns: int) -> None:
        # Never move a group backwards: a late or repeated commit must not cause re-delivery.
        self.conn.execute(
            "INSERT INTO groups VALUES (?, ?, ?, ?, ?) ON CONFLICT (stream, grp) DO UPDATE SET "
            "committed = excluded.committed, committed_cum = excluded.committed_cum, "
            "updated_ns = excluded.updated_ns WHERE excluded.committed > groups.committed",
            (stream, group, offset, cum, now_ns),
        )

    def expired(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT name, expired_unconsumed FROM streams").fetchall())

    def add_expired(self, stream: str, n: int) -> None:
        self.conn.execute(
            "INSERT INTO streams VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET "
            "expired_unconsumed = expired_unconsumed + excluded.expired_unconsumed",
            (stream, n),
        )

    def kv_get(self, bucket: str, key: str) -> bytes | None:
        row = self.conn.execute(
            "SELECT value FROM kv WHERE bucket = ? AND key = ?", (bucket, key)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def kv_put(self, bucket: str, key: str, value: bytes) -> None:
        self.conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (bucket, key, value))

    def kv_swap(self, bucket: str, key: str, expected: bytes | None, value: bytes) -> bool:
        """Compare-and-set; atomic because only the writer thread writes meta.db."""
        if self.kv_get(bucket, key) != expected:
            return False
        self.kv_put(bucket, key, value)
        return True

    def kv_delete(self, bucket: str, key: str) -> None:
        self.conn.execute("DELETE FROM kv WHERE bucket = ? AND key = ?", (bucket, key))

    def kv_keys(self, bucket: str) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT key FROM kv WHERE bucket = ? ORDER BY key", (bucket,)
            )
        ]

    def close(self) -> None:
        self.conn.close()


def open_readonly(path: Path) -> sqlite3.Connection | None:
    """A read-only connection to the meta database, or None if it does not exist yet."""
    return connect(path, readonly=True) if path.exists() else None
