"""Per-trace analysis on hand-built traces with known answers, checked against independent
brute-force versions (Jaeger's recursive critical path, interval unions) on random trees;
then profiles, exemplars and compare."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

import numpy as np
import pytest

from analytics.traces.analysis import (
    ErrorOrigin,
    TraceSummary,
    error_origins,
    link,
    self_time,
    summarise,
)
from analytics.traces.profile import compare, exemplars, profile, service_frame
from analytics.traces.spans import SpanBatch

# (trace, span, parent (0 = none), service, start, end[, error])
Row = tuple


def tid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def sid(n: int) -> bytes:
    return n.to_bytes(8, "big") if n else b""


def make(rows: Sequence[Row]) -> SpanBatch:
    """A batch from rows; span names are 'op<span>'."""
    return SpanBatch(
        trace_id=[tid(r[0]) for r in rows],
        span_id=[sid(r[1]) for r in rows],
        parent_id=[sid(r[2]) for r in rows],
        service=[r[3] for r in rows],
        name=[f"op{r[1]}" for r in rows],
        kind=np.zeros(len(rows), np.int8),
        start_ns=np.array([r[4] for r in rows], np.int64),
        end_ns=np.array([r[5] for r in rows], np.int64),
        error=np.array([len(r) > 6 and r[6] for r in rows], bool),
        peer=[""] * len(rows),
        instance=[""] * len(rows),
        node=[""] * len(rows),
    )


def one(rows: Sequence[Row]) -> TraceSummary:
    (summary,) = summarise(make(rows))
    return summary


def path(s: TraceSummary) -> list[tuple[str, int]]:
    return [(seg.name, seg.critical_ns) for seg in s.critical_path]


def test_parallel_children_subtract_their_union() -> None:
    rows = [(1, 1, 0, "api", 0, 100), (1, 2, 1, "a", 10, 60), (1, 3, 1, "b", 20, 80)]
    batch = make(rows)
    assert self_time(batch, link(batch)).tolist() == [30, 50, 60]
    s = one(rows)
    assert s.self_ns == {"api": 30, "a": 50, "b": 60}
    # From the end: api 80..100, then b (the last to finish) 20..80, back in api 0..20;
    # a ends after b starts, so it is never on the path.
    assert path(s) == [("op1", 20), ("op3", 60), ("op1", 20)]
    assert s.critical_ns == {"api": 40, "b": 60}


def test_sequential_children_each_on_the_path() -> None:
    s = one([(1, 1, 0, "api", 0, 100), (1, 2, 1, "a", 10, 40), (1, 3, 1, "b", 40, 90)])
    assert s.self_ns == {"api": 20, "a": 30, "b": 50}
    # b starts exactly when a ends: a is still on the path (Jaeger's strict '<' drops it).
    assert path(s) == [("op1", 10), ("op2", 30), ("op3", 50), ("op1", 10)]
    assert s.path_services() == ["api", "a", "b", "api"]


def test_child_running_past_its_parent_is_clipped() -> None:
    s = one([(1, 1, 0, "api", 0, 100), (1, 2, 1, "slow", 50, 150)])
    assert s.self_ns == {"api": 50, "slow": 100}  # the child keeps its own full self-time
    assert path(s) == [("op1", 50), ("op2", 50)]
    assert s.duration_ns == 100  # the root's duration


def test_critical_path_goes_through_the_slow_child() -> None:
    s = one(
        [
            (1, 1, 0, "front", 0, 100),
            (1, 2, 1, "cache", 10, 30),
            (1, 3, 1, "db-proxy", 10, 90),
            (1, 4, 3, "db", 20, 80),
        ]
    )
    assert path(s) == [("op1", 10), ("op3", 10), ("op4", 60), ("op3", 10), ("op1", 10)]
    assert s.critical_ns == {"front": 20, "db-proxy": 20, "db": 60}
    assert sum(s.critical_ns.values()) == s.duration_ns


def test_only_the_deepest_erroring_span_is_the_origin() -> None:
    rows = [
        (1, 1, 0, "front", 0, 100, True),
        (1, 2, 1, "checkout", 10, 90, True),
        (1, 3, 2, "payment", 20, 80, True),
        (1, 4, 3, "ledger", 30, 70, False),
        (1, 5, 1, "mail", 90, 95, True),
    ]
    batch = make(rows)
    assert error_origins(batch, link(batch)).tolist() == [False, False, True, False, True]
    s = one(rows)
    assert s.error
    assert s.error_origins == [
        ErrorOrigin("payment", "op3", sid(3).hex()),
        ErrorOrigin("mail", "op5", sid(5).hex()),
    ]
    ok = one([(2, 1, 0, "front", 0, 10)])
    assert not ok.error and ok.error_origins == []


def test_orphans_are_fragment_roots() -> None:
    # The true root (span 1) was never received: spans 2 and 4 hang off missing parents.
    rows = [
        (1, 2, 1, "a", 100, 150),
        (1, 3, 2, "b", 110, 140, True),
        (1, 4, 1, "c", 160, 400),
    ]
    batch = make(rows)
    links = link(batch)
    assert links.parent.tolist() == [-1, 0, -1]
    assert not links.true_root.any()
    s = one(rows)
    assert (s.root_service, s.root_name) == ("c", "op4")  # the longest fragment
    assert s.start_ns == 100 and s.duration_ns == 300  # the extent of all fragments
    assert s.span_count == 3 and s.services == ["a", "b", "c"]
    assert s.error_origins == [ErrorOrigin("b", "op3", sid(3).hex())]


def test_many_traces_interleaved_in_first_appearance_order() -> None:
    rows = [
        (7, 1, 0, "api", 0, 50),
        (3, 1, 0, "api", 5, 25),  # same span id in another trace: a different span
        (7, 2, 1, "db", 10, 20),
        (3, 2, 1, "db", 6, 24),
        (7, 3, 1, "db", 30, 40),
    ]
    first, second = summarise(make(rows))
    assert first.trace_id == tid(7).hex() and second.trace_id == tid(3).hex()
    assert first.spans_per_service == {"api": 1, "db": 2}
    assert first.self_ns == {"api": 30, "db": 20}
    assert second.self_ns == {"api": 2, "db": 18}
    assert second.critical_ns == {"api": 2, "db": 18}


def test_bad_data_does_not_break_the_walk() -> None:
    rows = [
        (1, 1, 0, "api", 0, 100),
        (1, 2, 1, "skewed", 50, 40),  # ends before it starts: zero-length at 50
        (1, 3, 4, "x", 10, 20),  # 3 and 4 are each other's parent: a cycle
        (1, 4, 3, "y", 12, 18),
        (1, 5, 5, "self", 1, 2),  # its own parent
        (1, 2, 1, "dup", 60, 70),  # a repeated span id
        (1, 6, 4, "below", 13, 14),  # hangs below the cycle
        (1, 7, 6, "deeper", 13, 14),
    ]
    batch = make(rows)
    links = link(batch)
    assert self_time(batch, links)[1] == 0
    assert links.parent.tolist() == [-1, 0, -1, -1, -1, 0, 3, 6]
    assert links.depth.tolist() == [0, 1, 0, 0, 0, 1, 1, 2]
    s = one(rows)
    assert s.span_count == 8
    assert (s.root_service, s.duration_ns) == ("api", 100)
    assert sum(seg.critical_ns for seg in s.critical_path) == 100
    assert json.loads(json.dumps(s.to_json()))["critical_path"][0]["service"] == "api"


def test_empty_batch() -> None:
    assert summarise(SpanBatch()) == []


# Independent reference versions, written the slow and obvious way.


def jaeger_path(rows: Sequence[Row]) -> dict[int, int]:
    """Jaeger UI's computeCriticalPath, recursive, after its sanitising of overflowing
    children (computeCriticalPath.tsx, findLastFinishingChildSpan); critical ns per span."""
    by_id = {r[1]: [r[4], max(r[5], r[4])] for r in rows}
    kids: dict[int, list[int]] = {r[1]: [] for r in rows}
    for r in rows:
        if r[2]:
            kids[r[2]].append(r[1])

    def clip(span: int) -> None:
        s, e = by_id[span]
        for c in kids[span]:
            by_id[c] = [min(max(by_id[c][0], s), e), min(max(by_id[c][1], s), e)]
            clip(c)

    root = next(r[1] for r in rows if not r[2])
    clip(root)
    parent = {r[1]: r[2] for r in rows}
    out: dict[int, int] = {}

    def walk(span: int, returning: int | None) -> None:
        # Ties (children clipped to the parent's end) go to the longest, as in analysis.
        ordered = sorted(kids[span], key=lambda c: (-by_id[c][1], by_id[c][0]))
        if returning is None:
            last = ordered[0] if ordered else None
        else:
            last = next((c for c in ordered if by_id[c][1] < returning), None)
        end = by_id[span][1] if returning is None else returning
        if last is not None:
            out[span] = out.get(span, 0) + end - by_id[last][1]
            walk(last, None)
        else:
            out[span] = out.get(span, 0) + end - by_id[span][0]
            if parent[span]:
                walk(parent[span], by_id[span][0])

    walk(root, None)
    return {k: v for k, v in out.items() if v}


def union_self(rows: Sequence[Row]) -> dict[int, int]:
    out = {}
    for r in rows:
        s, e = r[4], max(r[5], r[4])
        clipped = sorted((max(c[4], s), min(c[5], e)) for c in rows if c[2] == r[1])
        covered, reach = 0, s
        for lo, hi in clipped:
            covered += max(hi - max(lo, reach), 0)
            reach = max(reach, hi)
        out[r[1]] = e - s - covered
    return out


def random_trace(rng: random.Random, trace: int, size: int) -> list[Row]:
    """Times spread wide so that ties (where Jaeger's order is arbitrary) do not happen;
    children may outlast their parents."""
    rows: list[Row] = [(trace, 1, 0, "s0", 0, rng.randint(10**8, 10**9))]
    for span in range(2, size + 1):
        parent = rng.choice(rows)
        start = rng.randint(parent[4], parent[5])
        end = start + rng.randint(0, 4 * 10**8)
        rows.append((trace, span, parent[1], f"s{span % 4}", start, end))
    return rows


@pytest.mark.parametrize("seed", range(40))
def test_random_trees_match_the_reference_versions(seed: int) -> None:
    rng = random.Random(seed)
    traces = [random_trace(rng, t, rng.randint(1, 25)) for t in range(1, 6)]
    rows = [r for t in traces for r in t]
    rng.shuffle(rows)  # analysis must not depend on row order
    summaries = {s.trace_id: s for s in summarise(make(rows))}
    batch = make(rows)
    own = self_time(batch, link(batch))
    spans = {(r[0], r[1]): i for i, r in enumerate(rows)}
    for t in traces:
        s = summaries[tid(t[0][0]).hex()]
        for span, expected in union_self(t).items():
            assert own[spans[(t[0][0], span)]] == expected
        got: dict[int, int] = {}
        for seg in s.critical_path:
            got[int(seg.span_id, 16)] = got.get(int(seg.span_id, 16), 0) + seg.critical_ns
        assert got == jaeger_path(t)
        assert sum(got.values()) == s.duration_ns


# Profiles, exemplars, compare.

SEC = 1_000_000_000


def trace(n: int, at_s: float, payment_ms: float, fail: bool = False) -> list[Row]:
    """front -> checkout -> payment, payment taking ``payment_ms``; failing in payment."""
    t0 = int(at_s * SEC)
    pay = int(payment_ms * 1e6)
    return [
        (n, 1, 0, "front", t0, t0 + pay + 4_000_000, fail),
        (n, 2, 1, "checkout", t0 + 1_000_000, t0 + pay + 3_000_000, fail),
        (n, 3, 2, "payment", t0 + 2_000_000, t0 + pay + 2_000_000, fail),
    ]


def window() -> list[TraceSummary]:
    rows: list[Row] = []
    for i in range(10):  # before: healthy, payment 5 ms
        rows += trace(i + 1, 100 + i, 5)
    for i in range(10):  # after: payment 200 ms, failing in 4 of 10
        rows += trace(i + 11, 200 + i, 200 + i, fail=i % 3 == 0)
    rows += [(99, 1, 0, "batch", 250 * SEC, 251 * SEC)]  # a slow trace elsewhere
    return summarise(make(rows))


def test_profile_per_service_statistics() -> None:
    p = profile(window(), 200, 300)
    assert p.traces == 11 and p.failing_traces == 4
    pay = p.services["payment"]
    assert (pay.traces, pay.spans, pay.failing_traces, pay.error_origins) == (10, 10, 4, 4)
    assert pay.origin_share == pytest.approx(0.4)
    assert pay.failing_origin_share == pytest.approx(1.0)
    assert pay.self_s_mean == pytest.approx(0.2045)
    assert pay.self_s_p90 == pytest.approx(0.2081)
    assert pay.critical_s_mean == pytest.approx(0.2045)
    front = p.services["front"]
    assert front.error_origins == 0 and front.self_s_mean == pytest.approx(0.002)
    assert set(p.services) == {"front", "checkout", "payment", "batch"}
    assert json.loads(json.dumps(p.to_json()))["services"]["payment"]["traces"] == 10


def test_profile_window_bounds() -> None:
    summaries = window()
    assert profile(summaries).traces == 21
    assert profile(summaries, None, 200).traces == 10
    assert profile(summaries, 200, None).traces == 11
    assert profile(summaries, 109, 200).traces == 1  # start inclusive, end exclusive


def test_exemplars_failing_origin_first_then_slowest() -> None:
    found = exemplars(window(), "payment", 200, 300, k=6)
    # Failing traces (i = 9, 6, 3, 0) slowest first, then the slowest healthy ones.
    assert [e.trace_id for e in found] == [tid(n).hex() for n in (20, 17, 14, 11, 19, 18)]
    assert [e.error for e in found] == [True] * 4 + [False] * 2
    assert found[0].reason == "error origin in payment"
    assert found[4].reason == "slowest 20%" and found[5].reason == "slowest 30%"
    assert found[0].critical_path == ["front", "checkout", "payment", "checkout", "front"]
    assert found[0].time == pytest.approx(209.0)
    assert found[0].duration_s == pytest.approx(0.213)
    # For checkout, the failures are not its own.
    other = exemplars(window(), "checkout", 200, 300, k=1)
    assert other[0].reason == "failed (error origin in payment)"
    # Any service: the slow batch trace leads the healthy ones.
    anyone = exemplars(window(), None, 200, 300, k=5)
    assert anyone[4].trace_id == tid(99).hex() and anyone[4].reason == "slowest 10%"
    assert json.loads(json.dumps(found[0].to_json()))["reason"] == "error origin in payment"


def test_compare_shows_the_shift() -> None:
    summaries = window()
    shifts = compare(profile(summaries, 100, 200), profile(summaries, 200, 300))
    pay = shifts["payment"]
    assert pay.self_s_before == pytest.approx(0.005)
    assert pay.self_increase_s == pytest.approx(0.1995)
    assert pay.self_ratio == pytest.approx(40.9)
    assert pay.origin_share_change == pytest.approx(0.4)
    assert pay.failing_origin_share_change == pytest.approx(1.0)
    assert pay.critical_increase_s == pytest.approx(0.1995)
    assert pay.describe() == (
        "payment's self-time rose from 5 ms to 204 ms per trace; "
        "payment is the origin of errors in 100% of failing traces"
    )
    assert shifts["front"].self_increase_s == pytest.approx(0.0)
    batch = shifts["batch"]  # only after: zero before, no ratio
    assert batch.self_s_before == 0 and batch.self_ratio is None
    assert json.loads(json.dumps(batch.to_json()))["self_ratio"] is None


def test_service_frame_one_row_per_trace_and_service() -> None:
    frame = service_frame(window())
    assert len(frame) == 20 * 3 + 1
    row = frame[(frame.trace_id == tid(11).hex()) & (frame.service == "payment")].iloc[0]
    assert row.time == pytest.approx(200.0) and row.spans == 1
    assert row.self_s == pytest.approx(0.2) and row.critical_s == pytest.approx(0.2)
    assert row.duration_s == pytest.approx(0.204)
    assert bool(row.error) and bool(row.origin)
    front = frame[(frame.trace_id == tid(11).hex()) & (frame.service == "front")].iloc[0]
    assert bool(front.error) and not bool(front.origin)
    assert service_frame([]).columns.tolist()[:3] == ["time", "trace_id", "service"]


@pytest.mark.parametrize("seed", range(20))
def test_random_parent_cycles_are_cut_only_on_the_cycle(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 30)
    wanted = [rng.choice([0, *range(1, n + 1)]) for _ in range(n)]  # may form cycles
    links = link(make([(1, i + 1, p, "s", 0, 1) for i, p in enumerate(wanted)]))
    parent, depth = links.parent.tolist(), links.depth.tolist()
    for i, p in enumerate(parent):
        assert depth[i] == (0 if p < 0 else depth[p] + 1)
        if p >= 0:
            assert p == wanted[i] - 1  # a kept link is the span's own
        elif wanted[i]:  # a cut link: the span was on a cycle
            seen, at = set(), i
            while at not in seen and wanted[at]:
                seen.add(at)
                at = wanted[at] - 1
            assert at == i
