"""Test harness: the eBPF agent component over a real embedded store, and a v2 cgroup
of the test's own holding a child process that makes real kernel activity."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from ebpf.attribution import v2_root
from ebpf.component import SPEC, EbpfAgent
from ebpf.config import EbpfConfig
from keiko.components import Context
from keiko.config.model import KeikoConfig
from keiko.records import Kind
from keiko.store import open_store
from keiko.store.base import Store
from keiko.store.config import StoreConfig
from keiko.telemetry import Telemetry


@dataclass
class Running:
    """A started agent, its store and telemetry."""

    agent: EbpfAgent
    store: Store
    telemetry: Telemetry

    async def metrics(self) -> list[ExportMetricsServiceRequest]:
        records = await self.store.read("metrics", 1, 10_000)
        assert all(r.kind == Kind.OTLP_METRICS for r in records)
        return [ExportMetricsServiceRequest.FromString(r.payload) for r in records]

    def sample(self, name: str, **labels: str) -> float | None:
        return self.telemetry.registry.get_sample_value(name, labels)


@asynccontextmanager
async def running(tmp_path: Path, **overrides: Any) -> AsyncIterator[Running]:
    """Start a store under ``tmp_path`` and the agent (interval 1 s) on it."""
    store = open_store(StoreConfig.model_validate({"embedded": {"path": str(tmp_path / "d")}}))
    await store.start()
    telemetry = Telemetry()
    ctx = Context(store=store, telemetry=telemetry, config=KeikoConfig())
    config = EbpfConfig.model_validate({"interval": "1s", **overrides})
    agent = SPEC.factory(config, ctx)
    assert isinstance(agent, EbpfAgent)
    try:
        await agent.start()
        yield Running(agent, store, telemetry)
    finally:
        await agent.shutdown(time.monotonic() + 10)
        await store.shutdown(time.monotonic() + 5)


@contextlib.contextmanager
def v2_cgroup(name: str) -> Iterator[Path]:
    """A child cgroup of the v2 hierarchy's root, removed afterwards (needs root)."""
    root = v2_root()
    assert root is not None, "no cgroup v2 hierarchy mounted"
    path = root / f"{name}-{os.getpid()}"
    path.mkdir()
    try:
        yield path
    finally:
        for _ in range(50):  # rmdir fails while a (dying) task is still inside
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.05)


# A child that sleeps and wakes (context switches, run-queue waits) for `seconds`.
SLEEPER = "import time\nend = time.time() + {seconds}\nwhile time.time() < end: time.sleep(0.0005)"


@contextlib.contextmanager
def busy_child_in(cgroup: Path, seconds: float) -> Iterator[subprocess.Popen[bytes]]:
    """Start a sleeper child and move it into ``cgroup`` before it begins its loop."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sys.stdin.readline()\n" + SLEEPER.format(seconds=seconds),
        ],
        stdin=subprocess.PIPE,
    )
    try:
        (cgroup / "cgroup.procs").write_text(str(child.pid))
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
        yield child
    finally:
        child.kill()
        child.wait()
