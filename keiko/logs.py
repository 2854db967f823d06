"""Logging setup: one line per event, as text for people or JSON for log shippers.

keiko logs lifecycle events (start, listening endpoints, reloads, shutdown, failures), never
one line per request: request outcomes are counted in Prometheus metrics instead.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from keiko.config import LoggingConfig

# LogRecord attributes that are not "extra" fields given by the caller.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

# Libraries whose INFO lines repeat what keiko's own start-up summary says, or log per request
# (httpx: every notification POST).
_QUIET = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "grpc",
    "nats",
    "asyncio",
    "httpx",
    "httpcore",
    "apprise",
    "kubernetes",
)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _timestamp(created: float) -> str:
    ms = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{ms:03d}Z"


def _text(value: Any) -> str:
    if isinstance(value, list | tuple | set):
        return ",".join(str(v) for v in value) or "-"
    return str(value)


class TextFormatter(logging.Formatter):
    """``2024-05-01T10:00:00.123Z INFO keiko.process: message key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        line = (
            f"{_timestamp(record.created)} {record.levelname:<7} {record.name}: "
            f"{record.getMessage()}"
        )
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={_text(v)}" for k, v in extras.items())
        if record.exc_info:
            # Keep one event on one line so that line-based shippers do not split it.
            line += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        doc.update(_extras(record))
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(config: LoggingConfig, stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stderr) in the configured format and level.

    Safe to call again (on reload): the handler is replaced, not added twice.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if config.format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_keiko", False):
            root.removeHandler(old)
    handler._keiko = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    level = getattr(logging, config.level.upper())
    root.setLevel(level)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
