"""What the command modules share: help formatting and finding the config file."""

from __future__ import annotations

import argparse
import math
import os
from typing import Any

from keiko.config import KeikoConfig, load_config

CONFIG_ENV = "KEIKO_CONFIG"


class HelpFormatter(argparse.HelpFormatter):
    """Wraps one-paragraph descriptions; keeps multi-line text (the examples) as written."""

    def __init__(self, prog: str, **kwargs: Any) -> None:
        kwargs.setdefault("max_help_position", 32)
        super().__init__(prog, **kwargs)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``, defaulting to $KEIKO_CONFIG, else the built-in defaults."""
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        default=None,
        help=f"YAML config file (default: ${CONFIG_ENV}, else the built-in defaults)",
    )


def config_path(args: argparse.Namespace) -> str | None:
    """The config file given by ``--config`` or $KEIKO_CONFIG (None: defaults)."""
    path: str | None = args.config or os.environ.get(CONFIG_ENV) or None
    return path


def load(args: argparse.Namespace) -> KeikoConfig:
    """The validated config for this command (raises ConfigError)."""
    return load_config(config_path(args))


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value
