"""The detector's Prometheus metrics, read at scrape time (a client_python Collector).

Counters live in :class:`Stats` (plain numbers the processing thread bumps); the
``keiko_anomaly_score`` gauge comes from :class:`ScoreBoard`, which bounds its label sets:
a series is shown from its first point at or above the threshold until ``hold`` seconds
(point time) after its last one, and at most ``max_series`` series are shown (a higher
score replaces the lowest; the others are counted as not shown).
"""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from analytics.series.types import SeriesInfo
from keiko.stream.export import by_reason as _by_reason
from keiko.stream.export import counter as _counter
from keiko.stream.export import gauge as _gauge
from keiko.stream.export import worker_metrics
from keiko.stream.worker import WorkerStats


@dataclass
class Stats(WorkerStats):
    """The stream worker's totals plus the detector's (counters since start, gauges latest)."""

    points: int = 0
    anomalous_points: int = 0
    skipped_points: Tally[str] = field(default_factory=Tally)  # by reason
    evicted: int = 0
    refused_points: int = 0  # of series beyond max_series (as of the last check)
    restored_series: int = 0


@dataclass
class _Shown:
    info: SeriesInfo
    score: float
    last_high: float


class ScoreBoard:
    """The series shown in ``keiko_anomaly_score`` and their latest score."""

    def __init__(self, threshold: float, max_series: int, hold: float) -> None:
        self.threshold = threshold
        self.max_series = max_series
        self.hold = hold
        self.shown: dict[int, _Shown] = {}
        self.not_shown = 0
        self.lock = threading.Lock()

    def update(
        self,
        series: np.ndarray,
        times: np.ndarray,
        probability: np.ndarray,
        info: Callable[[int], SeriesInfo],
    ) -> None:
        """Take a scored batch: points of shown series, and new high ones."""
        if self.max_series == 0 or len(series) == 0:
            return
        wanted = probability >= self.threshold
        if self.shown:
            wanted |= np.isin(series, np.fromiter(self.shown, np.int64, len(self.shown)))
        with self.lock:
            for i in np.flatnonzero(wanted):
                self._take(int(series[i]), float(times[i]), float(probability[i]), info)
            newest = float(times.max())
            for sid in [k for k, v in self.shown.items() if newest - v.last_high > self.hold]:
                del self.shown[sid]

    def _take(self, sid: int, t: float, p: float, info: Callable[[int], SeriesInfo]) -> None:
        high = p >= self.threshold
        entry = self.shown.get(sid)
        if entry is not None:
            entry.score = p
            entry.last_high = t if high else entry.last_high
            return
        if len(self.shown) >= self.max_series:
            lowest = min(self.shown, key=lambda k: self.shown[k].score)
            if self.shown[lowest].score >= p:
                self.not_shown += 1
                return
            del self.shown[lowest]
            self.not_shown += 1
        self.shown[sid] = _Shown(info(sid), p, t)

    def forget(self, ids: np.ndarray) -> None:
        """Evicted series (their ids will be reused)."""
        with self.lock:
            for sid in ids.tolist():
                self.shown.pop(int(sid), None)


class AnomalyExport(Collector):
    """Every ``keiko_anomaly_*`` metric, from the stats and the score board."""

    def __init__(
        self,
        stats: Stats,
        board: ScoreBoard,
        live_series: Callable[[], int],
        decoder_skipped: Callable[[], Mapping[str, int]],
        stream_end: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.stats = stats
        self.board = board
        self.live_series = live_series
        self.decoder_skipped = decoder_skipped  # the decoder's own counts, by reason
        self.stream_end = stream_end  # the metrics stream's last offset, when known

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        yield from worker_metrics(
            "keiko_anomaly",
            "metrics",
            s,
            self.stream_end,
            "Records not decoded: kind (not OTLP metrics), undecodable, replayed (already "
            "in the restored state).",
        )
        yield _counter("keiko_anomaly_points_scored", "Points scored.", s.points)
        yield _counter(
            "keiko_anomaly_anomalous_points",
            "Points scored at or above the threshold.",
            s.anomalous_points,
        )
        yield _by_reason(
            "keiko_anomaly_skipped_points",
            "Points not scored: excluded (include/exclude), or skipped by the decoder "
            "(series_cap, out_of_order, first_point, ...).",
            Tally(dict(self.decoder_skipped())) + Tally(dict(s.skipped_points)),
        )
        yield _gauge("keiko_anomaly_series", "Series held now.", self.live_series())
        yield _counter(
            "keiko_anomaly_series_refused",
            "Points refused because max_series series were held (the cap was hit).",
            self.decoder_skipped().get("series_cap", 0),
        )
        yield _counter(
            "keiko_anomaly_series_evicted", "Series forgotten after idle_expiry.", s.evicted
        )
        yield _gauge(
            "keiko_anomaly_series_restored", "Series restored at start.", s.restored_series
        )
        yield from self._scores()

    def _scores(self) -> Iterator[Metric]:
        score = GaugeMetricFamily(
            "keiko_anomaly_score",
            "Latest anomaly probability of series in or near an excursion (bounded set).",
            labels=["metric", "service", "series"],
        )
        with self.board.lock:
            for entry in self.board.shown.values():
                info = entry.info
                score.add_metric([info.metric, info.service, info.key], entry.score)
            not_shown = self.board.not_shown
        yield score
        yield _counter(
            "keiko_anomaly_score_not_shown",
            "High-scoring series left out of keiko_anomaly_score by its max_series bound.",
            not_shown,
        )
