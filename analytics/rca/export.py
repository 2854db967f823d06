"""`keiko export-case`: a time window of keiko's store written as a case directory, so that
`keiko rca` (or a colleague, or a bug report) can look at a past incident offline.

The metrics are decoded the way the detectors see them (rates, quantiles), the spans are
written as spans.csv, the call edges the spans show as graph.csv. The store is opened
read-only, so this works while `keiko run` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

DESCRIPTION = """\
Write the metrics and spans keiko's store holds for a time window as a case directory
(metrics.csv, spans.csv, graph.csv) that `keiko rca CASE_DIR --at T` reads. Give the
window with --since and --until (unix seconds or ISO 8601), or --incident ID to take the
window an incident's analysis read (from its latest `incident` event). It prints the
`keiko rca` command to run next, with --at set to the earliest anomaly onset in the window.
Exit status 0 on success, 2 on bad arguments or an empty window."""

EPILOG = """\
examples:
  keiko export-case --since 2026-11-24T04:00:00Z --until 2026-11-24T04:20:00Z -o ./incident
  keiko export-case --incident incident-46fb6b0f6fd5cdf2 -o ./incident
  keiko rca ./incident --at 1795492995
"""


def register(subparsers: Any) -> None:
    """Add `keiko export-case` to the CLI."""
    from analytics.rca.command import instant
    from keiko.commands.common import HelpFormatter, add_config_option, positive_int

    parser = subparsers.add_parser(
        "export-case",
        help="write a time window of the store as a case directory for keiko rca",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    add_config_option(parser)
    parser.add_argument("--since", type=instant, metavar="TIME", help="start of the window")
    parser.add_argument("--until", type=instant, metavar="TIME", help="end (default: now)")
    parser.add_argument("--incident", metavar="ID", help="the window of this incident")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="case directory")
    parser.add_argument(
        "--max-records",
        type=positive_int,
        default=50_000,
        metavar="N",
        help="metric records to read at most (the newest; default: %(default)s)",
    )
    parser.add_argument(
        "--max-spans",
        type=positive_int,
        default=500_000,
        metavar="N",
        help="spans to read at most (the newest; default: %(default)s)",
    )
    parser.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    """Read the window, write the case, say what to run next."""
    from keiko.commands.common import load

    if (args.incident is None) == (args.since is None):
        print("keiko export-case: give either --since (and --until) or --incident", file=sys.stderr)
        return 2
    return asyncio.run(_export(args, load(args)))


async def _export(args: argparse.Namespace, config: Any) -> int:
    import time

    from analytics.rca.caseio import write_case
    from analytics.rca.fromstore import read_window
    from analytics.rca.graph import CallGraph
    from keiko.commands.store import opened
    from keiko.records import Stream

    async with opened(config) as store:
        if args.incident is not None:
            found = await _incident_window(store, args.incident)
            if found is None:
                print(
                    f"keiko export-case: no analysed incident {args.incident!r} on the events "
                    "stream (GET /api/v1/incidents lists them)",
                    file=sys.stderr,
                )
                return 2
            since, until = found
        else:
            since, until = args.since, args.until if args.until is not None else time.time()
        window = await read_window(store, since, until, args.max_records, args.max_spans)
        onsets = [
            o
            for e in await _events(store, Stream.EVENTS, since, until)
            if e.get("type") == "anomaly" and (o := e.get("onset_unix_nano"))
        ]
    case = window.case
    if case.metrics.empty:
        print(
            f"keiko export-case: no metric points between {since:.0f} and {until:.0f}",
            file=sys.stderr,
        )
        return 2
    if case.spans is not None:
        graph = CallGraph()
        graph.add_spans(case.spans)
        case.graph = sorted((a, b) for a, callees in graph.callees.items() for b in callees)
    write_case(args.output, case)
    print(
        f"wrote {args.output}: {window.series} series ({len(case.metrics)} points), "
        f"{window.spans} spans, {len(case.graph)} call edges"
        + (f"; truncated: {', '.join(window.truncated)}" if window.truncated else ""),
        file=sys.stderr,
    )
    at = min(onsets) / 1e9 if onsets else (since + until) / 2
    why = "the earliest anomaly onset" if onsets else "the middle of the window (no anomaly)"
    print(f"next: keiko rca {args.output} --at {at:.0f}    # {why}")
    return 0


async def _events(store: Any, stream: str, since: float, until: float) -> list[dict[str, Any]]:
    offset = await store.offset_at(stream, int(since * 1e9))
    out: list[dict[str, Any]] = []
    while True:
        page = await store.read(stream, offset, 500)
        for record in page:
            if record.time_ns > until * 1e9:
                return out
            try:
                out.append(json.loads(record.payload))
            except ValueError:
                continue
        if len(page) < 500:
            return out
        offset = page[-1].offset + 1


async def _incident_window(store: Any, incident: str) -> tuple[float, float] | None:
    """The window of the latest analysed version of ``incident``."""
    from keiko.records import Stream

    latest = None
    for event in await _events(store, Stream.EVENTS, 0, float("inf")):
        analysed = event.get("window", {}).get("start") is not None
        if event.get("type") == "incident" and event.get("id") == incident and analysed:
            latest = event["window"]
    return None if latest is None else (float(latest["start"]), float(latest["end"]))
