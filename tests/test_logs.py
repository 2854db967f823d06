"""keiko/logs.py: one line per event, text or JSON, extras kept, libraries kept quiet."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from keiko.config import LoggingConfig
from keiko.logs import setup_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def emit(fmt: str, level: str = "info") -> str:
    out = io.StringIO()
    setup_logging(LoggingConfig(format=fmt, level=level), out)  # type: ignore[arg-type]
    log = logging.getLogger("keiko.test")
    log.info("reloaded %s", "keiko.yaml", extra={"applied": ["a", "b"], "restart": []})
    log.debug("hidden unless debug")
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        log.exception("failed")
    logging.getLogger("uvicorn.error").info("Started server process")
    return out.getvalue()


def test_text_lines(restore_logging: None) -> None:
    lines = emit("text").splitlines()
    assert len(lines) == 2, lines  # no debug, no uvicorn chatter, the traceback on its line
    assert lines[0].endswith("INFO    keiko.test: reloaded keiko.yaml applied=a,b restart=-")
    assert lines[0][:4].isdigit() and lines[0][23] == "Z"
    assert "ERROR   keiko.test: failed | Traceback" in lines[1] and "boom | second line" in lines[1]


def test_json_lines(restore_logging: None) -> None:
    events = [json.loads(line) for line in emit("json", "debug").splitlines()]
    assert [e["message"] for e in events] == [
        "reloaded keiko.yaml",
        "hidden unless debug",
        "failed",
    ]
    assert events[0]["applied"] == ["a", "b"] and events[0]["level"] == "info"
    assert events[0]["logger"] == "keiko.test" and events[0]["time"].endswith("Z")
    assert "ValueError: boom" in events[2]["exception"]


def test_setup_twice_does_not_duplicate_lines(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging(LoggingConfig(), out)
    setup_logging(LoggingConfig(), out)
    logging.getLogger("keiko.test").warning("once")
    assert out.getvalue().count("once") == 1
