"""Online forecasts of each workload's request rate and CPU at 5, 15 and 60 minutes.

Observations are averaged over fixed steps (the advisor's step); when a step closes, one
:class:`Forecaster` per horizon learns it (their intervals are calibrated on the errors at
their own horizon) and the forecasts for ``step end + horizon`` are kept for the gauge
``keiko_forecast{workload,signal,horizon,bound}`` (bound: point, lower, upper; 80% interval,
empty until enough errors were seen). Workloads past ``max_workloads`` drop the least
recently seen.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from analytics.forecast.config import ForecasterConfig
from analytics.forecast.model import Forecaster

HORIZONS_S = (300.0, 900.0, 3600.0)
SIGNALS = ("rate", "cpu")
_FORMAT = 1


@dataclass
class _Signal:
    """One signal of one workload: the step being filled and a forecaster per horizon."""

    models: list[Forecaster]
    slot: int = -1
    total: float = 0.0
    count: int = 0
    latest: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # horizon


class WorkloadForecasts:
    """Per workload and signal, forecasts at every horizon, learnt a step at a time."""

    def __init__(self, config: ForecasterConfig, max_workloads: int = 1000) -> None:
        self.config = config
        self.max_workloads = max_workloads
        self.signals: OrderedDict[tuple[str, str], _Signal] = OrderedDict()

    def observe(self, workload: str, signal: str, time: float, value: float | None) -> None:
        """Take one observation (None or NaN: not known, ignored)."""
        if value is None or not math.isfinite(value):
            return
        s = self._get(workload, signal)
        slot = math.floor(time / self.config.step_s)
        if slot < s.slot:
            return  # late: its step was learnt already
        if slot > s.slot and s.count:
            self._close(s)
        if slot > s.slot:
            s.slot, s.total, s.count = slot, 0.0, 0
        s.total += value
        s.count += 1

    def _close(self, s: _Signal) -> None:
        step = self.config.step_s
        start = s.slot * step
        for model, horizon in zip(s.models, HORIZONS_S, strict=True):
            model.learn(start, s.total / s.count)
            point = float(model.forecast(np.array([start + step + horizon]))[0])
            lower, upper = model.interval(point)
            s.latest[_label(horizon)] = (point, lower, upper)

    def _get(self, workload: str, signal: str) -> _Signal:
        key = (workload, signal)
        s = self.signals.get(key)
        if s is None:
            steps = [max(1, round(h / self.config.step_s)) for h in HORIZONS_S]
            s = self.signals[key] = _Signal([Forecaster(self.config, n) for n in steps])
            if len(self.signals) > self.max_workloads * len(SIGNALS):
                self.signals.popitem(last=False)
        self.signals.move_to_end(key)
        return s

    def snapshot(self) -> bytes:
        """JSON of every signal's forecasters and partial step."""
        body = [
            {
                "workload": w,
                "signal": sig,
                "models": [m.to_state() for m in s.models],
                "step": [s.slot, s.total, s.count],
                "latest": s.latest,
            }
            for (w, sig), s in self.signals.items()
        ]
        return json.dumps({"format": _FORMAT, "signals": body}, allow_nan=True).encode()

    def restore(self, data: bytes) -> None:
        """Take the state of ``snapshot()``."""
        body = json.loads(data)
        if body.get("format") != _FORMAT:
            raise ValueError("workload forecasts from another version")
        self.signals.clear()
        for item in body["signals"]:
            slot, total, count = item["step"]
            s = _Signal([Forecaster.from_state(m) for m in item["models"]], int(slot), total, count)
            s.latest = {h: (v[0], v[1], v[2]) for h, v in item["latest"].items()}
            self.signals[(item["workload"], item["signal"])] = s


class ForecastCollector(Collector):
    """``keiko_forecast{workload,signal,horizon,bound}`` at scrape time."""

    def __init__(self, forecasts: WorkloadForecasts) -> None:
        self.forecasts = forecasts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The latest forecasts with their 80% interval."""
        family = GaugeMetricFamily(
            "keiko_forecast",
            "Forecast of a workload's request rate (per s) or CPU (cores) at a horizon, with "
            "its 80% interval (bound lower/upper; absent until enough errors were seen).",
            labels=["workload", "signal", "horizon", "bound"],
        )
        for (workload, signal), s in list(self.forecasts.signals.items()):
            for horizon, values in s.latest.items():
                for bound, value in zip(("point", "lower", "upper"), values, strict=True):
                    if math.isfinite(value):
                        family.add_metric([workload, signal, horizon, bound], value)
        yield family


def _label(horizon_s: float) -> str:
    return f"{horizon_s / 3600:g}h" if horizon_s >= 3600 else f"{horizon_s / 60:g}m"
