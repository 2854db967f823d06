"""The anomaly component end to end: the OTel SDK's OTLP metric exporter sends gauges to a
real keiko, the component scores them from the `metrics` stream, writes events, checkpoints
and restores its state.

The spike and the detector-state tests run keiko in this process and inject ``SpikeBank``,
a test-only bank with an obvious rule, through the component's constructor (``bank_type``),
so that they test the component's plumbing, not the detector's judgement;
``test_spike_with_the_real_bank`` runs `keiko run` as shipped with the real detector.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures.keiko import HOST, KeikoFactory, KeikoProcess, free_port
from fixtures.nats import nats_store_config
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import (
    Gauge,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client.parser import text_string_to_metric_families

from analytics.anomaly.bank import DetectorBank
from analytics.anomaly.component import CHECKPOINT_NAME, AnomalyDetector
from analytics.anomaly.config import AnomalyConfig
from analytics.anomaly.scores import Scores
from keiko.config.load import validate
from keiko.process import Keiko
from keiko.records import Kind
from keiko.stream.checkpoint import CheckpointStore

STEP = 10.0  # seconds between points
BASELINE = 200
SPIKE_AT = BASELINE  # the excursion: two points far above the baseline
SPIKE = [100.0, 100.0]
AFTER = 20


class SpikeBank(DetectorBank):
    """TEST-ONLY stand-in for the real bank: a running mean and variance per series (Welford);
    after 30 points, a point more than 8 standard deviations off scores 1."""

    def __init__(self, capacity: int = 1024) -> None:
        super().__init__(capacity)
        self.n = np.zeros(capacity)
        self.mean = np.zeros(capacity)
        self.m2 = np.zeros(capacity)

    def _grow(self, top: int) -> None:
        if top >= len(self.n):
            extra = top + 1 - len(self.n)
            self.n, self.mean, self.m2 = (
                np.concatenate([a, np.zeros(extra)]) for a in (self.n, self.mean, self.m2)
            )

    def score_learn(
        self,
        series: np.ndarray,
        times: np.ndarray,
        values: np.ndarray,
        resolution: np.ndarray | None = None,
    ) -> Scores:
        k = len(series)
        prob, low, high, onset = (
            np.zeros(k),
            np.full(k, np.nan),
            np.full(k, np.nan),
            np.full(k, np.nan),
        )
        if k:
            self._grow(int(series.max()))
        for i in range(k):
            s, v = int(series[i]), float(values[i])
            n = self.n[s]
            if n > 1:
                std = float(np.sqrt(self.m2[s] / (n - 1)))
                low[i], high[i] = self.mean[s] - 8 * std, self.mean[s] + 8 * std
                if n >= 30 and not low[i] <= v <= high[i]:
                    prob[i], onset[i] = 1.0, times[i]
            self.n[s] = n + 1
            delta = v - self.mean[s]
            self.mean[s] += delta / (n + 1)
            self.m2[s] += delta * (v - self.mean[s])
        return Scores(prob, low, high, onset)

    def forget(self, series: np.ndarray) -> None:
        series = series[series < len(self.n)]
        self.n[series] = self.mean[series] = self.m2[series] = 0

    def snapshot(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, n=self.n, mean=self.mean, m2=self.m2)
        return buffer.getvalue()

    @classmethod
    def restore(cls, data: bytes) -> SpikeBank:
        bank = cls(1)
        with np.load(io.BytesIO(data)) as arrays:
            bank.n, bank.mean, bank.m2 = arrays["n"], arrays["mean"], arrays["m2"]
        return bank


# -- the client: the SDK's data model and its OTLP/gRPC exporter ------------------------------


def gauge_request(
    points: dict[str, list[tuple[float, float]]], service: str = "checkout"
) -> MetricsData:
    """One ExportMetricsServiceRequest: a gauge ``latency`` per route, several points each."""
    data_points = [
        NumberDataPoint({"route": route}, 0, round(t * 1e9), v)
        for route, series in points.items()
        for t, v in series
    ]
    metric = Metric("latency", "request latency", "ms", Gauge(data_points))
    scope = ScopeMetrics(InstrumentationScope("tests.anomaly"), [metric], "")
    resource = Resource.create({"service.name": service})
    return MetricsData([ResourceMetrics(resource, [scope], "")])


def send(endpoint: str, data: MetricsData) -> None:
    exporter = OTLPMetricExporter(endpoint=endpoint, insecure=True, timeout=10)
    try:
        assert exporter.export(data) == MetricExportResult.SUCCESS
    finally:
        exporter.shutdown()


def spike_series(start: float) -> list[tuple[float, float]]:
    """A steady baseline (10 +- 0.5), two points at 100, then the baseline again."""
    rng = np.random.default_rng(7)
    values = [*(10 + rng.normal(0, 0.5, BASELINE)), *SPIKE, *(10 + rng.normal(0, 0.5, AFTER))]
    return [(start + i * STEP, float(v)) for i, v in enumerate(values)]


def flat_series(start: float, n: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(8)
    return [(start + i * STEP, float(v)) for i, v in enumerate(5 + rng.normal(0, 0.2, n))]


def send_in_requests(
    endpoint: str, series: dict[str, list[tuple[float, float]]], per: int = 25
) -> int:
    """Send ``per`` points of each series per request (in time order); the request count."""
    longest = max(len(s) for s in series.values())
    sent = 0
    for i in range(0, longest, per):
        send(
            endpoint,
            gauge_request({k: s[i : i + per] for k, s in series.items() if s[i : i + per]}),
        )
        sent += 1
    return sent


# -- keiko in this process (for the injected bank) --------------------------------------------


def in_process_config(data: Path, grpc_port: int) -> Any:
    return validate(
        {
            "store": {"embedded": {"path": str(data)}},
            "api": {"enabled": False},
            "receivers": {
                "otlp": {"grpc": {"endpoint": f"{HOST}:{grpc_port}"}, "http": {"enabled": False}}
            },
            "analytics": {"anomaly": {"enabled": False}},  # started by the test, with its bank
        }
    )


ANOMALY = AnomalyConfig.model_validate({"fetch_timeout": "100ms", "checkpoint": {"interval": "1h"}})


async def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def run_detector(
    data: Path,
    grpc_port: int,
    body: Callable[[Keiko, AnomalyDetector], Any],
    config: AnomalyConfig = ANOMALY,
) -> None:
    async with Keiko(in_process_config(data, grpc_port)) as keiko:
        assert keiko.ctx is not None
        detector = AnomalyDetector(config, keiko.ctx, bank_type=SpikeBank)
        await detector.start()
        try:
            await body(keiko, detector)
        finally:
            await detector.shutdown(time.monotonic() + 10)


def test_spike_makes_one_event(tmp_path: Path) -> None:
    start = time.time() - 3600
    grpc = f"{HOST}:{free_port()}"
    series = {"/cart": spike_series(start), "/home": flat_series(start, BASELINE + 22)}
    total = sum(len(s) for s in series.values())

    async def body(keiko: Keiko, detector: AnomalyDetector) -> None:
        assert keiko.store is not None
        await asyncio.to_thread(send_in_requests, grpc, series)
        await wait_for(lambda: detector.stats.points == total)
        await wait_for(lambda: detector.stats.events >= 1)
        records = [  # the incident stage writes its own events about this anomaly
            r
            for r in await keiko.store.read("events", 1, 100)
            if json.loads(r.payload)["type"] == "anomaly"
        ]
        assert [r.kind for r in records] == [Kind.EVENT_JSON]  # one excursion, one event
        assert detector.stats.anomalous_points == len(SPIKE)
        event = json.loads(records[0].payload)
        assert event["type"] == "anomaly"
        assert event["metric"] == "latency" and event["service"] == "checkout"
        assert event["labels"]["route"] == "/cart"
        assert records[0].key == event["series"] and '"/cart"' in event["series"]
        onset = series["/cart"][SPIKE_AT][0]
        assert event["onset_unix_nano"] == pytest.approx(onset * 1e9, abs=1e3)
        assert event["time_unix_nano"] == pytest.approx(onset * 1e9, abs=1e3)
        assert event["value"] == 100.0 and event["score"] >= ANOMALY.threshold
        low, high = event["expected_range"]
        assert low < 10 < high < 100

    asyncio.run(run_detector(tmp_path / "data", int(grpc.rsplit(":", 1)[1]), body))


def test_restart_restores_detector_state(tmp_path: Path) -> None:
    """Series ids and the (injected) detectors' state survive a shutdown; only new records
    are read after the restart."""
    start = time.time() - 3600
    port = free_port()
    grpc = f"{HOST}:{port}"
    first = {"/cart": flat_series(start, 60), "/home": flat_series(start, 60)}
    later = {k: flat_series(start + 60 * STEP, 10) for k in first}
    before: dict[str, Any] = {}

    async def run_one(keiko: Keiko, detector: AnomalyDetector) -> None:
        await asyncio.to_thread(send_in_requests, grpc, first)
        await wait_for(lambda: detector.stats.points == 120)
        table = detector.state.table
        bank = detector.state.bank
        assert isinstance(bank, SpikeBank)
        keys = [info.key for i in range(table.high_water) if (info := table.info(i))]
        before.update(
            ids={k: table.lookup(k) for k in keys},
            n={k: bank.n[table.lookup(k)] for k in keys},
            mean={k: bank.mean[table.lookup(k)] for k in keys},
            offset=detector.stats.offset,
        )

    async def run_two(keiko: Keiko, detector: AnomalyDetector) -> None:
        await wait_for(lambda: detector.stats.restored_series == 2)
        table, bank = detector.state.table, detector.state.bank
        assert isinstance(bank, SpikeBank)
        assert {k: table.lookup(k) for k in before["ids"]} == before["ids"]
        assert (
            {k: bank.n[i] for k, i in before["ids"].items()}
            == before["n"]
            == {k: 60 for k in before["ids"]}
        )
        assert {k: bank.mean[i] for k, i in before["ids"].items()} == before["mean"]
        assert detector.stats.checkpoint_offset == detector.stats.offset == before["offset"]
        requests = await asyncio.to_thread(send_in_requests, grpc, later)
        await wait_for(lambda: detector.stats.points == 20)
        assert detector.stats.records == requests  # resumed after the checkpoint's offset
        assert detector.stats.skipped_records["replayed"] == 0
        assert {k: bank.n[i] for k, i in before["ids"].items()} == {k: 70 for k in before["ids"]}

    asyncio.run(run_detector(tmp_path / "data", port, run_one))
    asyncio.run(run_detector(tmp_path / "data", port, run_two))


def test_idle_series_are_evicted_and_forgotten(tmp_path: Path) -> None:
    start = time.time() - 3600
    port = free_port()
    config = AnomalyConfig.model_validate(
        {"fetch_timeout": "50ms", "idle_expiry": "100s", "checkpoint": {"interval": "100ms"}}
    )

    async def body(keiko: Keiko, detector: AnomalyDetector) -> None:
        grpc = f"{HOST}:{port}"
        await asyncio.to_thread(send_in_requests, grpc, {"/old": flat_series(start, 40)})
        await wait_for(lambda: detector.stats.points == 40)
        old = detector.state.table.lookup(next(iter(keys(detector))))
        later = {"/new": flat_series(start + 40 * STEP + 200, 5)}  # 200 s after /old's last
        await asyncio.to_thread(send_in_requests, grpc, later)
        await wait_for(lambda: detector.stats.evicted == 1)
        assert [k for k in keys(detector) if '"/old"' in k] == []
        bank = detector.state.bank
        assert isinstance(bank, SpikeBank)
        assert detector.state.table.info(old) is None and bank.n[old] == 0  # forgotten

    asyncio.run(run_detector(tmp_path / "data", port, body, config))


def test_reload_takes_the_threshold_and_filters(tmp_path: Path) -> None:
    async def body(keiko: Keiko, detector: AnomalyDetector) -> None:
        raw = {"threshold": 0.5, "cooldown": "1m", "exclude": ["latency"], "max_series": 7}
        config = in_process_config(tmp_path / "data", 1)
        config.analytics["anomaly"] = AnomalyConfig.model_validate(raw)
        for reload in keiko.ctx.reloaders if keiko.ctx else []:
            reload(config)
        assert detector.config.threshold == detector.state.tracker.threshold == 0.5
        assert detector.board.threshold == 0.5 and detector.state.tracker.cooldown == 60
        assert not detector.accept("latency") and detector.accept("other")
        assert detector.config.max_series == ANOMALY.max_series  # needs a restart

    asyncio.run(run_detector(tmp_path / "data", free_port(), body))


def test_a_checkpoint_ahead_of_the_stream_does_not_skip_it(tmp_path: Path) -> None:
    """The bucket outlived the stream (recreated): new records are read, not skipped."""
    start = time.time() - 3600
    port = free_port()

    async def body(keiko: Keiko, detector: AnomalyDetector) -> None:
        await wait_for(
            lambda: detector.stats.restored_series == 0 and detector.checkpoints is not None
        )
        await asyncio.to_thread(send_in_requests, f"{HOST}:{port}", {"/a": flat_series(start, 5)})
        await wait_for(lambda: detector.stats.points == 5)
        assert detector.stats.skipped_records["replayed"] == 0

    async def plant() -> None:
        async with Keiko(in_process_config(tmp_path / "data", port)) as keiko:
            assert keiko.ctx is not None and keiko.store is not None
            parts = AnomalyDetector(ANOMALY, keiko.ctx, bank_type=SpikeBank).snapshot_parts()
            kv = await keiko.store.kv(ANOMALY.checkpoint.bucket)
            await CheckpointStore(kv, CHECKPOINT_NAME, 1 << 16).save(parts, offset=1000)

    asyncio.run(plant())
    asyncio.run(run_detector(tmp_path / "data", port, body))


def keys(detector: AnomalyDetector) -> list[str]:
    table = detector.state.table
    return [info.key for i in range(table.high_water) if (info := table.info(i))]


def test_records_the_checkpoint_covers_are_not_learnt_twice(tmp_path: Path) -> None:
    """A crash after a checkpoint was saved but before its offset was committed: the
    consumer is rewound to just after the checkpoint, so those records are neither learnt
    twice nor fetched again; the detectors keep their state."""
    start = time.time() - 3600
    port = free_port()
    grpc = f"{HOST}:{port}"
    seen: dict[str, Any] = {}

    async def no_commit(offset: int) -> None:
        return None

    async def run_one(keiko: Keiko, detector: AnomalyDetector) -> None:
        await wait_for(lambda: detector._consumer is not None)
        detector._consumer.commit = no_commit  # type: ignore[union-attr,method-assign]
        seen["requests"] = await asyncio.to_thread(
            send_in_requests, grpc, {"/a": flat_series(start, 50)}
        )
        await wait_for(lambda: detector.stats.points == 50)

    async def run_two(keiko: Keiko, detector: AnomalyDetector) -> None:
        await wait_for(lambda: detector.stats.restored_series == 1)
        assert seen["requests"] > 0 and detector.stats.skipped_records["replayed"] == 0
        await asyncio.to_thread(send_in_requests, grpc, {"/a": flat_series(start + 500 * STEP, 5)})
        await wait_for(lambda: detector.stats.points == 5)
        bank = detector.state.bank
        assert isinstance(bank, SpikeBank)
        assert bank.n[detector.state.table.lookup(keys(detector)[0])] == 55  # not 105

    asyncio.run(run_detector(tmp_path / "data", port, run_one))
    asyncio.run(run_detector(tmp_path / "data", port, run_two))


# -- `keiko run` as shipped ------------------------------------------------------------------


def scrape(kp: KeikoProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of keiko's /metrics, by (name, sorted labels)."""
    with kp.client() as client:
        text = client.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(kp: KeikoProcess, name: str, **labels: str) -> float:
    return scrape(kp).get((name, tuple(sorted(labels.items()))), 0.0)


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


