"""`keiko store stats | trace-ids | tail`: look into the store, also while `keiko run` runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TextIO

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from keiko import humanize
from keiko.api.render import record_json, stats_json
from keiko.api.streams import END_OF_TIME_NS
from keiko.commands.common import HelpFormatter, add_config_option, load
from keiko.config import KeikoConfig
from keiko.records import Kind, Record, Stream
from keiko.store import open_store
from keiko.store.base import Store, StoreStats, StreamStats

PAGE = 100  # records per read: ~25 MB of 1,000-span batches, so memory stays flat

EPILOG = """\
examples:
  keiko store stats
  keiko store stats --json --config keiko.yaml
  keiko store trace-ids > ids.txt
  keiko store tail events --follow"""


def register(subparsers: Any) -> None:
    """Add `keiko store` and its subcommands."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "store",
        help="inspect the store: stats, stored trace ids, records",
        description="Inspect keiko's store (the one in the config). Works while `keiko run` "
        "runs: the embedded store is then opened read-only.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND", required=True)

    stats = sub.add_parser(
        "stats",
        help="records, items, bytes, oldest/newest and consumer lag per stream",
        description="Per stream: records, items (spans, points, log records), bytes, the "
        "oldest and newest record times and every consumer group's committed offset and lag.",
        epilog="examples:\n  keiko store stats\n  keiko store stats --json | jq .streams",
        formatter_class=HelpFormatter,
    )
    add_config_option(stats)
    stats.add_argument("--json", action="store_true", help="print the stats as JSON")
    stats.set_defaults(func=lambda args: _run(args, _stats))

    ids = sub.add_parser(
        "trace-ids",
        help="print every stored trace id (hex, one per line)",
        description="Decode the stored OTLP trace batches of stream 'traces' and print each "
        "trace id once per record, as hex. Input for `otlp_load.py --check-ids`.",
        epilog="examples:\n  keiko store trace-ids > ids.txt\n"
        "  otlp_load.py --check-ids acked.json ids.txt   # durability check",
        formatter_class=HelpFormatter,
    )
    add_config_option(ids)
    ids.add_argument(
        "--since",
        metavar="OFFSET",
        type=int,
        default=1,
        help="start at this record offset (default: the first)",
    )
    ids.set_defaults(func=lambda args: _run(args, _trace_ids))

    tail = sub.add_parser(
        "tail",
        help="print the last records of a stream as JSON lines",
        description="Print records of STREAM as JSON lines (payloads decoded: OTLP as "
        "OTLP/JSON, events as JSON).",
        epilog="examples:\n  keiko store tail traces -n 1\n  keiko store tail events --follow",
        formatter_class=HelpFormatter,
    )
    add_config_option(tail)
    tail.add_argument("stream", metavar="STREAM", help="stream name, e.g. traces or events")
    tail.add_argument(
        "-n",
        "--lines",
        type=int,
        default=10,
        metavar="N",
        help="start N records before the end (default: 10)",
    )
    tail.add_argument(
        "--from",
        dest="from_offset",
        type=int,
        metavar="OFFSET",
        help="start at this offset instead",
    )
    tail.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep printing records as they are appended (Ctrl-C stops)",
    )
    tail.set_defaults(func=lambda args: _run(args, _tail))


Action = Callable[[Store, argparse.Namespace, TextIO], Awaitable[int]]


def _run(args: argparse.Namespace, action: Action) -> int:
    config = load(args)

    async def main() -> int:
        async with opened(config) as store:
            return await action(store, args, sys.stdout)

    try:
        return asyncio.run(main())
    except BrokenPipeError:  # e.g. `keiko store trace-ids | head`: not an error
        # Point stdout at /dev/null so that the interpreter's final flush does not fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


@asynccontextmanager
async def opened(config: KeikoConfig) -> AsyncIterator[Store]:
    """The configured store opened for reading (also while `keiko run` owns it), then closed.

    Read-only, so that looking creates nothing: no data directory, no consumer group.
    """
    store = open_store(config.store, read_only=True)
    await store.start()
    try:
        yield store
    finally:
        await store.shutdown()


# -- stats --------------------------------------------------------------------------------


def _group_lines(stream: StreamStats) -> list[str]:
    return [
        f"  group {g.group}: committed {g.committed:,}, lag {g.lag_records:,} records"
        + (f" ({humanize.approx_size(g.lag_bytes)})" if g.lag_bytes is not None else "")
        for g in stream.groups
    ]


def format_stats(stats: StoreStats) -> str:
    """The `keiko store stats` table."""
    disk = f", {humanize.approx_size(stats.disk_bytes)} on disk" if stats.disk_bytes else ""
    head = ("STREAM", "RECORDS", "ITEMS", "BYTES", "OFFSETS", "OLDEST", "NEWEST")
    rows = [head]
    for s in stats.streams:
        rows.append(
            (
                s.name,
                f"{s.records:,}",
                "-" if s.items is None else f"{s.items:,}",
                humanize.approx_size(s.bytes),
                f"{s.first_offset}-{s.last_offset}",
                humanize.rfc3339(s.oldest_time_ns) or "-",
                humanize.rfc3339(s.newest_time_ns) or "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [f"store: {stats.backend} at {stats.location}{disk}", ""]
    if not stats.streams:
        return lines[0] + "\nno streams: nothing has been stored there yet\n"
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            continue
        stream = stats.streams[i - 1]
        lines += _group_lines(stream)
        if stream.expired_unconsumed:
            lines.append(
                f"  {stream.expired_unconsumed:,} records expired before a group read them"
            )
    return "\n".join(lines) + "\n"


async def _stats(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    stats = await store.stats()
    if args.json:
        out.write(json.dumps(stats_json(stats), indent=2) + "\n")
    else:
        out.write(format_stats(stats))
    return 0


# -- trace ids ----------------------------------------------------------------------------


def trace_ids(record: Record) -> set[bytes]:
    """The distinct trace ids in one stored OTLP trace batch."""
    if record.kind != Kind.OTLP_TRACES:
        return set()
    request = ExportTraceServiceRequest.FromString(record.payload)
    return {
        span.trace_id for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans
    }


async def _trace_ids(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    stream = Stream.TRACES.value
    if stream not in await store.streams():
        return 0
    end = await store.offset_at(stream, END_OF_TIME_NS)  # what exists now; later ones wait
    position = max(1, args.since)
    while position < end:
        records = await store.read(stream, position, min(PAGE, end - position))
        if not records:
            break
        chunk = [tid.hex() for record in records for tid in trace_ids(record)]
        if chunk:
            out.write("\n".join(chunk) + "\n")
        position = records[-1].offset + 1
    out.flush()
    return 0


# -- tail ---------------------------------------------------------------------------------


async def _tail(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    if args.stream not in await store.streams():
        print(
            f"keiko: no stream {args.stream!r}; streams: {', '.join(await store.streams())}",
            file=sys.stderr,
        )
        return 1
    end = await store.offset_at(args.stream, END_OF_TIME_NS)
    position = args.from_offset if args.from_offset is not None else max(1, end - args.lines)
    while True:
        records = await store.read(args.stream, position, PAGE)
        for record in records:
            out.write(json.dumps(record_json(record)) + "\n")
        out.flush()
        if records:
            position = records[-1].offset + 1
            continue
        if not args.follow:
            return 0
        await store.wait(args.stream, position - 1, timeout=1.0)
