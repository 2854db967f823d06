"""`keiko forecast` (backtest the online forecaster) and `keiko scale-sim` (predictive vs HPA)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import IO, Any

from keiko.commands.common import duration, positive_float, positive_int

EXIT_OK, EXIT_USAGE = 0, 2

FORECAST_DESCRIPTION = """\
Backtest keiko's online forecaster on a `timestamp,value` CSV (the format of `keiko detect`:
timestamps as unix seconds or milliseconds, 'YYYY-MM-DD HH:MM:SS' or ISO 8601; extra columns
ignored; an empty value is a gap). Irregular rows are put on a fixed step, the median
spacing. Writes `timestamp,value,forecast,lower,upper`: the forecast for a row was made from
the rows up to H steps before it only, with an 80% prediction interval (empty until 20 of
its errors have been seen). Prints to stderr the MASE, i.e. the mean absolute error divided
by that of the seasonal-naive forecast on the same rows (the value a whole number of days >=
H steps earlier when the series spans two days plus H, else the value H steps earlier), and
the share of rows inside their interval. MASE < 1 beats the baseline."""

FORECAST_EPILOG = """\
examples:
  keiko forecast requests.csv --horizon 12 -o forecast.csv     # 5-min rows: 1 h ahead
  keiko forecast requests.csv --horizon 1h -o forecast.csv     # the same, as a duration
  keiko forecast requests.csv --horizon 5 -o - | head           # CSV to stdout
  cat requests.csv | keiko forecast - --horizon 1 -o out.csv
  keiko forecast access.csv --arrivals 1m --horizon 15m -o f.csv  # one row per request
