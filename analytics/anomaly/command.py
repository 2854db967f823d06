"""`keiko detect`: the streaming anomaly detector, offline over a `timestamp,value` CSV."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack
from typing import IO

import numpy as np

EXIT_OK, EXIT_USAGE = 0, 2

DESCRIPTION = """\
Score every row of a `timestamp,value` CSV with keiko's online anomaly detector, the same
code that scores the metric stream: each row is scored from itself and the rows before it
only (score first, then learn), so the output is what keiko would have said live. Timestamps
may be unix seconds (or milliseconds: all above 1e11), 'YYYY-MM-DD HH:MM:SS' (UTC) or ISO
8601; extra columns are ignored; an empty value is a gap (scored 0, not learnt). Writes
`timestamp,value,anomaly_score` with one score in [0, 1] per input row, in input order; the
score is an anomaly probability, so one threshold serves every series (the streaming one is
analytics.anomaly.threshold in keiko's config). The first 50 rows of a series are its
warm-up and score 0. A summary (rows, rows at or above --threshold, the highest scores)
goes to stderr."""

EPILOG = """\
examples:
  keiko detect latency.csv -o scored.csv
  keiko detect latency.csv -o - | awk -F, '$3 >= 0.99'        # anomalous rows
  cat latency.csv | keiko detect - -o scored.csv --threshold 0.95
  keiko detect access.csv --arrivals 1m -o scored.csv          # one row per request
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `keiko detect` to the CLI."""
    from analytics.anomaly.config import AnomalyConfig
    from keiko.commands.common import HelpFormatter, add_arrivals_option

    parser = subparsers.add_parser(
        "detect",
        help="score a timestamp,value CSV with the anomaly detector (backtesting)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("input", metavar="IN.csv", help="input CSV ('-': stdin)")
    parser.add_argument(
        "-o", "--output", metavar="OUT.csv", default="-", help="output CSV ('-': stdout, default)"
    )
    parser.add_argument(
        "--threshold",
        type=_probability,
        default=AnomalyConfig().threshold,
        help="anomaly probability counted as anomalous in the summary (default: %(default)s, "
        "the streaming default)",
    )
    add_arrivals_option(parser)
    parser.add_argument("--top", type=int, default=5, help="highest-scoring rows in the summary")
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    parser.set_defaults(func=run_detect)


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not in (0, 1]")
    return value


def run_detect(args: argparse.Namespace) -> int:
    """Read, score, write; exit 2 on unreadable input."""
    from analytics.anomaly.offline import detect_values
    from analytics.csvseries import SeriesFileError, print_notes, read_input, write_csv

    try:
        series = read_input(args.input, args.arrivals)
    except SeriesFileError as exc:
        print(f"keiko detect: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.quiet:
        print_notes(series, "keiko detect")
    started = time.perf_counter()
    scores = detect_values(series.times, series.values)
    elapsed = time.perf_counter() - started
    try:
        with ExitStack() as stack:
            out: IO[str] = sys.stdout
            if args.output != "-":
                out = stack.enter_context(open(args.output, "w", newline="", encoding="utf-8"))
            write_csv(
                out,
                ("timestamp", "value", "anomaly_score"),
                (series.raw_timestamps, series.values, scores),
            )
    except OSError as exc:
        print(
            f"keiko detect: error: cannot write {args.output}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if not args.quiet:
        _summary(series.raw_timestamps, series.times, scores, args, elapsed)
    return EXIT_OK


def _summary(
    raw: list[str], times: np.ndarray, scores: np.ndarray, args: argparse.Namespace, elapsed: float
) -> None:
    err = sys.stderr
    hits = int(np.sum(scores >= args.threshold))
    rate = len(scores) / elapsed if elapsed > 0 else 0.0
    print(
        f"{len(scores)} rows scored in {elapsed:.2f} s ({rate:,.0f} rows/s); "
        f"{hits} at or above {args.threshold}",
        file=err,
    )
    if len(times) > 1 and np.any(np.diff(times) < 0):
        print("warning: timestamps go backwards somewhere; rows are scored in file order", file=err)
    top = [int(i) for i in np.argsort(-scores, kind="stable")[: max(args.top, 0)] if scores[i] > 0]
    for i in top:
        where = f"step from {raw[i]}" if args.arrivals else f"line {i + 2}: {raw[i]}"
        print(f"  {where}  score {scores[i]:.4f}", file=err)