FAST = {"analytics": {"anomaly": {"fetch_timeout": "100ms"}}}


@pytest.fixture(params=["embedded", "nats"])
def store_config(request: pytest.FixtureRequest) -> dict[str, Any]:
    """keiko's `store:` overrides: the default embedded store, or a real nats-server."""
    if request.param == "embedded":
        return {}
    return {"store": nats_store_config(request.getfixturevalue("nats_server"))}


def test_restart_resumes_from_the_checkpoint(
    keiko_process: KeikoFactory, store_config: dict[str, Any]
) -> None:
    kp = keiko_process({**FAST, **store_config})
    start = time.time() - 3600
    series = {f"/r{i}": flat_series(start, 30) for i in range(3)}
    send_in_requests(kp.otlp_grpc, series, per=10)
    eventually(lambda: sample(kp, "keiko_anomaly_points_scored_total") == 90)
    offset = sample(kp, "keiko_anomaly_offset")
    assert offset == 3  # three requests, three records
    kp.restart()  # SIGTERM: a last checkpoint, then the offset is committed
    assert f"checkpoint saved: 3 series, metrics offset {offset:.0f}" in kp.log_text()
    eventually(lambda: sample(kp, "keiko_anomaly_series_restored") == 3)
    assert "restored 3 series from the checkpoint of" in kp.log_text()
    assert f"resuming after metrics offset {offset:.0f}" in kp.log_text()
    send_in_requests(kp.otlp_grpc, {k: flat_series(start + 300, 1) for k in series})
    eventually(lambda: sample(kp, "keiko_anomaly_points_scored_total") == 3)
    metrics = scrape(kp)
    assert metrics[("keiko_anomaly_records_total", ())] == 1  # only the new record
    assert metrics[("keiko_anomaly_series", ())] == 3  # the same series, not new ones
    assert ("keiko_anomaly_skipped_records_total", (("reason", "replayed"),)) not in metrics
    metrics_end = ("keiko_store_last_offset", (("stream", "metrics"),))
    eventually(lambda: scrape(kp).get(metrics_end) == offset + 1)  # store stats refreshed
    assert scrape(kp)[("keiko_anomaly_lag_records", ())] == 0  # present, and caught up


