"""Rank the likely root causes of a case: which service (and pod or node) moved first and
most, where the moves of its callers are explained by it.

1. Every series gets a deviation after ``at`` in its bad direction (``deviation.py``);
   traces, when the case has them, add series per service: self-time per trace and the
   traces whose errors originate there (``tracesignals.py``).
2. Per service, the strongest deviation of each signal (resource, latency, errors,
   traffic) on a log scale, weighted by what the signal says about a cause.
3. Latency and errors propagate up the call graph: where a service downstream of this one
   moved as much, this one's latency and errors are discounted (it is a symptom); so are
   its errors where its traces show them starting elsewhere (its share of failing spans
   rose, its share of traces it is the error origin of did not). Resource saturation and
   trace self-time are never discounted: they happen where the cause is.
4. A service's score is its strongest adjusted signal plus a quarter of the others; among
   services that score close to the best, the earlier onset ranks first (cause before
   effect).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from analytics.rca.deviation import ONSET_Z, Deviation, deviations
from analytics.rca.graph import CallGraph
from analytics.rca.metricclass import Signal
from analytics.rca.model import NODE_PREFIX, Candidate, Case, Evidence
from analytics.rca.tracesignals import ERROR_ORIGINS, SELF_TIME, trace_metrics
from analytics.rca.tracesignals import ERRORS as TRACE_ERRORS
from analytics.traces.analysis import summarise
from analytics.traces.profile import exemplars
from analytics.traces.spans import SpanBatch
from keiko.humanize import rfc3339

PROPAGATING = (Signal.LATENCY, Signal.ERRORS)
EXPLAINED_RATIO = 0.5  # a downstream move this large (relative) explains a symptom
SIGNIFICANT = math.log1p(ONSET_Z)  # ... if it is a move at all (3 spreads), not noise
SYMPTOM_DISCOUNT = 0.35  # what is left of an explained latency/error signal
# What is left of a service's errors where its traces show them starting elsewhere: the
# traces say so failure by failure, which a comparison of moves cannot.
ORIGIN_ELSEWHERE_DISCOUNT = 0.1
OTHERS_SHARE = 0.25
ONSET_BONUS = 0.1  # of the best score, for the earliest onset among close candidates
EVIDENCE_PER_CANDIDATE = 4
EXEMPLARS = 3


def rank(case: Case, at: float, top: int = 5, symptom: str | None = None) -> list[Candidate]:
    """The ``top`` most likely root causes of the problem that started at ``at`` (unix s).

    ``symptom`` names the service where the problem was seen (the start of the evidence
    path); by default the most upstream service that moved."""
    devs = deviations(case.metrics, at)
    graph = CallGraph(case.graph)
    if case.spans is not None and len(case.spans):
        graph.add_spans(case.spans)
        devs += deviations(trace_metrics(case.spans, at), at)
    by_service: dict[str, list[Deviation]] = defaultdict(list)
    for d in devs:
        if d.z > 0:
            by_service[d.service].append(d)
    if not by_service:
        return []
    signals = {s: _signals(ds) for s, ds in by_service.items()}
    for node in [s for s in signals if s.startswith(NODE_PREFIX)]:
        signals[node] = {k: v for k, v in signals[node].items() if k == Signal.RESOURCE}
        by_service[node] = [d for d in by_service[node] if d.cls.signal == Signal.RESOURCE]
        if not signals[node]:
            del signals[node], by_service[node]
    elsewhere = _errors_start_elsewhere(devs)
    scores = _scores(signals, graph, elsewhere)
    _onset_bonus(scores, by_service)
    ordered = sorted(scores, key=lambda s: (-scores[s], s))[:top]
    source = symptom or _symptom(signals, graph)
    out = [_candidate(s, scores[s], by_service[s], graph, source) for s in ordered]
    if case.spans is not None and len(case.spans):
        _trace_evidence(out, case.spans, at)
    return out


def _trace_evidence(candidates: list[Candidate], spans: SpanBatch, at: float) -> None:
    """Example traces through each candidate since ``at``: where it is the error origin
    first, then other failing traces, then the slowest."""
    after = np.flatnonzero(spans.start_ns >= at * 1e9)
    summaries = summarise(spans.take(after)) if len(after) else []
    for c in candidates:
        found = exemplars(summaries, c.service, at, None, EXEMPLARS)
        if not found:
            continue
        ids = [e.trace_id for e in found]
        c.evidence.append(
            Evidence(
                "traces",
                f"{len(ids)} example traces through {c.service}: {found[0].reason}",
                0.0,
                {"trace_ids": ids, "exemplars": [e.to_json() for e in found]},
            )
        )


def _signals(devs: list[Deviation]) -> dict[Signal, float]:
    best: dict[Signal, float] = {}
    for d in devs:
        signal = Signal.RESOURCE if d.metric in LOCAL_METRICS else d.cls.signal
        best[signal] = max(best.get(signal, 0.0), d.strength)
    return best


# Trace evidence of where time is spent and errors start: local to the service, like
# resource saturation, so never discounted as a symptom of something downstream.
LOCAL_METRICS = frozenset({SELF_TIME, ERROR_ORIGINS})


def _errors_start_elsewhere(devs: list[Deviation]) -> set[str]:
    """The services whose share of failing spans moved while their share of traces whose
    errors start in them did not (a caller failing because its callee did). A service
    without an error-origin series (no traces) is not judged."""
    failing: dict[str, float] = {}
    origins: dict[str, float] = {}
    for d in devs:
        if d.metric == TRACE_ERRORS:
            failing[d.service] = d.strength
        elif d.metric == ERROR_ORIGINS:
            origins[d.service] = d.strength
    return {
        s
        for s, f in failing.items()
        if f >= SIGNIFICANT and s in origins and origins[s] < EXPLAINED_RATIO * f
    }


def _scores(
    signals: dict[str, dict[Signal, float]], graph: CallGraph, elsewhere: set[str]
) -> dict[str, float]:
    """Each service's score; ``elsewhere``: services whose errors start downstream."""
    out = {}
    for service, own in signals.items():
        below = [signals[d] for d in graph.downstream(service) if d in signals]
        explained = max((max(b.values()) for b in below), default=0.0)
        adjusted = []
        for signal, strength in own.items():
            if signal == Signal.ERRORS and service in elsewhere:
                strength *= ORIGIN_ELSEWHERE_DISCOUNT
            elif signal in PROPAGATING and explained >= max(
                EXPLAINED_RATIO * strength, SIGNIFICANT
            ):
                strength *= SYMPTOM_DISCOUNT
            adjusted.append(strength)
        adjusted.sort(reverse=True)
        out[service] = adjusted[0] + OTHERS_SHARE * sum(adjusted[1:])
    return out


