"""`keiko ebpf check`: load every probe and say, per probe, whether it works and if not why."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ebpf.diagnose import ProbeCheck

EXIT_OK, EXIT_FAILURE = 0, 1

DESCRIPTION = """\
Load every registered eBPF probe into the kernel (then detach it) and print, per probe,
OK or FAILED with the reason and the fix: not Linux, not root and no CAP_BPF+CAP_PERFMON
or CAP_SYS_ADMIN, bcc not importable, kernel headers missing, tracefs not mounted, a
tracepoint missing. Exit status 0 when every probe loads, 1 otherwise."""

EPILOG = """\
examples:
  sudo keiko ebpf check
  keiko ebpf check --json | jq '.probes[] | select(.ok | not)'
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `keiko ebpf check` to the CLI."""
    from keiko.commands.common import HelpFormatter

    parser = subparsers.add_parser(
        "ebpf",
        help="eBPF node probes: check that they load here",
        description=DESCRIPTION,
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    check = sub.add_parser(
        "check",
        help="load every probe and report why any fails",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    check.add_argument("--json", action="store_true", help="machine-readable output")
    check.set_defaults(func=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Load, report, exit 1 if any probe failed."""
    from ebpf.config import MapsConfig
    from ebpf.diagnose import Host, check_probe, diagnose
    from ebpf.registry import discover

    host = Host.current()
    problems = diagnose(host)
    factories, broken = discover()
    maps = MapsConfig().model_dump()
    results = [check_probe(f(dict(maps)), problems, host) for _, f in sorted(factories.items())]
    modules = [{"module": m, "error": e} for m, e in sorted(broken.items())]
    failed = any(not r.ok for r in results) or bool(modules) or not results
    if args.json:
        body = {
            "ok": not failed,
            "host": [{"why": p.why, "fix": p.fix} for p in problems],
            "probes": [asdict(r) for r in results],
            "broken_modules": modules,
        }
        print(json.dumps(body, indent=2))
    else:
        _print_table(results, modules)
    return EXIT_FAILURE if failed else EXIT_OK


def _print_table(results: list[ProbeCheck], modules: list[dict[str, str]]) -> None:
    out = sys.stdout
    width = max([len(r.probe) for r in results] + [5])
    for r in results:
        if r.ok:
            print(f"{r.probe:<{width}}  OK      loaded in {r.load_seconds:.2f}s", file=out)
        else:
            print(f"{r.probe:<{width}}  FAILED  {r.why}", file=out)
            if r.fix:
                print(f"{'':<{width}}          fix: {r.fix}", file=out)
    for m in modules:
        print(f"{m['module']}: FAILED to import: {m['error']}", file=out)
    if not results:
        print("no eBPF probes are registered in this installation", file=out)
    ok = sum(r.ok for r in results)
    print(f"{ok}/{len(results)} probes load on this host", file=out)
