"""keiko in-process with its real HTTP server on a free port, for API tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from fixtures.keiko import free_port, merge

from keiko.config import KeikoConfig
from keiko.config.load import validate
from keiko.process import Keiko
from keiko.records import Kind, NewRecord

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one async scenario on a fresh event loop."""
    return asyncio.run(coro)


def config(
    tmp_path: Path, overrides: dict[str, Any] | None = None, receivers: bool = False
) -> KeikoConfig:
    """Embedded store in ``tmp_path``, API on a free port, receivers off unless asked for."""
    base: dict[str, Any] = {
        "store": {"embedded": {"path": str(tmp_path / "data")}},
        "api": {"endpoint": "127.0.0.1:0", "shutdown_grace": "3s"},
        "receivers": {
            "otlp": {
                "enabled": receivers,
                "grpc": {"endpoint": f"127.0.0.1:{free_port()}"},
                "http": {"endpoint": f"127.0.0.1:{free_port()}"},
            }
        },
    }
    return validate(merge(base, overrides or {}), "test")


@asynccontextmanager
async def serving(
    tmp_path: Path, overrides: dict[str, Any] | None = None, receivers: bool = False
) -> AsyncIterator[Keiko]:
    """A started Keiko (``.api_url``, ``.store``, ``.api_state``); shut down on exit."""
    async with Keiko(config(tmp_path, overrides, receivers)) as keiko:
        yield keiko


def event(n: int) -> NewRecord:
    """A small keiko event record."""
    return NewRecord(Kind.EVENT_JSON, f'{{"n": {n}}}'.encode(), key=f"k{n}")
