"""`keiko run`: start the store, the components and the HTTP API; serve until stopped."""

from __future__ import annotations

import argparse
import logging
from typing import TYPE_CHECKING, Any

from keiko import __version__
from keiko.commands.common import HelpFormatter, add_config_option, config_path, load
from keiko.logs import setup_logging

if TYPE_CHECKING:
    from keiko.config import KeikoConfig

EPILOG = """\
Stops gracefully on SIGTERM or Ctrl-C (within api.shutdown_grace; a second signal exits at
once) and reloads the config file on SIGHUP.

examples:
  keiko run
  keiko run --config /etc/keiko/keiko.yaml
  KEIKO_STORE__EMBEDDED__PATH=/var/lib/keiko keiko run
  OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 python my_app.py   # send telemetry"""


# The roles keiko runs as separate processes when it outgrows one (every component of the
# other sections is switched off); `keiko run` is all of them in one process.
ROLES = {
    "agent": (
        ("receivers", "probes"),
        "the node agent: OTLP receivers and eBPF probes, writing to the store",
    ),
    "analyze": (
        ("analytics",),
        "analysis: span metrics, service graph, detection, incidents and RCA, forecasting",
    ),
    "alert": (
        ("alerting",),
        "alerting: the Alertmanager API, routing, SLOs, notifications, remediation",
    ),
}


def register(subparsers: Any) -> None:
    """Add `keiko run` and the role commands `keiko agent`, `keiko analyze`, `keiko alert`."""
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
    for role, (sections, what) in ROLES.items():
        role_parser = subparsers.add_parser(
            role,
            help=f"run only {what.split(':')[0]} (a role of `keiko run`)",
            description=f"Run keiko as {what}. The same config file as `keiko run`; the "
            f"components outside {', '.join(sections)} are switched off. Roles share data "
            "only through the store, so they need the same store (NATS JetStream when they "
            "run on different machines).",
            epilog=EPILOG.replace("keiko run", f"keiko {role}"),
            formatter_class=HelpFormatter,
        )
        add_config_option(role_parser)
        role_parser.set_defaults(func=run, role=role)


def only_sections(config: KeikoConfig, sections: tuple[str, ...]) -> KeikoConfig:
    """``config`` with every component outside ``sections`` switched off."""
    from keiko.components import SECTIONS, registry

    for section, name in registry():
        if section in SECTIONS and section not in sections:
            built = getattr(config, section)
            built[name] = config.component(section, name).model_copy(update={"enabled": False})
    return config


def run(args: argparse.Namespace) -> int:
    """Load the config (ConfigError: exit 2), set up logging and serve until stopped."""
    from keiko.process import run as run_process  # keeps `keiko --help` light

    path = config_path(args)
    config = load(args)
    role = getattr(args, "role", None)
    if role is not None:
        config = only_sections(config, ROLES[role][0])
    setup_logging(config.logging)
    logging.getLogger("keiko").info(
        "keiko %s starting%s with %s",
        __version__,
        f" as {role}" if role else "",
        f"config {path}" if path else "the default config",
    )
    return run_process(config, path)