def test_a_crash_replays_what_the_checkpoint_does_not_cover(keiko_process: KeikoFactory) -> None:
    """SIGKILL after a checkpoint: the state comes back from it and only the records after
    its offset are read again (none learnt twice, none missed)."""
    overrides = {
        "analytics": {
            "anomaly": {
                "fetch_timeout": "100ms",
                "checkpoint": {"interval": "1h", "max_records": 3},
            }
        }
    }
    kp = keiko_process(overrides)
    start = time.time() - 3600
    series = {f"/r{i}": flat_series(start, 30) for i in range(3)}
    send_in_requests(kp.otlp_grpc, series, per=10)  # records 1-3: a checkpoint after them
    eventually(lambda: sample(kp, "keiko_anomaly_checkpoint_offset") == 3)
    send_in_requests(kp.otlp_grpc, {k: flat_series(start + 300, 1) for k in series})  # 4
    eventually(lambda: sample(kp, "keiko_anomaly_offset") == 4)
    assert sample(kp, "keiko_anomaly_checkpoint_offset") == 3
    kp.kill()
    kp.start()
    eventually(lambda: sample(kp, "keiko_anomaly_points_scored_total") == 3)  # record 4 again
    metrics = scrape(kp)
    assert metrics[("keiko_anomaly_series_restored", ())] == 3
    assert metrics[("keiko_anomaly_records_total", ())] == 1
    assert metrics[("keiko_anomaly_offset", ())] == 4


