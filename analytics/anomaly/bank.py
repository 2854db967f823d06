"""DetectorBank: every series' detector, scored a batch at a time (method: detector.py)."""

from __future__ import annotations

import io
import json

import numpy as np

from analytics.anomaly.detector import FIELDS, Params, States, step
from analytics.anomaly.scores import Scores

_FORMAT = 1


class DetectorBank:
    """Score first, then learn, for many series at once (series ids are dense ints).

    A batch may hold several points of one series (in time order): they are scored in
    rounds, one point per series per round, so each is scored against the state its
    predecessors left. Points with a non-finite value are scored 0 and not learnt.
    """

    def __init__(self, capacity: int = 1024, params: Params | None = None) -> None:
        self.states = States(params or Params(), capacity)

    def score_learn(
        self,
        series: np.ndarray,
        times: np.ndarray,
        values: np.ndarray,
        resolution: np.ndarray | None = None,
    ) -> Scores:
        """Score each point against its series' state, then learn from it. ``resolution``
        is each value's quantum (detector.step), zeros by default."""
        series = np.asarray(series, np.int64)
        times = np.asarray(times, np.float64)
        values = np.asarray(values, np.float64)
        quanta = np.zeros(len(series)) if resolution is None else np.asarray(resolution, float)
        n = len(series)
        probability = np.zeros(n)
        low = np.full(n, np.nan)
        high = np.full(n, np.nan)
        onset = np.full(n, np.nan)
        valid = np.flatnonzero(np.isfinite(values) & np.isfinite(times) & (series >= 0))
        if len(valid):
            self._grow(int(series[valid].max()) + 1)
        for rows in _rounds(series[valid]):
            at = valid[rows]
            result = step(self.states, series[at], times[at], values[at], quanta[at])
            probability[at] = result.probability
            low[at] = result.low
            high[at] = result.high
            onset[at] = result.onset
        return Scores(probability, low, high, onset)

    def forget(self, series: np.ndarray) -> None:
        """Reset the state of these series (evicted; their ids will be reused)."""
        self.states.reset(np.asarray(series, np.int64))

    def snapshot(self) -> bytes:
        """The whole state, to checkpoint in the store (numpy's .npz, uncompressed)."""
        used = self._used()
        buffer = io.BytesIO()
        header = {"format": _FORMAT, "fields": list(FIELDS), "params": vars(self.states.params)}
        np.savez(
            buffer,
            header=np.frombuffer(json.dumps(header).encode(), np.uint8),
            scalars=self.states.scalars[:used],
            season=self.states.season[:used],
            season_err=self.states.season_err[:used],
            week=self.states.week[:used],
        )
        return buffer.getvalue()

    @classmethod
    def restore(cls, data: bytes) -> DetectorBank:
        """A bank with the state of ``snapshot()``; ValueError when it cannot be read."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                header = json.loads(archive["header"].tobytes())
                scalars, season = archive["scalars"], archive["season"]
                season_err = archive["season_err"]
                # Checkpoints from before the weekly state have none: it starts at zero.
                week = archive["week"] if "week" in archive.files else None
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"detector checkpoint unreadable: {exc}") from None
        if header.get("format") != _FORMAT or header.get("fields") != list(FIELDS):
            raise ValueError("detector checkpoint from another detector version: starting fresh")
        params = Params(**header["params"])
        if season.shape[1:] != (params.season_bins,):
            raise ValueError("detector checkpoint has a different time-of-day profile size")
        bank = cls(max(len(scalars), 1), params)
        bank.states.scalars[: len(scalars)] = scalars
        bank.states.season[: len(season)] = season
        bank.states.season_err[: len(season_err)] = season_err
        if week is not None:
            if week.shape[1:] != bank.states.week.shape[1:]:
                raise ValueError("detector checkpoint has a different weekly state size")
            bank.states.week[: len(week)] = week
        return bank

    @property
    def bytes_per_series(self) -> int:
        """State memory per series slot."""
        return self.states.bytes_per_series

    def _used(self) -> int:
        learnt = np.flatnonzero(self.states.scalars[:, 0] > 0)
        return int(learnt[-1]) + 1 if len(learnt) else 0

    def _grow(self, needed: int) -> None:
        if needed > self.states.capacity:
            self.states.grow(max(needed, 2 * self.states.capacity))


def _rounds(series: np.ndarray) -> list[np.ndarray]:
    """Indices into ``series`` split so that each round holds each series at most once,
    and a series' points keep their order across rounds."""
    if len(series) == 0:
        return []
    order = np.argsort(series, kind="stable")
    ordered = series[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(ordered)]))
    rank = np.arange(len(ordered)) - group_start
    if rank.max() == 0:
        return [order]
    return [order[rank == r] for r in range(int(rank.max()) + 1)]
