"""Benchmark of forecasting and predictive scaling (issue 4) on the shared real data.

Converts the request-rate data into ``timestamp,value`` CSVs under ``benchmarks/out/scale_sim``
(not committed), then per series: the forecaster's MASE (against seasonal-naive) and 80%
interval coverage at horizons of 5, 15 and 60 minutes, and ``scale-sim`` of predictive scaling
against the Kubernetes HPA. Capacity rule: a replica serves one tenth of the series' 99th
percentile rate, so the busiest minutes need about 10 replicas at full load (15 at the 70%
target utilisation) and the peak somewhat more.

    .venv/bin/python benchmarks/scale_sim.py [--data /work/shared/data] [--sim-only] [--json]
    .venv/bin/python benchmarks/scale_sim.py --attribution
    .venv/bin/python benchmarks/scale_sim.py --frontier [--series UPS,code]
    .venv/bin/python benchmarks/scale_sim.py --scale-in
    .venv/bin/python benchmarks/scale_sim.py --trust
    .venv/bin/python benchmarks/scale_sim.py --nowcast
    .venv/bin/python benchmarks/scale_sim.py --persistence
    .venv/bin/python benchmarks/scale_sim.py --tolerance
    .venv/bin/python benchmarks/scale_sim.py --perturb
    .venv/bin/python benchmarks/scale_sim.py --petshop

The scaling comparison uses the defaults of ``SimConfig`` (those of ``keiko scale-sim``).
``--attribution`` shows what the HPA's under-provisioned minutes come from: each series
replayed again with one delay or rule of the HPA removed (for both controllers alike).
``--frontier`` shows what the predictive policy's two sizing settings can buy: each series
replayed over a grid of peak quantile x planned utilisation, the best ratio of
under-provisioned minutes at no more replica-hours than the HPA, and the setting.
``--scale-in`` replays each series with a backward scale-in window on the predictive policy
(the HPA's kind; keiko's default is none, as its plan already looks a start-up ahead).
``--trust`` replays each series with the forecast trusted after 5, 15, 30 and 60 minutes
of history (60, the online advisor's default, is ``keiko scale-sim``'s too).
``--nowcast`` replays each series with and without the advisor's nowcast (the plan made
from a copy of the forecaster that has learnt the step being seen so far, before it ends).
``--persistence`` replays each series with the forecast peak taking none, a quarter, half
(the default) or all of the gap up to a latest rate above it.
``--tolerance`` replays each series with the advice carried out by an HPA that keeps its
default 0.1 tolerance (clusters where it cannot be set to 0).
``--perturb`` replays copies of each series whose every value is multiplied by 1 + N(0,
0.1%), five seeds: how much a verdict near the target rests on chance.
The table is followed by the sums per data set (the target read over a data set as a whole).
``--petshop`` replays PetShop's per-component request series (``../shared/data/rca``, out
of sample): on those where the HPA is never short the target says nothing, so it counts
the others.
The table's ``best_possible_ratio`` is the floor no causal controller sized for at most the
largest demand seen so far gets below (``analytics.forecast.sim``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from analytics.csvseries import read_arrivals_csv, read_series_csv
from analytics.forecast.backtest import backtest, to_grid
from analytics.forecast.config import ForecasterConfig
from analytics.forecast.hpa import HpaConfig
from analytics.forecast.sim import SimConfig, simulate

OUT = Path(__file__).resolve().parent / "out" / "scale_sim"
PERTURB_SEEDS, PERTURB_SCALE = 5, 0.001  # --perturb: copies, relative noise on each value
NAB = [
    "realTweets/Twitter_volume_AMZN.csv",
    "realTweets/Twitter_volume_CVS.csv",
    "realTweets/Twitter_volume_GOOG.csv",
    "realTweets/Twitter_volume_KO.csv",
    "realTweets/Twitter_volume_UPS.csv",
    "realAWSCloudwatch/ec2_network_in_5abac7.csv",
]


def _write(path: Path, times: np.ndarray, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["timestamp", "value"])
        for t, v in zip(times, values, strict=True):
            writer.writerow([f"{t:.0f}", f"{v:.6g}"])
    return path


def azure(data: Path, name: str, step: float = 10.0) -> Path:
    """Requests per second in ``step``-second bins from the one-row-per-request trace (what
    ``--arrivals 10s`` reads)."""
    path = data / f"forecast/azure_llm_inference_2023/AzureLLMInferenceTrace_{name}.csv"
    series = read_arrivals_csv(path, step)
    return _write(OUT / f"azure_{name}_{step:.0f}s.csv", series.times, series.values)


def alibaba(data: Path) -> list[Path]:
    """Service-level QPS (per request type the sum over containers per report, minute means),
    then each request type's own series (added after the first settings were chosen; the
    later ones were chosen looking at them too, so PetShop is the out-of-sample check)."""
    frame = pd.read_csv(data / "forecast/alibaba_gentd26/qps.csv")
    per_report = frame.groupby(["request_type", "timestamp_anon"])["value"].sum().reset_index()
    per_report["minute"] = (per_report["timestamp_anon"] // 60).astype(np.int64)
    per_minute = per_report.groupby(["request_type", "minute"])["value"].mean().unstack(0)
    per_minute = per_minute.ffill().fillna(0.0)
    times = per_minute.index.to_numpy() * 60.0
    paths = [_write(OUT / "alibaba_service_qps.csv", times, per_minute.sum(axis=1).to_numpy())]
    for column, name in (("Generative Requests", "generative"), ("API Requests", "api")):
        paths.append(_write(OUT / f"alibaba_{name}_qps.csv", times, per_minute[column].to_numpy()))
    return paths


def nab(data: Path, rel: str) -> Path:
    """A NAB series as is (5-minute steps)."""
    series = read_series_csv(data / "nab/data" / rel)
    return _write(OUT / f"nab_{Path(rel).stem}.csv", series.times, series.values)


def petshop(data: Path) -> list[Path]:
    """PetShop's request counts per component and 5 minutes in normal operation (2 days of the
    low- and high-traffic scenarios): each distinct series with a median of at least 10
    requests a step. Never used while the policy's settings were chosen."""
    paths = []
    for scenario in ("low_traffic", "high_traffic"):  # the two with normal-operation data
        source = data / f"rca/petshop/dataset/{scenario}/noissue/metrics.csv"
        frame = pd.read_csv(source, header=[0, 1, 2], index_col=0)
        times = frame.index.to_numpy(np.float64)
        seen: set[bytes] = set()
        for column in frame.columns:
            if column[1:] != ("requests", "Sum"):
                continue
            values = frame[column].to_numpy(np.float64)
            if values.tobytes() in seen or not np.nanmedian(values) >= 10:
                continue  # a copy under another name, or too little traffic to be a rate
            seen.add(values.tobytes())
            name = "".join(c if c.isalnum() else "_" for c in column[0])[:48]
            paths.append(_write(OUT / "petshop" / f"{scenario}_{name}.csv", times, values))
    return paths


