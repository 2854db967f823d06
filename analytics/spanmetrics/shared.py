"""The whole service graph when span metrics run in several trace partitions.

Each partition's worker sees only the traces of its partition, so its edge table holds a
share of every edge's requests. At each flush a worker publishes its edges to the store's
key-value space (``graph.p<n>`` in its checkpoint bucket) and reads the others', so any
worker can serve ``GET /api/v1/servicegraph`` for the whole graph. Edges add up: request
and failure counts, histogram buckets, sums and rates are summed per (client, server,
connection type); ``seen_by`` is the union. A partition whose worker died keeps its last
published edges until the partition's next holder publishes (one flush interval).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict

from analytics.spanmetrics.edges import EdgeView

KEY = "graph.p{}"


def encode_views(views: Iterable[EdgeView]) -> bytes:
    """Edges as compact JSON."""
    return json.dumps([asdict(v) for v in views], separators=(",", ":")).encode()


def decode_views(raw: bytes) -> list[EdgeView]:
    """Edges from :func:`encode_views`; ValueError on anything else."""
    items = json.loads(raw)
    if not isinstance(items, list):
        raise ValueError("published edges must be a JSON list")
    views = []
    for item in items:
        item["server_buckets"] = tuple(item["server_buckets"])
        item["client_buckets"] = tuple(item["client_buckets"])
        item["seen_by"] = tuple(item["seen_by"])
        views.append(EdgeView(**item))
    return views


def merge(parts: Iterable[list[EdgeView]]) -> list[EdgeView]:
    """One edge per (client, server, connection type), totals summed over the parts."""
    merged: dict[tuple[str, str, str], EdgeView] = {}
    for views in parts:
        for v in views:
            key = (v.client, v.server, v.connection_type)
            have = merged.get(key)
            merged[key] = v if have is None else _add(have, v)
    return [merged[k] for k in sorted(merged)]


def _add(a: EdgeView, b: EdgeView) -> EdgeView:
    return EdgeView(
        client=a.client,
        server=a.server,
        connection_type=a.connection_type,
        requests=a.requests + b.requests,
        failed=a.failed + b.failed,
        server_buckets=_sum(a.server_buckets, b.server_buckets),
        server_sum=a.server_sum + b.server_sum,
        client_buckets=_sum(a.client_buckets, b.client_buckets),
        client_sum=a.client_sum + b.client_sum,
        seen_by=tuple(sorted(set(a.seen_by) | set(b.seen_by))),
        rate=a.rate + b.rate,
        error_rate=a.error_rate + b.error_rate,
    )


def _sum(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    if len(a) != len(b):  # workers with other bucket bounds (mid-upgrade): keep the first
        return a
    return tuple(x + y for x, y in zip(a, b, strict=True))
