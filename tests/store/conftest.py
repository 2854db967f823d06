"""Fixtures of the store suite: the contract tests run once per backend.

Tests in this directory may be ``async def``: the ``pytest_pyfunc_call`` hook below runs
them with ``asyncio.run`` (no pytest-asyncio needed). A ``store`` argument is opened
inside that event loop and shut down after the test; ``make_store`` opens more stores
(on the same data: a restart; or with other settings) that are shut down the same way.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures.nats import nats_store_config
from store_factory import StoreFactory

BACKENDS = ["embedded", "nats"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    if backend == "nats":
        base = nats_store_config(request.getfixturevalue("nats_server"))
    else:
        base = {"backend": "embedded", "embedded": {"path": str(tmp_path / "data")}}
    return StoreFactory(backend, base)


@pytest.fixture
def store(make_store: StoreFactory) -> StoreFactory:
    """A started store (opened by the hook below, inside the test's event loop)."""
    return make_store


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(_run(pyfuncitem.obj, {name: pyfuncitem.funcargs[name] for name in names}))
    return True


async def _run(test: Callable[..., Awaitable[None]], args: dict[str, Any]) -> None:
    factories = list(dict.fromkeys(v for v in args.values() if isinstance(v, StoreFactory)))
    try:
        if "store" in args and isinstance(args["store"], StoreFactory):
            args["store"] = await args["store"]()
        await test(**args)
    finally:
        for factory in factories:
            await factory.close_all()
