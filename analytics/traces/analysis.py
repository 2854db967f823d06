"""Per-trace analysis over a batch of many traces: self-time, critical path, error origin.

Everything that can be is done on whole columns at once (linking parents, clipping,
self-time, error origins, the per-service sums); only the critical-path walk is a Python
loop, and it touches each span a bounded number of times.

Conventions:
- spans are grouped by trace id; a span whose parent id is not in the batch (or is the span
  itself, or is part of a parent cycle) is the root of a fragment;
- a span that ends before it starts counts as zero-length at its start;
- when a span id repeats within a trace, children link to its first occurrence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from analytics.traces.spans import SpanBatch


@dataclass(frozen=True, slots=True)
class TraceLinks:
    """How the spans of a batch hang together.

    ``trace`` is each span's trace number (0 … ``len(trace_ids) - 1``, by first appearance);
    ``parent`` the row of its parent in the batch, -1 for the root of a trace or fragment;
    ``true_root`` whether the span had no parent id at all (not merely a missing parent).
    """

    trace: np.ndarray
    trace_ids: list[bytes]
    parent: np.ndarray
    true_root: np.ndarray
    depth: np.ndarray

    @property
    def traces(self) -> int:
        """How many distinct traces the batch holds."""
        return len(self.trace_ids)


class PathSegment(NamedTuple):
    """A stretch of the critical path spent in one span's own work."""

    service: str
    name: str
    span_id: str  # hex
    critical_ns: int


class ErrorOrigin(NamedTuple):
    """An erroring span none of whose children errors: where the error started."""

    service: str
    name: str
    span_id: str  # hex


@dataclass(slots=True)
class TraceSummary:
    """What analysis keeps of one trace."""

    trace_id: str  # hex
    root_service: str
    root_name: str
    start_ns: int  # the earliest span start
    duration_ns: int  # the root's duration; the whole extent when the true root is missing
    error: bool  # any span errors
    span_count: int
    error_origins: list[ErrorOrigin] = field(default_factory=list)
    self_ns: dict[str, int] = field(default_factory=dict)  # per service
    critical_ns: dict[str, int] = field(default_factory=dict)  # per service
    spans_per_service: dict[str, int] = field(default_factory=dict)
    critical_path: list[PathSegment] = field(default_factory=list)  # in time order

    @property
    def services(self) -> list[str]:
        """The services the trace touches, sorted."""
        return sorted(self.spans_per_service)

    @property
    def origin_services(self) -> set[str]:
        """The services where the trace's errors originate."""
        return {o.service for o in self.error_origins}

    def path_services(self) -> list[str]:
        """The critical path as services in time order, repeats in a row collapsed."""
        out: list[str] = []
        for seg in self.critical_path:
            if not out or out[-1] != seg.service:
                out.append(seg.service)
        return out

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "trace_id": self.trace_id,
            "root_service": self.root_service,
            "root_name": self.root_name,
            "start_ns": self.start_ns,
            "duration_ns": self.duration_ns,
            "error": self.error,
            "span_count": self.span_count,
            "services": self.services,
            "error_origins": [o._asdict() for o in self.error_origins],
            "self_ns": dict(self.self_ns),
            "critical_ns": dict(self.critical_ns),
            "spans_per_service": dict(self.spans_per_service),
            "critical_path": [s._asdict() for s in self.critical_path],
        }


def link(batch: SpanBatch) -> TraceLinks:
    """Group the spans by trace and find each span's parent row."""
    n = len(batch)
    trace, uniques = pd.factorize(_objects(batch.trace_id))
    trace = trace.astype(np.int64)
    # One code space for span and parent ids, so a parent id finds its span by number.
    ids, _ = pd.factorize(_objects(batch.span_id + batch.parent_id))
    width = int(ids.max(initial=0)) + 1
    span_key = trace * width + ids[:n]
    parent_key = trace * width + ids[n:]
    order = np.argsort(span_key, kind="stable")  # stable: duplicates resolve to the first
    at = np.minimum(np.searchsorted(span_key[order], parent_key), max(n - 1, 0))
    parent = np.full(n, -1, np.int64)
    if n:
        hit = span_key[order[at]] == parent_key
        parent[hit] = order[at[hit]]
    true_root = np.array([not p for p in batch.parent_id], dtype=bool)
    parent[true_root | (parent == np.arange(n))] = -1
    depth = _depths(parent)
    return TraceLinks(trace, list(uniques), parent, true_root, depth)


