"""The `keiko` command line: run keiko, check its config, look into its store.

Each command group lives in keiko/commands/ and has ``register(subparsers)``, which adds
its parsers and sets ``func`` (``(argparse.Namespace) -> int``, the exit status) with
``set_defaults``. Exit status: 0 ok, 1 runtime failure, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from keiko import __version__
from keiko.commands import config as config_cmd
from keiko.commands import run as run_cmd
from keiko.commands import store as store_cmd
from keiko.commands.common import HelpFormatter
from keiko.config import ConfigError
from keiko.errors import KeikoError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

EPILOG = """\
examples:
  keiko run                              start with the defaults (embedded store in ./keiko-data)
  keiko run --config keiko.yaml          start with a config file (or KEIKO_CONFIG=keiko.yaml)
  keiko config check keiko.yaml          validate a config file
  keiko config defaults > keiko.yaml     a complete config file to start from
  keiko store stats                      records, bytes and consumer lag per stream

Run 'keiko COMMAND --help' for the options of a command."""

# Command groups that live outside keiko/commands/ and may be absent from an installation.
OPTIONAL_COMMANDS = ("keiko.demo.command",)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command (optional ones only when their module is installed)."""
    parser = argparse.ArgumentParser(
        prog="keiko",
        formatter_class=HelpFormatter,
        epilog=EPILOG,
        description="keiko-backbone: an observability and AIOps pipeline. `keiko run` receives "
        "OTLP traces, metrics and logs, keeps them in a durable streaming store and serves an "
        "HTTP API with health, metrics and the stored records.",
    )
    parser.add_argument("--version", action="version", version=f"keiko {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in (run_cmd, config_cmd, store_cmd):
        module.register(subparsers)
    for name in OPTIONAL_COMMANDS:
        try:
            optional = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise  # the module exists but one of its imports is missing: a real bug
            continue
        optional.register(subparsers)
    # Stage packages add their own commands (e.g. `keiko ebpf`) through this entry point.
    for ep in entry_points(group="keiko.commands"):
        ep.load()(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        status = func(args)
    except ConfigError as exc:
        print(f"keiko: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (KeikoError, OSError) as exc:
        print(f"keiko: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    return EXIT_OK if status is None else int(status)


if __name__ == "__main__":
    sys.exit(main())
