"""`keiko run`: start the store, the components and the HTTP API; serve until stopped."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from keiko import __version__
from keiko.commands.common import HelpFormatter, add_config_option, config_path, load
from keiko.logs import setup_logging

EPILOG = """\
Stops gracefully on SIGTERM or Ctrl-C (within api.shutdown_grace; a second signal exits at
once) and reloads the config file on SIGHUP.

examples:
  keiko run
  keiko run --config /etc/keiko/keiko.yaml
  KEIKO_STORE__EMBEDDED__PATH=/var/lib/keiko keiko run
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 python my_app.py   # send telemetry"""


def register(subparsers: Any) -> None:
    """Add `keiko run`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run",
        help="run keiko: OTLP receivers, the store and the HTTP API",
        description="Run keiko in the foreground: open the store, start every enabled "
        "component (the OTLP receivers on :4317 gRPC and :4318 HTTP by default) and the HTTP "
        "API (:8470: /healthz, /readyz, /metrics, /api/v1/...).",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    add_config_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config (ConfigError: exit 2), set up logging and serve until stopped."""
    from keiko.process import run as run_process  # keeps `keiko --help` light

    path = config_path(args)
    config = load(args)
    setup_logging(config.logging)
    logging.getLogger("keiko").info(
        "keiko %s starting with %s", __version__, f"config {path}" if path else "the default config"
    )
    return run_process(config, path)