"""

SIM_DESCRIPTION = """\
Replay a request-rate series (`timestamp,value`, rate in any unit; capacity in the same
unit) through the Kubernetes HPA and through keiko's predictive scaling, and compare them.
HPA (autoscaling/v2 defaults): every 15 s, desired = ceil(ready x utilisation / target),
no change within the 0.1 tolerance, starting pods counted as 0% when scaling up; scale
down only to the highest recommendation of the last 300 s; scale up by at most max(100%,
4 pods) per 15 s. Its metric is the demand per ready pod as it was --metrics-lag earlier
(not saturated: the HPA sees the full overload). Pods serve only --startup after creation.
Predictive: the online advisor's own planner, every 15 s: replicas for the
--peak-quantile of the forecast peak of the steps after the one being seen up to now +
startup + horizon (a pod removed now is back only a start-up later; further ahead when
the scale-up limit needs longer to reach a later step's pods), forecast from a nowcast
(the forecaster learns a step at its close; a copy of it has also learnt the step being
seen, whose rate is the rate seen: the demand is constant within a step) at
--utilisation (hotter than the HPA's target: the forecast is ahead of the load; the peak
takes half the gap up to the latest rate when that is higher, as the robust forecaster
discounts a rise for a few steps), never below what the observed rate needs at
--floor-utilisation (above it the forecast is behind: a burst it missed is met as fast
as the HPA meets it), scaled in after --stabilisation (none by default).
Right after a surprising rise (a step more than 6 of the forecaster's error scales above
its forecast) it is sized for what followed past surprising rises (their own conformal
class of peak errors). While the forecast is untrusted (less than --min-history, too few
scored peak forecasts, or an interval wider than --max-width x max(peak, one pod's
share)) it is the HPA itself.
A 15 s instant is under-provisioned when the demand exceeds ready pods x capacity;
under-provisioned minutes = such instants x 15 s / 60. Replica-hours count every pod,
starting or ready, every 15 s. Target: predictive under-provisioned minutes at most half
the HPA's at no more replica-hours. Instants whose demand exceeds what the largest demand
seen by the time their pods had to be ordered needs at the HPA's target (the opening ramp
of a short trace, a record burst) are reported apart: a controller sized for at most that
misses them however it forecasts, so they bound the ratio it can reach."""

SIM_EPILOG = """\
examples:
  keiko scale-sim requests.csv --capacity 50
  keiko scale-sim requests.csv --capacity 50 --horizon 10m --startup 2m --json | jq .
  keiko scale-sim AzureLLMInferenceTrace_code.csv --arrivals 10s --capacity 1.74
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `keiko forecast` and `keiko scale-sim`."""
    from keiko.commands.common import HelpFormatter, add_arrivals_option

    fc = subparsers.add_parser(
        "forecast",
        help="backtest the online forecaster on a timestamp,value CSV",
        description=FORECAST_DESCRIPTION,
        epilog=FORECAST_EPILOG,
        formatter_class=HelpFormatter,
    )
    fc.add_argument("input", metavar="IN.csv", help="input file, '-' for stdin")
    fc.add_argument(
        "--horizon",
        "-H",
        type=_horizon,
        required=True,
        metavar="H",
        help="steps ahead (rows), or a duration (30m, 1h: that many seconds of the series' "
        "step, rounded to whole steps)",
    )
    fc.add_argument("-o", "--output", default="-", metavar="OUT.csv", help="output ('-': stdout)")
    add_arrivals_option(fc)
    fc.add_argument("--json", action="store_true", help="print the scores as JSON on stderr")
    fc.set_defaults(func=run_forecast)

    sim = subparsers.add_parser(
        "scale-sim",
        help="compare predictive scaling with the Kubernetes HPA on a rate series",
        description=SIM_DESCRIPTION,
        epilog=SIM_EPILOG,
        formatter_class=HelpFormatter,
    )
    sim.add_argument("input", metavar="IN.csv", help="input file, '-' for stdin")
    sim.add_argument(
        "--capacity", type=positive_float, required=True, metavar="C", help="rate one pod serves"
    )
    sim.add_argument(
        "--horizon",
        type=duration,
        default=15.0,
        metavar="DUR",
        help="look-ahead after start-up (default 15s: one sync, the plan is remade every sync)",
    )
    sim.add_argument(
        "--target-utilisation",
        type=_fraction,
        default=0.7,
        metavar="U",
        help="HPA target, also the predictive policy's while untrusted (default 0.7)",
    )
    sim.add_argument(
        "--utilisation",
        type=_fraction,
        default=0.875,  # SimConfig's (tested): the CLI does not import it to start fast
        metavar="U",
        help="predictive policy's planned utilisation of the forecast peak while trusted "
        "(default %(default)g)",
    )
    sim.add_argument(
        "--floor-utilisation",
        type=_fraction,
        default=0.95,
        metavar="U",
        help="never below the rate seen at this utilisation while trusted (default "
        "%(default)g; lower it for traffic that swings within a step)",
    )
    sim.add_argument(
        "--startup",
        type=duration,
        default=60.0,
        metavar="DUR",
        help="pod start-up delay (default 60s)",
    )
    sim.add_argument(
        "--metrics-lag",
        type=duration,
        default=30.0,
        metavar="DUR",
        help="age of the metric seen (default 30s)",
    )
    sim.add_argument(
        "--stabilisation",
        type=duration,
        default=0.0,
        metavar="DUR",
        help="predictive scale-in window (default 0s)",
    )
    sim.add_argument(
        "--peak-quantile",
        type=_fraction,
        default=0.9,
        metavar="Q",
        help="quantile of the peak sized for (default 0.9)",
    )
    sim.add_argument(
        "--min-history",
        type=duration,
        default=3600.0,
        metavar="DUR",
        help="history before trusting forecasts (default 1h, the online advisor's; also "
        "needs the 9 scored peak forecasts the conformal 0.9 bound rests on)",
    )
    sim.add_argument(
        "--max-width",
        type=positive_float,
        default=5.0,
        metavar="W",
        help="widest trusted interval / peak (default 5)",
    )
    sim.add_argument(
        "--min-replicas", type=positive_int, default=1, metavar="N", help="minReplicas (default 1)"
    )
    sim.add_argument(
        "--max-replicas",
        type=positive_int,
        default=1000,
        metavar="N",
        help="maxReplicas of both controllers (default 1000)",
    )
    sim.add_argument(
        "--no-nowcast",
        action="store_true",
        help="plan from the steps that have ended only, not also from what has been seen of "
        "the step being filled (the advisor's nowcast): what the nowcast is worth",
    )
    add_arrivals_option(sim)
    sim.add_argument("--json", action="store_true", help="machine-readable output")
    sim.set_defaults(func=run_scale_sim)


def _fraction(text: str) -> float:
    value = positive_float(text)
    if value >= 1.0 and value != 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be in (0, 1]")
    return value


def _horizon(text: str) -> int | float:
    """Steps (a whole number, int) or a duration in seconds (float, e.g. '30m')."""
    if text.strip().isdigit():
        return positive_int(text)
    from keiko.units import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a whole number of steps nor a duration such as 30m or 1h"
        ) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the horizon must be positive")
    return float(seconds)


def _horizon_steps(horizon: int | float, series: Any) -> int:
    """``--horizon`` in steps of the series' grid (a duration rounded, at least one step)."""
    if isinstance(horizon, int):
        return horizon
    from analytics.forecast.backtest import to_grid

    step = to_grid(series.times, series.values).step
    steps = max(1, round(horizon / step))
    if abs(steps * step - horizon) > 1e-6 * horizon:
        print(
            f"keiko forecast: note: --horizon {horizon:g} s is {horizon / step:.3g} steps of "
            f"{step:g} s: {steps} used",
            file=sys.stderr,
        )
    return steps


