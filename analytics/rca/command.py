"""`keiko rca`: root-cause analysis, offline, on an exported case directory."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from analytics.rca.model import Candidate, Case

EXIT_OK, EXIT_USAGE = 0, 2
EVIDENCE_LINES = 3  # per candidate in the table; --json carries all of them

DESCRIPTION = """\
Rank the most likely root causes of an incident from an exported case directory, with
the same ranking keiko's live RCA uses. A case directory holds:

  metrics.csv   header time,service,metric,value[,instance]: one metric point per row,
                time in unix seconds, instance the pod or node (optional); it should
                cover a normal period before --at and the problem after it
  spans.csv     optional: trace_id,span_id,parent_span_id,service,name,start_ns,end_ns
                [,status] (parent_span_id empty for roots)
  spans.json    optional, instead of spans.csv: an OTLP/JSON ExportTraceServiceRequest
  graph.csv     optional: header source,target, one known call edge caller -> callee

Without spans or a graph the ranking uses the metrics alone. --at is when the problem
started (unix seconds or ISO 8601; no zone means UTC): points before it are the normal
behaviour, points from it on the problem.

Output, best first: rank, service, instance (pod or node, when known), score (higher is
more likely; compare scores within one answer only), then the strongest evidence lines
(a deviating series, an erroring or slow span, the onset order) and the path from the
symptom to the candidate. --json prints a list, best first, of objects with service,
score, instance (when known), path and evidence (kind, summary, weight and details such
as the series and trace ids). A one-line summary (series, spans, edges read; ranking
time) goes to stderr. Exit status 0 on an answer, 2 on unreadable input."""

EPILOG = """\
examples:
  keiko rca ./incident-42 --at 1700000000
  keiko rca ./incident-42 --at 2023-11-14T22:13:20Z --top 3
  keiko rca ./incident-42 --at 1700000000 --json | jq '.[0].service'
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `keiko rca` to the CLI."""
    from keiko.commands.common import HelpFormatter, positive_int

    parser = subparsers.add_parser(
        "rca",
        help="rank the root causes of an incident in an exported case directory",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("case_dir", metavar="CASE_DIR", help="the case directory (see above)")
    parser.add_argument(
        "--at",
        required=True,
        type=instant,
        metavar="TIME",
        help="when the problem started: unix seconds or ISO 8601 (UTC if no zone)",
    )
    parser.add_argument(
        "--top", type=positive_int, default=5, metavar="K", help="candidates to print (default: 5)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run_rca)


def instant(text: str) -> float:
    """An argparse type: unix seconds or ISO 8601 (UTC if no zone)."""
    from analytics.csvseries import parse_timestamp

    try:
        return parse_timestamp(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{exc}; e.g. 1700000000 or 2023-11-14T22:13:20Z"
        ) from None


def run_rca(args: argparse.Namespace) -> int:
    """Read the case, rank, print; exit 2 on unreadable input."""
    from analytics.rca.caseio import CaseError, read_case
    from analytics.rca.rank import rank

    err = sys.stderr
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            case = read_case(args.case_dir)
    except CaseError as exc:
        print(f"keiko rca: {exc}", file=err)
        return EXIT_USAGE
    for warning in caught:
        print(f"keiko rca: warning: {warning.message}", file=err)
    problem = _check_window(case, args.at)
    if problem:
        print(f"keiko rca: {args.case_dir}: {problem}", file=err)
        return EXIT_USAGE
    started = time.perf_counter()
    candidates = rank(case, args.at, top=args.top)
    elapsed = time.perf_counter() - started
    if args.json:
        json.dump([c.to_json() for c in candidates], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(candidates, sys.stdout)
    print(_summary(case, elapsed), file=err)
    return EXIT_OK


def _check_window(case: Case, at: float) -> str:
    """Why --at cannot split this case into normal and problem periods ("" when it can)."""
    times = case.metrics["time"]
    first, last = float(times.min()), float(times.max())
    if at <= first:
        return (
            f"--at {at:.0f} is at or before the first metric point ({first:.0f}); there is no "
            "normal period to compare with: give a later --at or export an earlier start"
        )
    if at > last:
        return (
            f"--at {at:.0f} is after the last metric point ({last:.0f}); there is nothing of "
            "the problem to rank: give an earlier --at or export a later end"
        )
    return ""


def _summary(case: Case, elapsed: float) -> str:
    frame = case.metrics
    series = len(frame.groupby(["service", "metric", "instance"], sort=False).size())
    spans = len(case.spans) if case.spans is not None else 0
    return (
        f"read {series} series ({len(frame)} points) from {frame['service'].nunique()} "
        f"services, {spans} spans, {len(case.graph)} edges; ranked in {elapsed * 1000:.1f} ms"
    )


def print_table(candidates: list[Candidate], out: TextIO) -> None:
    """The human-readable answer: one block per candidate, best first."""
    if not candidates:
        out.write("no candidate: nothing deviates from the normal period\n")
        return
    width = max(len(c.service) for c in candidates)
    inst = max([len(c.instance) for c in candidates] + [len("instance")])
    out.write(f"{'rank':>4}  {'service':<{width}}  {'instance':<{inst}}  {'score':>9}\n")
    for number, c in enumerate(candidates, start=1):
        instance = c.instance or "-"
        out.write(f"{number:>4}  {c.service:<{width}}  {instance:<{inst}}  {c.score:>9.4g}\n")
        strongest = sorted(c.evidence, key=lambda e: -abs(e.weight))[:EVIDENCE_LINES]
        for e in strongest:
            out.write(f"{'':6}- {e.kind}: {e.summary}\n")
        if c.path:
            out.write(f"{'':6}path: {' -> '.join(c.path)}\n")
