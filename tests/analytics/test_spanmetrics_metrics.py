"""Span metrics: the values per (service, span name, kind, status), the series cap, idle
eviction, the OTLP requests the stage writes (decoded by the anomaly stage's own
MetricsDecoder into rates and quantiles), the Prometheus text, and config errors."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from analytics.series.decode import MetricsDecoder
from analytics.series.table import SeriesTable
from analytics.spanmetrics.aggregate import SpanMetrics
from analytics.spanmetrics.config import DEFAULT_BUCKETS, SpanMetricsConfig
from analytics.spanmetrics.export import SpanMetricsExport, Stats
from analytics.spanmetrics.otlp import CALLS, DURATION, encode
from analytics.spanmetrics.stage import SpanStage
from analytics.traces.spans import decode_spans

MS = 1_000_000
SEC = 10**9
T0 = 1_700_000_000 * SEC


def request(
    spans: Sequence[tuple[str, str, int, float, float, bool]], trace: bytes | None = None
) -> bytes:
    """(service, name, kind, start s after T0, duration ms, error) spans in one request."""
    req = ExportTraceServiceRequest()
    by: dict[str, list[tuple[str, int, float, float, bool]]] = {}
    for service, name, kind, start, ms, error in spans:
        by.setdefault(service, []).append((name, kind, start, ms, error))
    for service, group in by.items():
        rs = req.resource_spans.add()
        rs.resource.attributes.append(
            KeyValue(key="service.name", value=AnyValue(string_value=service))
        )
        out = rs.scope_spans.add().spans
        for name, kind, start, ms, error in group:
            begin = T0 + int(start * SEC)
            span = out.add(
                trace_id=trace or os.urandom(16),
                span_id=os.urandom(8),
                name=name,
                kind=Span.SpanKind.ValueType(kind),
                start_time_unix_nano=begin,
                end_time_unix_nano=begin + int(ms * MS),
            )
            if error:
                span.status.code = Status.STATUS_CODE_ERROR
    return req.SerializeToString()


SERVER, CLIENT = Span.SPAN_KIND_SERVER, Span.SPAN_KIND_CLIENT


def series(
    metrics: SpanMetrics,
) -> dict[tuple[str, str, str, str], tuple[int, float, tuple[int, ...]]]:
    return {
        (v.service, v.name, v.kind, v.status): (v.calls, v.sum_s, v.buckets)
        for v in metrics.series()
    }


def test_calls_and_duration_buckets_per_operation() -> None:
    m = SpanMetrics(DEFAULT_BUCKETS, 100)
    spans = [
        ("cart", "GET /items", SERVER, 0.0, 1.0, False),  # 1 ms -> first bucket (<= 2 ms)
        ("cart", "GET /items", SERVER, 1.0, 2.0, False),  # exactly 2 ms: still the first
        ("cart", "GET /items", SERVER, 2.0, 120.0, False),  # (100, 200] ms
        ("cart", "GET /items", SERVER, 3.0, 20_000.0, True),  # > 15 s: overflow, error
        ("cart", "SELECT", CLIENT, 0.0, 7.0, False),  # (6, 8] ms
    ]
    m.observe(decode_spans(request(spans)))
    got = series(m)
    ok = got[("cart", "GET /items", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET")]
    assert ok[0] == 3 and ok[1] == pytest.approx(0.123)
    assert ok[2][0] == 2 and ok[2][DEFAULT_BUCKETS.index(0.2)] == 1 and sum(ok[2]) == 3
    err = got[("cart", "GET /items", "SPAN_KIND_SERVER", "STATUS_CODE_ERROR")]
    assert err[0] == 1 and err[2][-1] == 1 and len(err[2]) == len(DEFAULT_BUCKETS) + 1
    db = got[("cart", "SELECT", "SPAN_KIND_CLIENT", "STATUS_CODE_UNSET")]
    assert db[2][DEFAULT_BUCKETS.index(0.008)] == 1
    assert m.newest_ns == T0 + 3 * SEC + 20_000 * MS


def test_series_cap_refuses_and_counts_new_series_only() -> None:
    m = SpanMetrics(DEFAULT_BUCKETS, 2)
    m.observe(decode_spans(request([("a", f"op{i}", SERVER, 0, 1, False) for i in range(5)])))
    assert len(m) == 2 and m.refused == 3
    m.observe(decode_spans(request([("a", "op0", SERVER, 1, 1, False)])))  # a held series
    assert (
        m.refused == 3 and series(m)[("a", "op0", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET")][0] == 2
    )


def test_idle_series_are_evicted_and_slots_reused() -> None:
    m = SpanMetrics(DEFAULT_BUCKETS, 2)
    m.observe(decode_spans(request([("a", "old", SERVER, 0, 1, False)])))
    m.observe(decode_spans(request([("a", "new", SERVER, 100, 1, False)])))
    assert m.evict_idle(T0 + 50 * SEC) == 1
    m.observe(decode_spans(request([("a", "newer", SERVER, 101, 1, False)])))
    assert {k[1] for k in series(m)} == {"new", "newer"} and m.refused == 0
    assert series(m)[("a", "newer", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET")][0] == 1


def test_flushed_requests_decode_into_rates_and_quantiles() -> None:
    """Two flushes 10 s apart: the anomaly stage's decoder sees the calls per second of
    each operation and the p50/p99 of its durations in that interval."""
    m = SpanMetrics(DEFAULT_BUCKETS, 100)
    table = SeriesTable(1000)
    decoder = MetricsDecoder(table)
    m.observe(decode_spans(request([("cart", "GET /items", SERVER, 0, 5, False)])))
    first = decoder.decode(encode(m.series(), m.bounds_s, m.newest_ns).SerializeToString())
    assert len(first) == 0  # the first cumulative point is the baseline
    # the next 10 s: 50 calls, 40 of 3 ms and 10 of 300 ms
    later = [
        ("cart", "GET /items", SERVER, 0.2 * i, 3 if i % 5 else 300, False) for i in range(1, 51)
    ]
    m.observe(decode_spans(request(later)))
    t1 = m.newest_ns
    batch = decoder.decode(encode(m.series(), m.bounds_s, t1).SerializeToString())
    values = {}
    for sid, t, v in zip(
        batch.series.tolist(), batch.times.tolist(), batch.values.tolist(), strict=True
    ):
        info = table.info(sid)
        assert info is not None and info.service == "cart"
        assert info.labels["span.name"] == "GET /items"
        assert info.labels["span.kind"] == "SPAN_KIND_SERVER"
        assert info.labels["status.code"] == "STATUS_CODE_UNSET"
        assert t == pytest.approx(t1 / SEC)
        values[info.metric] = v
    seconds = (t1 - (T0 + 5 * MS)) / SEC
    assert values[CALLS] == pytest.approx(50 / seconds)
    assert values[f"{DURATION}:rate"] == pytest.approx(50 / seconds)
    assert 0.002 < values[f"{DURATION}:p50"] <= 0.004  # in the (2, 4] ms bucket
    assert 0.2 < values[f"{DURATION}:p99"] <= 0.4  # in the (200, 400] ms bucket
    assert sum(decoder.skipped.values()) == 0 or set(decoder.skipped) == {"first_point"}


def test_a_restored_series_continues_its_cumulative_counts() -> None:
    m = SpanMetrics(DEFAULT_BUCKETS, 100)
    table = SeriesTable(100)
    decoder = MetricsDecoder(table)
    m.observe(decode_spans(request([("a", "op", SERVER, 0, 1, False)])))
    decoder.decode(encode(m.series(), m.bounds_s, m.newest_ns).SerializeToString())
    again = SpanMetrics(DEFAULT_BUCKETS, 100)
    again.restore(m.snapshot())
    again.observe(decode_spans(request([("a", "op", SERVER, 10, 1, False)] * 2)))
    batch = decoder.decode(
        encode(again.series(), again.bounds_s, again.newest_ns).SerializeToString()
    )
    calls = [
        v
        for sid, v in zip(batch.series.tolist(), batch.values.tolist(), strict=True)
        if (i := table.info(sid)) and i.metric == CALLS
    ]
    assert calls == [pytest.approx(2 / 10.0)]  # no reset: the start time was kept
    assert decoder.skipped["counter_reset_unknown_start"] == 0
    with pytest.raises(ValueError, match="buckets differ"):
        SpanMetrics([0.5, 1.0], 100).restore(m.snapshot())


def test_prometheus_text() -> None:
    st = SpanStage(SpanMetricsConfig())
    st.observe_payloads(
        [
            request(
                [
                    ("cart", "GET /items", SERVER, 0, 3, False),
                    ("cart", "GET /items", SERVER, 1, 3, True),
                ]
            )
        ]
    )
    st.observe_payloads([b"\xff\xff not protobuf"])
    assert st.skipped["undecodable"] == 1
    registry = CollectorRegistry()
    registry.register(SpanMetricsExport(Stats(), lambda: st, lambda: None))
    text = generate_latest(registry).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    labels = {"service": "cart", "span_name": "GET /items", "span_kind": "SPAN_KIND_SERVER"}
    ok = tuple(sorted({**labels, "status_code": "STATUS_CODE_UNSET"}.items()))
    assert samples[("traces_span_metrics_calls_total", ok)] == 1
    assert samples[("traces_span_metrics_duration_seconds_count", ok)] == 1
    assert samples[("traces_span_metrics_duration_seconds_sum", ok)] == pytest.approx(0.003)
    le = tuple(sorted({**dict(ok), "le": "0.004"}.items()))
    assert samples[("traces_span_metrics_duration_seconds_bucket", le)] == 1
    le = tuple(sorted({**dict(ok), "le": "0.002"}.items()))
    assert samples[("traces_span_metrics_duration_seconds_bucket", le)] == 0
    root = (("client", "user"), ("connection_type", "virtual_node"), ("server", "cart"))
    assert samples[("traces_service_graph_request_total", root)] == 2
    assert samples[("traces_service_graph_request_failed_total", root)] == 1
    assert samples[("traces_service_graph_request_server_seconds_count", root)] == 2
    assert samples[("traces_service_graph_request_client_seconds_count", root)] == 0
    assert samples[("traces_service_graph_dropped_spans_total", ())] == 0
    assert samples[("keiko_spanmetrics_series", ())] == 2


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"buckets": [0.1, 0.05]}, "buckets"),
        ({"buckets": []}, "buckets"),
        ({"graph": {"buckets": [0, 1]}}, "graph.buckets"),
        ({"max_series": 0}, "max_series"),
        ({"graph": {"wait": "soon"}}, "graph.wait"),
        ({"flush_intervall": "1s"}, "flush_intervall"),
    ],
)
def test_bad_config_names_the_key(raw: dict[str, object], where: str) -> None:
    with pytest.raises(ValidationError) as info:
        SpanMetricsConfig.model_validate(raw)
    assert f"\n{where}\n" in str(info.value)


def test_defaults() -> None:
    c = SpanMetricsConfig()
    assert c.enabled and c.flush_interval == 15 and c.graph.wait == 10
    assert c.graph.max_pending == 100_000 and c.graph.edge_ttl == 900
    assert np.allclose(c.buckets[:5], [0.002, 0.004, 0.006, 0.008, 0.01])


def test_a_span_from_a_clock_far_ahead_does_not_move_the_flush_time() -> None:
    m = SpanMetrics(DEFAULT_BUCKETS, 10)
    now = time.time_ns()
    m.observe(decode_spans(request([("a", "op", SERVER, (now - T0) / SEC + 86_400, 1, False)])))
    assert m.newest_ns <= time.time_ns() + 301 * SEC


def test_each_trace_partition_writes_its_own_series() -> None:
    """Two workers of different trace partitions count different spans of one operation:
    their flushes (with ``keiko.partition``) are two cumulative series, not one series
    whose counts jump between the workers' totals."""
    table = SeriesTable(100)
    decoder = MetricsDecoder(table)
    parts = [SpanMetrics(DEFAULT_BUCKETS, 100) for _ in range(2)]
    for n, m in enumerate(parts):
        m.observe(decode_spans(request([("cart", "GET /", SERVER, 0, 1, False)] * (n + 1))))
        encoded = encode(m.series(), m.bounds_s, m.newest_ns, {"keiko.partition": str(n)})
        decoder.decode(encoded.SerializeToString())
    keys = {table.info(sid).key for sid in range(len(table))}  # type: ignore[union-attr]
    calls = sorted(k for k in keys if k.startswith(CALLS + "{"))
    assert len(calls) == 2
    assert all('"keiko.partition"=' in k for k in calls)
