"""End to end with the real OpenTelemetry SDK: a MeterProvider with an InMemoryMetricReader,
its MetricsData encoded by the OTLP exporter's own encoder, decoded into series."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pytest
from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import encode_metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider, UpDownCounter
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.resources import Resource

from analytics.series.decode import MetricsDecoder
from analytics.series.table import SeriesTable
from analytics.series.types import PointBatch, SeriesKind

DELTA = AggregationTemporality.DELTA
CUMULATIVE = AggregationTemporality.CUMULATIVE
ATTRS = {"route": "/pay"}


class App:
    """An instrumented 'app': one Counter, UpDownCounter, Histogram and observable gauge."""

    def __init__(self, temporality: AggregationTemporality) -> None:
        self.temporality = temporality
        prefs: dict[type, AggregationTemporality] = {
            Counter: temporality,
            Histogram: temporality,
            UpDownCounter: CUMULATIVE,
        }
        self.reader = InMemoryMetricReader(preferred_temporality=prefs)
        resource = Resource.create({"service.name": "shop", "k8s.pod.name": "shop-1"})
        self.provider = MeterProvider(metric_readers=[self.reader], resource=resource)
        meter = self.provider.get_meter("shop")
        self.orders = meter.create_counter("orders")
        self.inflight = meter.create_up_down_counter("inflight")
        self.latency = meter.create_histogram("latency", unit="ms")
        self.queue = 3.0
        meter.create_observable_gauge("queue", callbacks=[self._observe])

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        yield Observation(self.queue, ATTRS)

    def collect(self) -> tuple[bytes, dict[str, tuple[int, int]]]:
        """The OTLP request bytes and each metric's (start, time) in ns."""
        data = self.reader.get_metrics_data()
        assert data is not None
        times = {
            m.name: (
                m.data.data_points[0].start_time_unix_nano,
                m.data.data_points[0].time_unix_nano,
            )
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
        }
        return encode_metrics(data).SerializeToString(), times


@pytest.fixture(params=[CUMULATIVE, DELTA], ids=["cumulative", "delta"])
def app(request: pytest.FixtureRequest) -> Iterator[App]:
    a = App(request.param)
    yield a
    a.provider.shutdown()


def values(dec: MetricsDecoder, batch: PointBatch) -> dict[str, float]:
    out: dict[str, float] = {}
    for sid, v in zip(batch.series.tolist(), batch.values.tolist(), strict=True):
        info = dec.table.info(sid)
        assert info is not None and info.service == "shop"
        assert info.labels["k8s.pod.name"] == "shop-1" and "service.instance.id" not in info.labels
        out[info.metric] = v
    return out


def test_sdk_counter_updown_histogram_gauge(app: App) -> None:
    dec = MetricsDecoder(SeriesTable(100))
    app.orders.add(5, ATTRS)
    app.inflight.add(4, ATTRS)
    for i in range(100):
        app.latency.record(0.5 + i * 0.04, ATTRS)  # all in bucket (0, 5]
    payload, times1 = app.collect()
    first = values(dec, dec.decode(payload))
    assert first["queue"] == 3.0 and first["inflight"] == 4.0
    if app.temporality is DELTA:
        start, t = times1["orders"]
        assert first["orders"] == pytest.approx(5 / ((t - start) / 1e9))
        assert first["latency:p50"] == pytest.approx(2.5)
    else:  # a cumulative first point covers an unknown span: nothing yet
        assert "orders" not in first and "latency:rate" not in first

    app.orders.add(30, ATTRS)
    app.inflight.add(-1, ATTRS)
    for i in range(100):
        app.latency.record(10.075 + i * 0.15, ATTRS)  # 100 new values, all in (10, 25]
    app.queue = 7.0
    payload, times2 = app.collect()
    second = values(dec, dec.decode(payload))
    assert second["queue"] == 7.0 and second["inflight"] == 3.0
    dt = (times2["orders"][1] - times1["orders"][1]) / 1e9
    assert second["orders"] == pytest.approx(30 / dt, rel=1e-6)
    dt = (times2["latency"][1] - times1["latency"][1]) / 1e9
    assert second["latency:rate"] == pytest.approx(100 / dt, rel=1e-6)
    # quantiles of this interval only (cumulative buckets would put p50 at 5)
    assert second["latency:p50"] == pytest.approx(10 + 15 * 0.5)
    assert second["latency:p99"] == pytest.approx(10 + 15 * 0.99)
    kinds = {dec.table.info(i).kind for i in range(dec.table.high_water)}  # type: ignore[union-attr]
    assert kinds == {SeriesKind.GAUGE, SeriesKind.RATE, SeriesKind.QUANTILE}

    # nothing new: cumulative gives rates 0 (delta SDKs send no point), never a quantile
    payload, _ = app.collect()
    third = values(dec, dec.decode(payload))
    if app.temporality is CUMULATIVE:
        assert third["orders"] == 0.0 and third["latency:rate"] == 0.0
    else:
        assert "orders" not in third and "latency:rate" not in third
    assert not any(k.startswith("latency:p") for k in third)
    assert third["queue"] == 7.0


def test_sdk_restart_is_a_counter_reset_with_a_known_start() -> None:
    dec = MetricsDecoder(SeriesTable(100))
    before = App(CUMULATIVE)
    before.orders.add(1000, ATTRS)
    dec.decode(before.collect()[0])
    before.orders.add(1000, ATTRS)
    dec.decode(before.collect()[0])
    before.provider.shutdown()

    after = App(CUMULATIVE)  # the app restarted: new start time, counter from 0
    after.orders.add(6, ATTRS)
    payload, times = after.collect()
    after.provider.shutdown()
    out = values(dec, dec.decode(payload))
    start, t = times["orders"]
    assert out["orders"] == pytest.approx(6 / ((t - start) / 1e9))  # not (6 - 2000) / dt
    assert out["orders"] > 0


def test_each_point_carries_the_quantum_its_value_moves_in() -> None:
    """A counter's rate moves by one count per interval, an integer UpDownCounter by 1; a
    float gauge is continuous (0), and so is a quantile (interpolated in its bucket; how
    far the next one may move is no property of this point). The detector reads a move
    within a quantum or so as no news."""
    app = App(CUMULATIVE)
    dec = MetricsDecoder(SeriesTable(100))
    app.orders.add(1, ATTRS)
    app.latency.record(1.0, ATTRS)
    dec.decode(app.collect()[0])  # cumulative first points: the baselines
    app.orders.add(2, ATTRS)
    app.inflight.add(2, ATTRS)
    for value in (12.0, 14.0, 20.0, 30.0):  # three in (10, 25], one in (25, 50]
        app.latency.record(value, ATTRS)
    batch = dec.decode(app.collect()[0])
    quantum = {
        dec.table.info(sid).metric: r  # type: ignore[union-attr]
        for sid, r in zip(batch.series.tolist(), batch.quanta().tolist(), strict=True)
    }
    assert quantum["orders"] > 0 and quantum["latency:rate"] > 0
    assert quantum["inflight"] == 1.0 and quantum["queue"] == 0.0
    assert quantum["latency:p50"] == 0.0 and quantum["latency:p99"] == 0.0
    rates = values(dec, batch)
    assert quantum["orders"] == pytest.approx(rates["orders"] / 2)  # 2 counts: 2 quanta
    assert quantum["latency:rate"] == pytest.approx(rates["latency:rate"] / 4)
    app.provider.shutdown()