def test_series_cap_counts_refusals(keiko_process: KeikoFactory) -> None:
    overrides = {
        "analytics": {
            "anomaly": {"max_series": 3, "fetch_timeout": "100ms", "checkpoint": {"interval": "1s"}}
        }
    }
    kp = keiko_process(overrides)
    start = time.time() - 3600
    send_in_requests(kp.otlp_grpc, {f"/r{i}": flat_series(start, 10) for i in range(5)})
    eventually(lambda: sample(kp, "keiko_anomaly_points_scored_total") == 30)
    metrics = scrape(kp)
    assert metrics[("keiko_anomaly_series", ())] == 3
    assert metrics[("keiko_anomaly_series_refused_total", ())] == 20  # 2 series x 10 points
    assert metrics[("keiko_anomaly_skipped_points_total", (("reason", "series_cap"),))] == 20
    eventually(lambda: "series cap hit: 20 points of new series refused" in kp.log_text())
    assert kp.log_text().count("series cap hit") == 1  # once per interval, not per point


def test_spike_with_the_real_bank(keiko_process: KeikoFactory) -> None:
    kp = keiko_process(FAST)
    start = time.time() - 3600
    series = {"/cart": spike_series(start), "/home": flat_series(start, BASELINE + 22)}
    send_in_requests(kp.otlp_grpc, series)
    eventually(lambda: sample(kp, "keiko_anomaly_points_scored_total") >= 2 * BASELINE)
    eventually(lambda: sample(kp, "keiko_anomaly_events_total") >= 1)
    with kp.client() as client:
        records = client.get("/api/v1/streams/events/records").json()["records"]
    records = [r for r in records if r["payload"]["type"] == "anomaly"]  # not incidents
    assert len(records) == 1
    event = records[0]["payload"]
    assert event["type"] == "anomaly" and event["labels"]["route"] == "/cart"
    assert event["score"] >= AnomalyConfig().threshold
    spike = series["/cart"][SPIKE_AT][0] * 1e9
    assert abs(event["time_unix_nano"] - spike) < 1e3  # the first point of the excursion
    # The detector dates the onset from the first surprising point (z >= 2) before it:
    # with this noise that may be the baseline point just before the spike.
    assert spike - 2 * STEP * 1e9 - 1e3 < event["onset_unix_nano"] < spike + 1e3
    scores = [v for (name, labels), v in scrape(kp).items() if name == "keiko_anomaly_score"]
    assert scores  # the series in its excursion is shown
