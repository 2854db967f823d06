"""The OTLP receiver component: builds both transports from `receivers.otlp` and runs them."""

from __future__ import annotations

import asyncio
import time

from collectors.otlp.config import OtlpReceiverConfig
from collectors.otlp.grpc_server import GrpcReceiver
from collectors.otlp.http_server import HttpReceiver
from collectors.otlp.ingest import Ingest
from collectors.otlp.signals import SIGNALS
from keiko.components import ComponentSpec, Context
from keiko.security import TokenCheck


class OtlpReceiver:
    """OTLP/gRPC and OTLP/HTTP on one event loop, both feeding the store through :class:`Ingest`."""

    name = "otlp"

    def __init__(self, config: OtlpReceiverConfig, ctx: Context) -> None:
        self.config = config
        limit = config.max_request_bytes
        self._ingests = [Ingest(s, ctx.store, ctx.telemetry, limit) for s in SIGNALS]
        auth = TokenCheck(config.auth)
        self.grpc: GrpcReceiver | None = None
        self.http: HttpReceiver | None = None
        if config.grpc.enabled:
            self.grpc = GrpcReceiver(config.grpc, self._ingests, auth, limit)
        if config.http.enabled:
            self.http = HttpReceiver(config.http, self._ingests, auth, limit)

    async def start(self) -> None:
        """Bind and serve both transports (whichever are enabled)."""
        try:
            if self.grpc is not None:
                await self.grpc.start()
            if self.http is not None:
                await self.http.start()
        except BaseException:
            await self.shutdown(time.monotonic())
            raise

    async def shutdown(self, deadline: float) -> None:
        """Refuse new requests, let running ones finish (until ``deadline``), close. Idempotent."""
        for ingest in self._ingests:
            ingest.closing = True
        stops = [t.shutdown(deadline) for t in (self.grpc, self.http) if t is not None]
        await asyncio.gather(*stops)


def build(config: OtlpReceiverConfig, ctx: Context) -> OtlpReceiver:
    """The factory of `receivers.otlp`."""
    return OtlpReceiver(config, ctx)


SPEC = ComponentSpec(
    section="receivers",
    name="otlp",
    config_model=OtlpReceiverConfig,
    factory=build,
    description="OTLP receiver: traces, metrics and logs over gRPC (:4317) and HTTP (:4318), "
    "protobuf or JSON, gzip, TLS/mTLS and bearer tokens; stores each request as it came.",
)
