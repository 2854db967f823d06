"""The root-cause ranking on small synthetic cases with a known answer: a callee's move
explains its callers' latency, resource saturation is never discounted, onset order breaks
near-ties, a node competes only through saturation, traces find the service whose own
time grew, and flat or spiky normal periods do not turn noise into causes."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from analytics.rca.deviation import QUANTILE_STEP, Z_MAX, deviations
from analytics.rca.model import Case
from analytics.rca.rank import rank
from analytics.traces.spans import SpanBatch

AT = 1_000.0
T = np.arange(0.0, 2_000.0, 10.0)  # 100 normal points, 100 after AT


def series(
    service: str,
    metric: str,
    normal: float,
    after: float,
    start: float = AT,
    noise: float = 0.02,
    seed: int = 0,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    values = normal * (1 + noise * rng.standard_normal(len(T)))
    values[start <= T] += after - normal
    return pd.DataFrame(
        {"time": T, "service": service, "metric": metric, "value": values, "instance": ""}
    )


def case(
    *frames: pd.DataFrame,
    graph: list[tuple[str, str]] | None = None,
    spans: SpanBatch | None = None,
) -> Case:
    return Case(pd.concat(frames, ignore_index=True), spans, graph or [])


def test_the_callee_that_moved_explains_its_callers_latency() -> None:
    frames = (
        series("front", "latency_p99", 0.10, 1.50, seed=1),  # moved most: a symptom
        series("cart", "latency_p99", 0.05, 0.30, seed=2),
        series("db", "latency_p99", 0.01, 0.01, seed=3),
    )
    graph = [("front", "cart"), ("cart", "db")]
    assert [c.service for c in rank(case(*frames, graph=graph), AT, 3)][:2] == ["cart", "front"]
    # Without the graph nothing says front's latency is cart's: the biggest move wins.
    assert rank(case(*frames), AT, 3)[0].service == "front"
    best = rank(case(*frames, graph=graph), AT, 3)[0]
    assert best.path == ["front", "cart"] and best.evidence[0].kind == "metric"


def test_saturation_is_not_discounted_by_a_moving_callee() -> None:
    frames = (
        series("api", "cpu", 20, 95, seed=1),
        series("api", "latency_p99", 0.1, 0.5, seed=2),
        series("store", "latency_p99", 0.02, 0.05, seed=3),
    )
    assert rank(case(*frames, graph=[("api", "store")]), AT, 2)[0].service == "api"


def test_earlier_onset_breaks_a_near_tie() -> None:
    frames = (
        series("a", "cpu", 20, 60, start=AT + 200, seed=1),
        series("b", "cpu", 20, 60, start=AT + 10, seed=2),
    )
    assert rank(case(*frames), AT, 2)[0].service == "b"


def test_a_node_competes_only_through_saturation() -> None:
    frames = (
        series("node:n1", "tcp_lifetime_p50", 10, 1000, seed=1),  # an effect seen on the node
        series("cart", "latency_p99", 0.05, 0.20, seed=2),
    )
    assert [c.service for c in rank(case(*frames), AT, 5)] == ["cart"]
    frames = (series("node:n1", "cpu", 30, 99, seed=1), series("cart", "latency_p99", 0.05, 0.08))
    assert rank(case(*frames), AT, 5)[0].service == "node:n1"


def test_flat_and_spiky_normal_periods() -> None:
    flat = series("flat", "gc_pause_seconds", 0.0, 0.25, noise=0.0)
    (dev,) = deviations(flat, AT)
    assert dev.z == Z_MAX  # a flat zero that moved: far outside anything seen, but bounded
    count = series("count", "requests_in_flight", 0.0, 0.0, noise=0.0)
    count.loc[count["time"] == AT + 50, "value"] = 1.0  # one sample of one request in flight
    (dev,) = deviations(count, AT)
    assert dev.z == 0.0  # a count is Poisson-like, and a single sample is not a move
    count.loc[count["time"] >= AT, "value"] = 3.0  # three in flight from AT on: a move
    (dev,) = deviations(count, AT)
    assert dev.z == 3.0
    share = series("trace.error_origins", "svc", 0.0, 0.0, noise=0.0).assign(
        metric="trace.error_origins"
    )
    share.loc[share["time"] >= AT, "value"] = 1.0  # a share that is 0, then 1: not a count
    (dev,) = deviations(share, AT)
    assert dev.z == Z_MAX
    rng = np.random.default_rng(5)
    spiky = series("spiky", "requests", 1.0, 1.0, noise=0.0)
    spiky["value"] = rng.poisson(0.3, len(T)) * 5.0  # bursts before and after
    steady = series("steady", "latency_p99", 0.1, 0.3, seed=6)
    assert rank(case(spiky, steady), AT, 2)[0].service == "steady"


def test_traces_point_at_the_service_whose_own_time_grew() -> None:
    # front -> cart -> db; after AT cart spends 200 ms itself; metrics show only front.
    spans = SpanBatch()
    kinds, starts, ends, errors = [], [], [], []
    for t in np.arange(0.0, 2_000.0, 5.0):
        trace, ids = os.urandom(16), [os.urandom(8) for _ in range(3)]
        own = 200_000_000 if t >= AT else 10_000_000
        start = int(t * 1e9)
        plan = [
            ("front", b"", start, start + own + 20_000_000),
            ("cart", ids[0], start + 1_000_000, start + own + 15_000_000),
            ("db", ids[1], start + own + 2_000_000, start + own + 10_000_000),
        ]
        for k, (service, parent, s, e) in enumerate(plan):
            spans.trace_id.append(trace)
            spans.span_id.append(ids[k])
            spans.parent_id.append(parent)
            spans.service.append(service)
            spans.name.append("op")
            spans.peer.append("")
            spans.instance.append("")
            spans.node.append("")
            kinds.append(2)
            starts.append(s)
            ends.append(e)
            errors.append(False)
    spans.kind = np.array(kinds, np.int8)
    spans.start_ns, spans.end_ns = np.array(starts), np.array(ends)
    spans.error = np.array(errors)
    got = rank(case(series("front", "latency_p99", 0.03, 0.23), spans=spans), AT, 3)
    assert got[0].service == "cart", [(c.service, c.score) for c in got]
    kinds_of = {e.kind for e in got[0].evidence}
    assert {"trace", "traces", "graph"} <= kinds_of
    traces = next(e for e in got[0].evidence if e.kind == "traces")
    assert len(traces.details["trace_ids"]) == 3


def test_nothing_moved_nothing_ranked() -> None:
    frames = (series("a", "cpu", 20, 20, seed=1), series("b", "latency_p99", 0.1, 0.1, seed=2))
    got = rank(case(*frames), AT, 5)
    assert all(c.score < 2.0 for c in got), [(c.service, c.score) for c in got]


def test_a_caller_flat_before_does_not_outrank_the_callee_that_failed() -> None:
    # Live, at a few requests per 0.5-s interval: the caller's latency quantile sat on one
    # bucket's midpoint, so any move was "a thousand spreads"; the callee, whose values
    # varied a little before, moved as much and is the cause.
    rng = np.random.default_rng(7)
    caller = series("checkout", "http.server.request.duration:p50", 0.0175, 0.175, noise=0.0)
    callee = series("payment", "http.server.request.duration:p50", 0.0075, 0.2075)
    callee["value"] = np.where(
        T < AT, rng.choice([0.0025, 0.0075, 0.0175], len(T)), 0.175 + 0.05 * rng.random(len(T))
    )
    (dev,) = deviations(caller, AT)
    assert dev.z == (0.175 - 0.0175) / (QUANTILE_STEP * 0.0175)  # a quarter of its level
    # ... also with its labels, as a case read from the store names it
    (dev,) = deviations(caller.assign(metric=caller["metric"] + "{http.route=/checkout}"), AT)
    assert dev.z == (0.175 - 0.0175) / (QUANTILE_STEP * 0.0175)
    graph = [("checkout", "payment")]
    assert rank(case(caller, callee, graph=graph), AT, 2)[0].service == "payment"


def test_a_caller_whose_errors_start_in_its_callee_is_a_symptom() -> None:
    # agent calls cart as a tool; cart fails a quarter of its requests, and every failure
    # fails several of agent's spans: agent's share of failing spans jumps further than
    # cart's, but its traces say the errors start in cart (agent's origin share holds).
    rng = np.random.default_rng(11)
    cart_errors = series("cart", "trace.errors", 0.0, 0.25, noise=0.0)
    cart_errors.loc[cart_errors["time"] < AT, "value"] = rng.choice([0.0, 0.1], len(T) // 2)
    cart_origins = cart_errors.assign(metric="trace.error_origins")
    agent_errors = series("agent", "trace.errors", 0.0, 0.8, noise=0.0)
    agent_origins = series("agent", "trace.error_origins", 0.0, 0.0, noise=0.0)
    frames = (cart_errors, cart_origins, agent_errors, agent_origins)
    assert rank(case(*frames, graph=[("agent", "cart")]), AT, 2)[0].service == "cart"
    # Without the origin series nothing tells agent's errors are not its own.
    without = case(cart_errors, agent_errors, graph=[("agent", "cart")])
    assert rank(without, AT, 2)[0].service == "agent"