def _objects(values: Sequence[object]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values  # never a 2-D array of bytes, whatever the lengths
    return out


def _depths(parent: np.ndarray) -> np.ndarray:
    """Each span's depth below its root; spans in a parent cycle become roots (in place)."""
    depth = np.where(parent < 0, 0, -1)
    pending = np.flatnonzero(depth < 0)
    while len(pending):
        up = depth[parent[pending]]
        done = up >= 0
        if done.any():
            depth[pending[done]] = up[done] + 1
            pending = pending[~done]
            continue
        # All left are in a parent cycle or hang below one; the cycles' spans become roots
        # and what hangs below them keeps its links.
        cut = pending[_on_cycles(np.searchsorted(pending, parent[pending]))]
        parent[cut] = -1
        depth[cut] = 0
        pending = pending[parent[pending] >= 0]
    return depth


def _on_cycles(up: np.ndarray) -> np.ndarray:
    """The nodes on cycles of the graph where node i points to ``up[i]`` (every node points
    somewhere): a walk of ``len(up)`` steps up from anywhere ends on a cycle, and every
    cycle node is the end of the walk from some node."""
    hop, steps = up, 1
    while steps < len(up):
        hop, steps = hop[hop], steps * 2  # hop now jumps 2**k steps at once
    return np.unique(hop)


def self_time(batch: SpanBatch, links: TraceLinks) -> np.ndarray:
    """Each span's duration minus the union of its children's intervals clipped to it.

    Children that overlap run in parallel, so their union, not their sum, is subtracted.
    """
    start = batch.start_ns
    end = np.maximum(batch.end_ns, start)
    kids = np.flatnonzero(links.parent >= 0)
    par = links.parent[kids]
    cs = np.clip(start[kids], start[par], end[par])
    ce = np.clip(end[kids], start[par], end[par])
    order = np.lexsort((cs, par))
    par, cs, ce = par[order], cs[order], ce[order]
    reach = pd.Series(ce).groupby(par, sort=False).cummax().to_numpy()
    first = np.ones(len(par), bool)
    first[1:] = par[1:] != par[:-1]
    before = np.empty_like(ce)
    before[1:] = reach[:-1]
    before[first] = cs[first]  # nothing of this parent covered yet
    covered = np.maximum(ce - np.maximum(cs, before), 0)
    total = np.bincount(par, weights=covered, minlength=len(batch))
    return end - start - np.rint(total).astype(np.int64)


def error_origins(batch: SpanBatch, links: TraceLinks) -> np.ndarray:
    """Which spans are error origins: erroring, with no erroring child."""
    kids = np.flatnonzero((links.parent >= 0) & batch.error)
    erroring_child = np.zeros(len(batch), bool)
    erroring_child[links.parent[kids]] = True
    return batch.error & ~erroring_child


def roots(batch: SpanBatch, links: TraceLinks) -> np.ndarray:
    """The row of each trace's root: its true root if present (the earliest if several),
    else the longest fragment root."""
    cand = np.flatnonzero(links.parent < 0)
    dur = batch.duration_ns[cand]
    start = batch.start_ns[cand]
    true = links.true_root[cand]
    # A true root first, the earliest of them; else the longest fragment root.
    order = np.lexsort((start, np.where(true, start, -dur), ~true, links.trace[cand]))
    cand = cand[order]
    _, first = np.unique(links.trace[cand], return_index=True)
    return cand[first]


class _Tree:
    """Children ordered by clipped end, latest first, as Python lists for the walk."""

    def __init__(self, batch: SpanBatch, links: TraceLinks) -> None:
        cstart, cend = _clip_to_parents(batch, links)
        n = len(batch)
        kids = np.flatnonzero(links.parent >= 0)
        par = links.parent[kids]
        # Latest end first; on a tie (children clipped to their parent's end) the longest.
        order = np.lexsort((cstart[kids], -cend[kids], par))
        kids, par = kids[order], par[order]
        counts = np.bincount(par, minlength=n)
        lo = np.zeros(n, np.int64)
        np.cumsum(counts[:-1], out=lo[1:])
        self.kids: list[int] = kids.tolist()
        self.kid_end: list[int] = cend[kids].tolist()
        self.lo: list[int] = lo.tolist()
        self.hi: list[int] = (lo + counts).tolist()
        self.cstart: list[int] = cstart.tolist()
        self.cend: list[int] = cend.tolist()

    def critical_path(self, root: int) -> list[tuple[int, int]]:
        """(row, ns) segments of the critical path from ``root``, latest first.

        Jaeger's walk: from the root's end, descend into the last-finishing child that ends
        by the current point; when a span has no such child left, the rest back to its
        start is its own, and the walk resumes in its parent at its start.
        """
        kids, kid_end, hi, cstart = self.kids, self.kid_end, self.hi, self.cstart
        out: list[tuple[int, int]] = []
        stack: list[tuple[int, int]] = []
        node, point, j = root, self.cend[root], self.lo[root]
        while True:
            stop = hi[node]
            while j < stop and kid_end[j] > point:
                j += 1
            if j < stop:
                end = kid_end[j]
                if end < point:
                    out.append((node, point - end))
                stack.append((node, j + 1))
                node, point = kids[j], end
                j = self.lo[node]
                continue
            begin = cstart[node]
            if point > begin:
                out.append((node, point - begin))
            if not stack:
                return out
            point = begin
            node, j = stack.pop()


def _clip_to_parents(batch: SpanBatch, links: TraceLinks) -> tuple[np.ndarray, np.ndarray]:
    """Each span's interval clipped to its (clipped) parent's, top-down by depth, as
    Jaeger does before its critical-path walk (a child cannot outlast its parent there)."""
    cstart = batch.start_ns.copy()
    cend = np.maximum(batch.end_ns, cstart)
    order = np.argsort(links.depth, kind="stable")
    bounds = np.searchsorted(links.depth[order], np.arange(1, int(links.depth.max(initial=0)) + 2))
    for lo, hi in pairwise(bounds.tolist()):
        rows = order[lo:hi]
        par = links.parent[rows]
        ps, pe = cstart[par], cend[par]
        cstart[rows] = np.clip(cstart[rows], ps, pe)
        cend[rows] = np.clip(cend[rows], ps, pe)
    return cstart, cend


def summarise(batch: SpanBatch) -> list[TraceSummary]:
    """One summary per trace in ``batch``, in order of first appearance."""
    if not len(batch):
        return []
    links = link(batch)
    root = roots(batch, links)
    tree = _Tree(batch, links)
    services, service_names = pd.factorize(_objects(batch.service))
    names = [str(x) for x in service_names]
    per_service = _per_trace_service(links.trace, services, names, self_time(batch, links))
    start, duration, errors, counts = _per_trace(batch, links, root)
    origins: list[list[ErrorOrigin]] = [[] for _ in range(links.traces)]
    for row in np.flatnonzero(error_origins(batch, links)).tolist():
        origins[links.trace[row]].append(
            ErrorOrigin(batch.service[row], batch.name[row], batch.span_id[row].hex())
        )
    out = []
    svc = services.tolist()
    for t, r in enumerate(root.tolist()):
        path = tree.critical_path(r)
        path.reverse()
        segments, critical = _segments(batch, path, svc, names)
        spans, selfs = per_service[t]
        out.append(
            TraceSummary(
                trace_id=links.trace_ids[t].hex(),
                root_service=batch.service[r],
                root_name=batch.name[r],
                start_ns=start[t],
                duration_ns=duration[t],
                error=errors[t],
                span_count=counts[t],
                error_origins=origins[t],
                self_ns=selfs,
                critical_ns=critical,
                spans_per_service=spans,
                critical_path=segments,
            )
        )
    return out


def _per_trace(
    batch: SpanBatch, links: TraceLinks, root: np.ndarray
) -> tuple[list[int], list[int], list[bool], list[int]]:
    """Per trace: start (earliest span), duration, any error, span count."""
    n = links.traces
    start = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(start, links.trace, batch.start_ns)
    last = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last, links.trace, np.maximum(batch.end_ns, batch.start_ns))
    whole = links.true_root[root]
    duration = np.where(whole, batch.duration_ns[root], last - start)
    errors = np.bincount(links.trace, weights=batch.error, minlength=n) > 0
    counts = np.bincount(links.trace, minlength=n)
    return start.tolist(), duration.tolist(), errors.tolist(), counts.tolist()


