"""Fixtures shared by the whole suite (helpers live in tests/fixtures/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fixtures.keiko import KeikoFactory, KeikoProcess
from fixtures.nats import NatsServer


@pytest.fixture
def keiko_process(tmp_path: Path) -> Iterator[KeikoFactory]:
    """A factory of started `keiko run` subprocesses; every one is stopped at teardown.

    ``keiko_process(overrides=None, *, start=True, env=None, verify=True, name="keiko")``
    """
    made: list[KeikoProcess] = []

    def make(
        overrides: dict[str, Any] | None = None,
        *,
        start: bool = True,
        env: dict[str, str] | None = None,
        verify: Any = True,
        name: str | None = None,
    ) -> KeikoProcess:
        kp = KeikoProcess(tmp_path / (name or f"keiko{len(made) or ''}"), overrides, env, verify)
        made.append(kp)
        return kp.start() if start else kp

    yield make
    for kp in made:
        if kp.running:
            try:
                kp.stop(timeout=10)
            except AssertionError:
                kp.kill()
        # Shown by pytest only when the test failed.
        print(f"--- {kp.log_path} ---\n{kp.log_text()[-4000:]}")


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server for the session; each test takes its own stream prefix in it
    (fixtures.nats.nats_store_config)."""
    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.stop()