def _onset_bonus(scores: dict[str, float], by_service: dict[str, list[Deviation]]) -> None:
    """Cause before effect: the earliest onset among the close contenders gets a bonus."""
    best = max(scores.values())
    close = [s for s, v in scores.items() if v >= 0.8 * best]
    onsets = {s: _onset(by_service[s]) for s in close}
    known = {s: t for s, t in onsets.items() if math.isfinite(t)}
    if len(known) < 2 or len(set(known.values())) < 2:
        return
    first = min(known.values())
    for s, t in known.items():
        if t == first:
            scores[s] += ONSET_BONUS * best


def _onset(devs: list[Deviation]) -> float:
    """When the service's main moves began (its weak ones are noise, early or late)."""
    strongest = max((d.strength for d in devs), default=0.0)
    times = [
        d.onset
        for d in devs
        if d.z >= ONSET_Z and d.strength >= 0.5 * strongest and math.isfinite(d.onset)
    ]
    return min(times, default=math.inf)


def _symptom(signals: dict[str, dict[Signal, float]], graph: CallGraph) -> str:
    """The most upstream service that moved in latency or errors (else the strongest)."""
    moved = {s for s, sig in signals.items() if any(sig.get(p, 0) > 1.0 for p in PROPAGATING)}
    tops = [s for s in moved if not (graph.callers.get(s, set()) & moved)]
    pool = tops or list(signals)
    return max(pool, key=lambda s: (max(signals[s].values()), s))


def _candidate(
    service: str, score: float, devs: list[Deviation], graph: CallGraph, symptom: str
) -> Candidate:
    devs = sorted(devs, key=lambda d: -d.strength)[:EVIDENCE_PER_CANDIDATE]
    path = graph.path(symptom, service)  # [] when the graph does not connect them
    evidence = [_evidence(d) for d in devs]
    if len(path) > 1:
        evidence.append(
            Evidence(
                "graph",
                f"the symptom {symptom} calls {service}: {' -> '.join(path)}",
                0.0,
                {"path": path},
            )
        )
    return Candidate(service, score, devs[0].instance if devs else "", path or [service], evidence)


def _evidence(d: Deviation) -> Evidence:
    when = "" if not math.isfinite(d.onset) else f" from {rfc3339(round(d.onset * 1e9))}"
    summary = (
        f"{d.metric}{f' on {d.instance}' if d.instance else ''} moved from "
        f"{_fmt(d.normal)} to {_fmt(d.peak)} ({d.z:.1f} normal spreads){when}"
    )
    kind = "trace" if d.metric.startswith("trace.") else "metric"
    details = {
        "series": {"service": d.service, "metric": d.metric, "instance": d.instance},
        "signal": str(d.cls.signal),
        "normal": _num(d.normal),
        "peak": _num(d.peak),
        "z": round(d.z, 2),
        "onset": _num(d.onset),
    }
    return Evidence(kind, summary, d.strength, details)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
