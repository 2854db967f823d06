"""`keiko config check | defaults | schema | docs`: validate and document the config."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from keiko import configref
from keiko.commands.common import HelpFormatter
from keiko.components import SECTIONS
from keiko.config import KeikoConfig, load_config
from keiko.config.load import ENV_PREFIX, ENV_RESERVED
from keiko.listeners import listeners

EPILOG = """\
examples:
  keiko config check keiko.yaml
  KEIKO_API__ENDPOINT=0.0.0.0:8470 keiko config check keiko.yaml   # with an override
  keiko config defaults > keiko.yaml
  keiko config schema > keiko.schema.json
  keiko config docs > docs/config.md"""


def register(subparsers: Any) -> None:
    """Add `keiko config` and its subcommands."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "config",
        help="check a config file; print the defaults, the schema or the reference",
        description="Work with keiko's YAML config. Every key is optional; unknown keys are "
        "refused; KEIKO_SECTION__KEY=value environment variables override the file.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    sub = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND", required=True)
    check = sub.add_parser(
        "check",
        help="validate a config file (exit 2 and list the problems if invalid)",
        description="Validate FILE (with KEIKO_* environment overrides applied) and summarise "
        "what `keiko run` would start; on problems print each with its key and exit 2.",
        epilog="example:\n  keiko config check keiko.yaml",
        formatter_class=HelpFormatter,
    )
    check.add_argument("file", metavar="FILE", help="the YAML config file")
    check.set_defaults(func=check_config)
    for name, func, text, example in (
        (
            "defaults",
            print_defaults,
            "print a complete config with every default, as YAML",
            "keiko config defaults > keiko.yaml",
        ),
        (
            "schema",
            print_schema,
            "print the JSON schema of the config file",
            "keiko config schema > keiko.schema.json   # for editors and CI checks",
        ),
        (
            "docs",
            print_docs,
            "print the config reference as Markdown (docs/config.md)",
            "keiko config docs > docs/config.md",
        ),
    ):
        p = sub.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ".",
            epilog=f"example:\n  {example}",
            formatter_class=HelpFormatter,
        )
        p.set_defaults(func=func)


def _overrides() -> list[str]:
    return sorted(n for n in os.environ if n.startswith(ENV_PREFIX) and n not in ENV_RESERVED)


def summary(config: KeikoConfig) -> list[str]:
    """What `keiko run` would start with ``config``, one line each."""
    store = config.store
    if store.backend == "embedded":
        where = f"{store.embedded.path} (durability {store.embedded.durability.value})"
    else:
        where = ", ".join(store.nats.servers)
    lines = [f"store: {store.backend} at {where}"]
    for listener in listeners(config):
        lines.append(f"listen: {listener.name} on {listener.url}")
    auth = "on" if config.api.enabled and config.api.auth else "off"
    lines.append(f"api bearer auth: {auth}")
    enabled = [
        f"{section}.{name}"
        for section in SECTIONS
        for name, model in getattr(config, section).items()
        if getattr(model, "enabled", True)
    ]
    lines.append(f"components: {', '.join(enabled) or 'none'}")
    lines.append(f"logging: {config.logging.level}, {config.logging.format}")
    return lines


def check_config(args: argparse.Namespace) -> int:
    """`keiko config check FILE`."""
    config = load_config(args.file)  # ConfigError -> exit 2 with every problem
    overrides = _overrides()
    print(f"config OK: {args.file}" + (f" (with {', '.join(overrides)})" if overrides else ""))
    for line in summary(config):
        print(f"  {line}")
    return 0


def print_defaults(args: argparse.Namespace) -> int:
    """`keiko config defaults`."""
    sys.stdout.write(configref.defaults_yaml())
    return 0


def print_schema(args: argparse.Namespace) -> int:
    """`keiko config schema`."""
    sys.stdout.write(configref.schema_json())
    return 0


def print_docs(args: argparse.Namespace) -> int:
    """`keiko config docs`."""
    sys.stdout.write(configref.docs_markdown())
    return 0