def _read(path: str, prog: str, arrivals: float | None) -> Any:
    from analytics.csvseries import SeriesFileError, print_notes, read_input

    series = read_input(path, arrivals)
    if len(series) < 2:
        raise SeriesFileError(f"{path}: needs at least 2 data rows, found {len(series)}")
    print_notes(series, prog)
    return series


def run_forecast(args: argparse.Namespace) -> int:
    """Backtest, write the CSV, print the scores."""
    from analytics.csvseries import SeriesFileError, write_csv
    from analytics.forecast.backtest import backtest

    try:
        series = _read(args.input, "keiko forecast", args.arrivals)
    except SeriesFileError as exc:
        print(f"keiko forecast: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    args.horizon = _horizon_steps(args.horizon, series)
    result = backtest(series, args.horizon)
    columns = [
        series.raw_timestamps,
        list(series.values),
        list(result.forecast),
        list(result.lower),
        list(result.upper),
    ]
    header = ["timestamp", "value", "forecast", "lower", "upper"]
    if args.output == "-":
        write_csv(sys.stdout, header, columns)
    else:
        with open(args.output, "w", newline="", encoding="utf-8") as handle:
            write_csv(handle, header, columns)
    _report_forecast(result, args, sys.stderr)
    return EXIT_OK


def _report_forecast(result: Any, args: argparse.Namespace, out: IO[str]) -> None:
    scores = {
        "horizon_steps": args.horizon,
        "step_s": result.step,
        "mase": result.mase,
        "mae": result.mae,
        "baseline": result.baseline,
        "baseline_mae": result.baseline_mae,
        "coverage_80": result.coverage,
        "rows_scored": result.rows_scored,
        "daily_profile_used": result.seasonal,
    }
    if args.json:
        print(json.dumps({k: _json_num(v) for k, v in scores.items()}), file=out)
        return
    print(
        f"horizon {args.horizon} steps of {result.step:g} s; {_mase_text(result)}; "
        f"80% interval coverage {_coverage_text(result)}; "
        f"daily profile used: {'yes' if result.seasonal else 'no'}",
        file=out,
    )


def _mase_text(result: Any) -> str:
    # a NaN says nothing to the reader: say why there is no score
    if result.rows_scored == 0:
        return (
            f"MASE not scored: no row has both a forecast and a value of the baseline, "
            f"{result.baseline} "
            "(the series is shorter than the horizon plus the baseline's lag)"
        )
    if not math.isfinite(result.mase):
        return (
            f"MASE undefined over {result.rows_scored} rows: {result.baseline} makes no "
            f"error (MAE {result.mae:.4g})"
        )
    return f"MASE {result.mase:.3f} against {result.baseline} over {result.rows_scored} rows"


def _coverage_text(result: Any) -> str:
    if math.isfinite(result.coverage):
        return f"{result.coverage:.3f}"
    return "not scored (no interval yet: too few past errors)"


def _json_num(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def run_scale_sim(args: argparse.Namespace) -> int:
    """Replay and print the comparison."""
    from analytics.csvseries import SeriesFileError
    from analytics.forecast.hpa import HpaConfig
    from analytics.forecast.sim import SimConfig, simulate

    try:
        series = _read(args.input, "keiko scale-sim", args.arrivals)
    except SeriesFileError as exc:
        print(f"keiko scale-sim: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.min_replicas > args.max_replicas:
        print(
            f"keiko scale-sim: error: --min-replicas {args.min_replicas} exceeds "
            f"--max-replicas {args.max_replicas}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    hpa = HpaConfig(
        target_utilisation=args.target_utilisation,
        startup_s=args.startup,
        metrics_lag_s=args.metrics_lag,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
    )
    config = SimConfig(
        capacity=args.capacity,
        horizon_s=args.horizon,
        utilisation=args.utilisation,
        floor_utilisation=args.floor_utilisation,
        hpa=hpa,
        scale_in_stabilisation_s=args.stabilisation,
        peak_quantile=args.peak_quantile,
        min_history_s=args.min_history,
        max_relative_width=args.max_width,
        nowcast=not args.no_nowcast,
    )
    result = simulate(series.times, series.values, config)
    summary = result.summary()
    if args.json:
        print(json.dumps({k: _json_num(v) for k, v in summary.items()}, indent=2))
        return EXIT_OK
    _print_sim(args, result)
    return EXIT_OK


def _print_sim(args: argparse.Namespace, r: Any) -> None:
    print(
        f"{args.input}: {r.duration_h:.1f} h at {r.step_s:g} s steps, capacity "
        f"{args.capacity:g}/pod, peak needs {r.peak_replicas_needed:.6g} pods at full load"
    )
    if r.peak_replicas_needed > args.max_replicas:
        print(
            f"warning: the peak needs more than --max-replicas ({args.max_replicas}): both "
            "controllers are capped there and short; is --capacity in the series' units?"
        )
    print(f"{'':12}{'under-provisioned min':>24}{'replica-hours':>16}")
    print(f"{'HPA':12}{r.hpa_under_min:>24.2f}{r.hpa_replica_h:>16.2f}")
    print(f"{'predictive':12}{r.pred_under_min:>24.2f}{r.pred_replica_h:>16.2f}")
    cost = r.pred_replica_h / max(r.hpa_replica_h, 1e-12)
    print(
        f"ratio {r.under_ratio:.2f} (target <= 0.5), replica-hours {cost:.2f} x HPA "
        f"(target <= 1): {'met' if r.target_met else 'NOT met'}; forecast untrusted "
        f"(HPA fallback) {100 * r.fallback_share:.0f}% of the syncs"
    )
    if r.hpa_under_min == 0 and r.pred_under_min > 0:
        print(
            "the HPA is never short here, so no ratio can be halved: the predictive policy, "
            f"planning at {args.utilisation:g} utilisation (its floor at "
            f"{args.floor_utilisation:g}) against the HPA's {args.target_utilisation:g}, is "
            f"short {r.pred_under_min:.2f} min for {100 * (1 - cost):.0f}% fewer "
            "replica-hours; a lower --utilisation (and --floor-utilisation, on coarse steps) "
            "buys them back at more replica-hours"
        )
    if r.fallback_share >= 1.0 and r.duration_h * 3600.0 <= args.min_history:
        print(
            f"the forecast was never trusted: the series is shorter than --min-history "
            f"({args.min_history:g} s), so the predictive policy was the HPA throughout; "
            "--min-history 5m trusts it sooner than keiko's advisor would"
        )
    print(
        f"replica changes per hour: HPA {r.hpa_changes_per_h:.2f}, predictive "
        f"{r.pred_changes_per_h:.2f}; scale-ins reversed within 5 min per hour: HPA "
        f"{r.hpa_reversals_per_h:.2f}, predictive {r.pred_reversals_per_h:.2f}"
    )
    if r.hpa_unreachable_min > 0:
        print(
            f"beyond a controller sized for the largest demand seen so far (at the HPA's "
            f"target, ordered a start-up ahead): HPA {r.hpa_unreachable_min:.2f} min, "
            f"predictive {r.pred_unreachable_min:.2f} min; so sized, no controller gets the "
            f"ratio below {r.best_possible_ratio:.2f}"
            + (" (the target is out of its reach here)" if r.best_possible_ratio > 0.5 else "")
        )
