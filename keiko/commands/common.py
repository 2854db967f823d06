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


def duration(text: str) -> float:
    """An argparse type: seconds, as a number or a duration such as 90s, 5m or 1h."""
    from keiko.units import parse_duration

    try:
        return parse_duration(text if not text.replace(".", "", 1).isdigit() else float(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_duration(text: str) -> float:
    """An argparse type: a duration above 0 s."""
    seconds = duration(text)
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be longer than 0 s")
    return seconds


def add_arrivals_option(parser: argparse.ArgumentParser) -> None:
    """``--arrivals STEP`` of the offline tools: read a request log as a rate series."""
    parser.add_argument(
        "--arrivals",
        type=positive_duration,
        default=None,
        metavar="STEP",
        help="IN.csv lists one request per row (a 'timestamp' column and no value needed, as "
        "in an access log or a request trace): count the rows per STEP (10s, 1m) into "
        "requests per second; the partial first and last steps are dropped",
    )
