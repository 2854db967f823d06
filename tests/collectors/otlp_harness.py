"""Test harness: the OTLP receiver on free loopback ports over a real embedded store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fixtures.keiko import merge
from google.protobuf.message import Message

from collectors.otlp.component import SPEC, OtlpReceiver
from collectors.otlp.config import OtlpReceiverConfig
from collectors.otlp.signals import SIGNALS
from keiko.components import Context
from keiko.config.model import KeikoConfig
from keiko.records import Record
from keiko.store import open_store
from keiko.store.base import Store
from keiko.store.config import StoreConfig
from keiko.telemetry import Telemetry

T = TypeVar("T")
REQUESTS = {s.stream.value: s.request for s in SIGNALS}
SERVICES = {s.name: s.grpc_service for s in SIGNALS}


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one async test scenario on a fresh event loop."""
    return asyncio.run(coro)


@dataclass
class Running:
    """A started receiver, its store and telemetry."""

    component: OtlpReceiver
    store: Store
    telemetry: Telemetry

    @property
    def grpc_target(self) -> str:
        assert self.component.grpc is not None
        return f"127.0.0.1:{self.component.grpc.port}"

    def http_url(
        self, path: str = "/v1/traces", scheme: str = "http", host: str = "127.0.0.1"
    ) -> str:
        assert self.component.http is not None
        return f"{scheme}://{host}:{self.component.http.port}{path}"

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the receiver's telemetry (0 when it was never counted)."""
        value = self.telemetry.registry.get_sample_value(name, labels)
        return value or 0.0

    async def records(self, stream: str) -> list[Record]:
        """Every record the store holds on ``stream``."""
        return await self.store.read(stream, 1, 10_000)

    async def requests(self, stream: str) -> list[Message]:
        """Every stored record of ``stream``, decoded as its Export*ServiceRequest."""
        cls = REQUESTS[stream]
        return [cls.FromString(r.payload) for r in await self.records(stream)]


def receiver_config(**overrides: Any) -> OtlpReceiverConfig:
    """The receiver's config on free loopback ports, with ``overrides`` merged in."""
    raw = {"grpc": {"endpoint": "127.0.0.1:0"}, "http": {"endpoint": "127.0.0.1:0"}}
    return OtlpReceiverConfig.model_validate(merge(raw, overrides))


def store_config(path: Path, **overrides: Any) -> StoreConfig:
    """An embedded store config under ``path`` with ``overrides`` merged in."""
    return StoreConfig.model_validate(merge({"embedded": {"path": str(path)}}, overrides))


@asynccontextmanager
async def running(
    tmp_path: Path, store: dict[str, Any] | None = None, wrap: Any = None, **overrides: Any
) -> AsyncIterator[Running]:
    """Start a store under ``tmp_path`` and the OTLP receiver on it; stop both afterwards.

    ``wrap``, if given, is applied to the started store (to inject failures).
    """
    real = open_store(store_config(tmp_path / "data", **(store or {})))
    await real.start()
    used = wrap(real) if wrap else real
    telemetry = Telemetry()
    ctx = Context(store=used, telemetry=telemetry, config=KeikoConfig())
    component = SPEC.factory(receiver_config(**overrides), ctx)
    assert isinstance(component, OtlpReceiver)
    try:
        await component.start()
        yield Running(component, real, telemetry)
    finally:
        await component.shutdown(time.monotonic() + 5)
        await real.shutdown(time.monotonic() + 5)
