"""`keiko store stats` for the embedded backend, read from the files (works read-only too)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from keiko.store.base import StreamStats
from keiko.store.embedded.segments import edges

if TYPE_CHECKING:
    from keiko.store.embedded.store import EmbeddedStore


def group_rows(
    store: EmbeddedStore,
) -> tuple[dict[str, list[tuple[str, int, int]]], dict[str, int]]:
    """Consumer groups per stream as (group, committed, committed_cum), and expired counts."""
    meta_path = store.path / "meta.db"
    if not meta_path.exists():
        return {}, {}
    conn = store._cache.get(meta_path)
    groups: dict[str, list[tuple[str, int, int]]] = {}
    for stream, group, committed, cum in conn.execute(
        "SELECT stream, grp, committed, committed_cum FROM groups ORDER BY stream, grp"
    ):
        groups.setdefault(stream, []).append((group, committed, cum))
    expired = dict(conn.execute("SELECT name, expired_unconsumed FROM streams").fetchall())
    return groups, expired


def stream_stats(
    store: EmbeddedStore, name: str, groups: list[tuple[str, int, int]], expired: int
) -> StreamStats:
    """Records, items, bytes, time range and group lag of one stream."""
    segments = store._segments(name)
    first = next((e for e in (edges(store._cache.get(s.path))[0] for s in segments) if e), None)
    last = next(
        (e for e in (edges(store._cache.get(s.path))[1] for s in reversed(segments)) if e), None
    )
    if first is None or last is None:
        last_offset = segments[-1].base - 1 if segments else 0
        lag = store.group_stats(name, groups, last_offset + 1, last_offset, 0, 0)
        return StreamStats(name, 0, 0, 0, 0, last_offset, None, None, lag, expired)
    cum_first = first.cum_bytes - first.size
    lag = store.group_stats(name, groups, first.offset, last.offset, cum_first, last.cum_bytes)
    return StreamStats(
        name=name,
        records=last.offset - first.offset + 1,
        items=last.cum_items - first.cum_items + first.count,
        bytes=last.cum_bytes - cum_first,
        first_offset=first.offset,
        last_offset=last.offset,
        oldest_time_ns=first.time_ns,
        newest_time_ns=last.time_ns,
        groups=lag,
        expired_unconsumed=expired,
    )