def _per_trace_service(
    trace: np.ndarray, services: np.ndarray, names: list[str], own: np.ndarray
) -> list[tuple[dict[str, int], dict[str, int]]]:
    """Per trace: ({service: spans}, {service: self ns})."""
    n_services = len(names)
    key = trace.astype(np.int64) * n_services + services
    keys, inverse, spans = np.unique(key, return_inverse=True, return_counts=True)
    selfs = np.bincount(inverse, weights=own, minlength=len(keys))
    n_traces = int(trace.max()) + 1
    out: list[tuple[dict[str, int], dict[str, int]]] = [({}, {}) for _ in range(n_traces)]
    for k, c, s in zip(keys.tolist(), spans.tolist(), np.rint(selfs).tolist(), strict=True):
        t, code = divmod(k, n_services)
        out[t][0][names[code]] = c
        out[t][1][names[code]] = int(s)
    return out


def _segments(
    batch: SpanBatch, path: list[tuple[int, int]], svc: list[int], names: list[str]
) -> tuple[list[PathSegment], dict[str, int]]:
    segments: list[PathSegment] = []
    critical: dict[str, int] = {}
    prev = -1
    for row, ns in path:
        service = names[svc[row]]
        critical[service] = critical.get(service, 0) + ns
        if row == prev:  # the same span on both sides of a zero-length child
            last = segments[-1]
            segments[-1] = last._replace(critical_ns=last.critical_ns + ns)
            continue
        segments.append(PathSegment(service, batch.name[row], batch.span_id[row].hex(), ns))
        prev = row
    return segments, critical