def perturbed(paths: list[Path], seeds: int = PERTURB_SEEDS) -> list[dict[str, object]]:
    """Per series: default replays of copies whose every value is multiplied by 1 + N(0,
    0.1%), one per seed; the spread of the ratio says how much a verdict rests on chance."""
    copies: list[Path] = []
    for path in paths:
        series = read_series_csv(path)
        for seed in range(seeds):
            noise = np.random.default_rng(seed).standard_normal(len(series.values))
            values = series.values * (1.0 + PERTURB_SCALE * noise)
            copies.append(
                _write(OUT / "perturbed" / f"{path.stem}~{seed}.csv", series.times, values)
            )
    runs = out_of_sample(copies)
    rows: list[dict[str, object]] = []
    for path in paths:
        mine = [r for r in runs if str(r["series"]).split("~")[0] == path.stem]
        ratios = sorted(float(str(r["under_ratio"])) for r in mine)
        costs = [float(str(r["replica_h_ratio"])) for r in mine]
        rows.append(
            {
                "series": path.stem,
                "ratio min / median / max": " / ".join(
                    f"{v:.2f}" for v in (ratios[0], ratios[len(ratios) // 2], ratios[-1])
                ),
                "replica-h ratio max": f"{max(costs):.2f}",
                "target met": f"{sum(bool(r['target_met']) for r in mine)} of {len(mine)}",
            }
        )
    return rows


def out_of_sample(paths: list[Path]) -> list[dict[str, object]]:
    """Default-settings replays of ``paths``, on all cores (no forecast scores)."""
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        rows = list(pool.map(evaluate, paths, [False] * len(paths)))
    keep = ["series", "hpa_under_min", "pred_under_min", "under_ratio", "replica_h_ratio"]
    keep += ["best_possible_ratio", "target_met"]
    return [{k: row[k] for k in keep} for row in rows]


def prepare(data: Path) -> list[Path]:
    """All benchmark series as CSV files."""
    paths = [azure(data, "code"), azure(data, "conv"), *alibaba(data)]
    return paths + [nab(data, rel) for rel in NAB]


def capacity_for(values: np.ndarray) -> float:
    """The capacity rule: a tenth of the 99th percentile rate."""
    return float(np.nanpercentile(values, 99)) / 10.0


def evaluate(path: Path, forecast_scores: bool = True) -> dict[str, object]:
    """Forecast scores at 5/15/60 min and the scaling comparison (default settings)."""
    series = read_series_csv(path)
    step = to_grid(series.times, series.values).step
    row: dict[str, object] = {"series": path.stem, "step_s": step, "rows": len(series)}
    for minutes in (5, 15, 60) if forecast_scores else ():
        h = max(1, round(minutes * 60 / step))
        if h * 4 >= len(series):
            row[f"mase_{minutes}m"] = row[f"cover_{minutes}m"] = None
            continue
        bt = backtest(series, h, ForecasterConfig())
        row[f"mase_{minutes}m"], row[f"cover_{minutes}m"] = bt.mase, bt.coverage
    cap = capacity_for(series.values)
    result = simulate(series.times, series.values, SimConfig(capacity=cap))
    row.update(result.summary())
    row["replica_h_ratio"] = result.pred_replica_h / result.hpa_replica_h
    return row


# what the HPA's under-provisioning comes from: the defaults, then one thing removed
VARIANTS: dict[str, dict[str, float]] = {
    "defaults": {},
    "no start-up": {"startup_s": 0.0},
    "no metrics lag": {"metrics_lag_s": 0.0},
    "neither": {"startup_s": 0.0, "metrics_lag_s": 0.0},
    "5 s sync": {"sync_s": 5.0, "scale_up_period_s": 5.0},
    "no tolerance": {"tolerance": 0.0},
}


def attribution(path: Path) -> dict[str, object]:
    """HPA and predictive under-provisioned minutes under each of ``VARIANTS``."""
    series = read_series_csv(path)
    cap = capacity_for(series.values)
    row: dict[str, object] = {"series": path.stem}
    for name, hpa in VARIANTS.items():
        config = SimConfig(capacity=cap, hpa=HpaConfig().model_copy(update=hpa))
        result = simulate(series.times, series.values, config)
        row[name] = f"{result.hpa_under_min:.4g} / {result.pred_under_min:.4g}"
    return row


QUANTILES = (0.8, 0.9, 0.95, 0.98)
UTILISATIONS = (0.8, 0.875, 1.0)
SCALE_IN_WINDOWS = (0.0, 60.0, 120.0, 300.0)
TRUST_AFTER = (300.0, 900.0, 1800.0, 3600.0)  # min_history_s: 3600 is the default
PERSISTENCE = (0.0, 0.25, 0.5, 1.0)  # 0.5 is the default
LABELLED = ("nowcast", "advice_tolerance", "persistence")  # swept settings that are not durations

Run = tuple[str, dict[str, float], float, float]  # series, settings, ratio, replica-h ratio


def _replay(job: tuple[Path, dict[str, float]]) -> Run:
    path, settings = job
    series = read_series_csv(path)
    config = SimConfig(capacity=capacity_for(series.values)).model_copy(update=settings)
    result = simulate(series.times, series.values, config)
    return path.stem, settings, result.under_ratio, result.pred_replica_h / result.hpa_replica_h


def replay_all(paths: list[Path], grid: list[dict[str, float]]) -> list[Run]:
    """Every series under every setting of ``grid``, on all cores."""
    jobs = [(p, settings) for p in paths for settings in grid]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(_replay, jobs))


def frontier(paths: list[Path]) -> list[dict[str, object]]:
    """Per series: the best ratio at <= the HPA's replica-hours over the settings' grid."""
    grid = [{"peak_quantile": q, "utilisation": u} for q in QUANTILES for u in UTILISATIONS]
    runs = replay_all(paths, grid)
    rows: list[dict[str, object]] = []
    for path in paths:
        mine = [r for r in runs if r[0] == path.stem]
        affordable = [r for r in mine if r[3] <= 1.0]
        best = min(affordable, key=lambda r: r[2]) if affordable else None
        halved = [r for r in mine if r[2] <= 0.5]
        cheapest = min(halved, key=lambda r: r[3]) if halved else None
        rows.append(
            {
                "series": path.stem,
                "best ratio at <= HPA replica-hours": _setting(best),
                "least replica-hours at ratio <= 0.5": _setting(cheapest),
                "settings meeting the target": sum(r[2] <= 0.5 and r[3] <= 1.0 for r in mine),
            }
        )
    return rows


def sweep(
    paths: list[Path], setting: str, values: tuple[float, ...] | tuple[bool, ...]
) -> list[dict[str, object]]:
    """Per series and value of one ``SimConfig`` setting: ratio / replica-hours ratio."""
    runs = replay_all(paths, [{setting: v} for v in values])
    rows: list[dict[str, object]] = []
    for path in paths:
        row: dict[str, object] = {"series": path.stem}
        for _, settings, ratio, cost in (r for r in runs if r[0] == path.stem):
            value = settings[setting]
            label = f"{setting} {value}" if setting in LABELLED else f"{value:.0f} s"
            row[label] = f"{ratio:.2f} / {cost:.2f}"
        rows.append(row)
    return rows


def _setting(run: Run | None) -> str:
    if run is None:
        return "none"
    named = ", ".join(f"{k.split('_')[-1]} {v:g}" for k, v in run[1].items())
    return f"{run[2]:.2f} / {run[3]:.2f} ({named})"


def _print_rows(rows: list[dict[str, object]]) -> None:
    columns = list(rows[0])
    print(" | ".join(columns))
    for row in rows:
        print(" | ".join(str(row[c]) for c in columns))


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def _print_petshop(rows: list[dict[str, object]], started: float) -> int:
    _print_rows([{k: _fmt(v) for k, v in row.items()} for row in rows])
    short = [r for r in rows if float(str(r["hpa_under_min"])) >= 1.0]
    met = [r for r in short if r["target_met"]]
    print(
        f"{len(rows)} series; the HPA is short at least a minute on {len(short)}; "
        f"the target is met on {len(met)} of those"
    )
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0


def main() -> int:
    """Prepare the data, evaluate every series, print the table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    parser.add_argument(
        "--sim-only", action="store_true", help="skip the forecast scores (MASE, coverage)"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--attribution",
        action="store_true",
        help="HPA / predictive under-provisioned minutes with the start-up, the metrics "
        "lag, both, the 15 s sync or the 0.1 tolerance removed",
    )
    parser.add_argument(
        "--frontier",
        action="store_true",
        help=f"replay each series over peak quantiles {QUANTILES} x utilisations "
        f"{UTILISATIONS}: the best ratio at no more replica-hours than the HPA",
    )
    parser.add_argument(
        "--scale-in",
        action="store_true",
        help=f"replay each series with predictive scale-in windows {SCALE_IN_WINDOWS} s: "
        "ratio / replica-hours ratio",
    )
    parser.add_argument(
        "--trust",
        action="store_true",
        help=f"replay each series with the forecast trusted after {TRUST_AFTER} s of "
        "history: ratio / replica-hours ratio",
    )
    parser.add_argument(
        "--persistence",
        action="store_true",
        help=f"replay each series with the forecast peak taking {PERSISTENCE} of the gap up "
        "to a higher latest rate: ratio / replica-hours ratio",
    )
    parser.add_argument(
        "--nowcast",
        action="store_true",
        help="replay each series with and without the advisor's nowcast (the plan made "
        "also from the step being seen): ratio / replica-hours ratio",
    )
    parser.add_argument(
        "--tolerance",
        action="store_true",
        help="replay each series with the advice carried out at tolerance 0 and 0.1 (the "
        "HPA's default): ratio / replica-hours ratio",
    )
    parser.add_argument(
        "--perturb",
        action="store_true",
        help=f"replay {PERTURB_SEEDS} copies of each series with every value times 1 + "
        f"N(0, {100 * PERTURB_SCALE:.1f}%%): the spread of the ratio",
    )
    parser.add_argument(
        "--petshop",
        action="store_true",
        help="replay PetShop's request series (out of sample) and count where the HPA is "
        "ever short and where the target is met",
    )
    parser.add_argument(
        "--series", default="", help="comma-separated parts of series names to keep"
    )
    args = parser.parse_args()
    started = time.monotonic()
    if args.petshop:
        return _print_petshop(out_of_sample(petshop(args.data)), started)
    paths = prepare(args.data)
    if args.series:
        keep = args.series.split(",")
        paths = [p for p in paths if any(k in p.stem for k in keep)]
    sweeps = (
        args.frontier,
        args.scale_in,
        args.attribution,
        args.trust,
        args.nowcast,
        args.persistence,
    )
    if any(sweeps) or args.tolerance or args.perturb:
        if args.attribution:
            _print_rows([attribution(p) for p in paths])
        elif args.frontier:
            _print_rows(frontier(paths))
        elif args.scale_in:
            _print_rows(sweep(paths, "scale_in_stabilisation_s", SCALE_IN_WINDOWS))
        elif args.nowcast:
            _print_rows(sweep(paths, "nowcast", (True, False)))
        elif args.persistence:
            _print_rows(sweep(paths, "persistence", PERSISTENCE))
        elif args.tolerance:
            _print_rows(sweep(paths, "advice_tolerance", (0.0, 0.1)))
        elif args.perturb:
            _print_rows(perturbed(paths))
        else:
            _print_rows(sweep(paths, "min_history_s", TRUST_AFTER))
        print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
        return 0
    rows = [evaluate(p, not args.sim_only) for p in paths]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cols = [
        "series",
        "step_s",
        "mase_5m",
        "cover_5m",
        "mase_15m",
        "cover_15m",
        "mase_60m",
        "cover_60m",
        "hpa_under_min",
        "pred_under_min",
        "under_ratio",
        "hpa_replica_h",
        "pred_replica_h",
        "replica_h_ratio",
        "hpa_unreachable_min",
        "best_possible_ratio",
        "hpa_changes_per_h",
        "pred_changes_per_h",
        "hpa_reversals_per_h",
        "pred_reversals_per_h",
        "fallback_share",
        "peak_replicas_needed",
        "target_met",
    ]
    print(" | ".join(cols))
    for row in rows:
        print(" | ".join(_fmt(row.get(c)) for c in cols))
    _print_totals(rows)
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    return 0


DATA_SETS = {"../shared/data/forecast": ("azure_", "alibaba_"), "NAB": ("nab_",)}


def _print_totals(rows: list[dict[str, object]]) -> None:
    """Per data set, the minutes and replica-hours of all its series added up: the target
    read over the data set as a whole (a long series weighs more)."""
    for name, prefixes in DATA_SETS.items():
        mine = [r for r in rows if str(r["series"]).startswith(prefixes)]
        if not mine:
            continue
        total = {k: sum(float(str(r[k])) for r in mine) for k in _SUMMED}
        under, cost = _ratio(total, "under_min"), _ratio(total, "replica_h")
        print(
            f"{name}, {len(mine)} series together: under-provisioned min "
            f"{total['hpa_under_min']:.1f} -> {total['pred_under_min']:.1f} ({under:.2f}), "
            f"replica-hours {total['hpa_replica_h']:.0f} -> {total['pred_replica_h']:.0f} "
            f"({cost:.2f}); met on {sum(bool(r['target_met']) for r in mine)} of {len(mine)} "
            "one by one"
        )


_SUMMED = ("hpa_under_min", "pred_under_min", "hpa_replica_h", "pred_replica_h")


def _ratio(total: dict[str, float], what: str) -> float:
    return total[f"pred_{what}"] / total[f"hpa_{what}"]


if __name__ == "__main__":
    raise SystemExit(main())
