"""OTLP/gRPC: the trace, metrics and logs Export services on one grpc.aio server.

The handlers are registered without a request deserializer, so they receive the request
bytes as they came off the wire: they are parsed exactly once (to validate and count) and
stored as they are, with no re-serialization.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import grpc

from collectors.otlp.config import GrpcConfig
from collectors.otlp.ingest import Ingest, internal_error, now
from collectors.otlp.signals import Count
from collectors.otlp.status import grpc_trailers
from keiko.errors import KeikoError
from keiko.security import TokenCheck

TRANSPORT = "grpc"
MiB = 1024**2

Handler = Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]


def grpc_message_limit(max_request_bytes: int) -> int:
    """grpc core's own receive limit, set well above ``max_request_bytes``.

    Above its limit grpc core answers RESOURCE_EXHAUSTED itself, which exporters take as
    retryable and resend forever. Keeping it out of the way lets the receiver check the
    size and answer INVALID_ARGUMENT (final) with a message naming the setting.
    """
    return min(2 * max_request_bytes + MiB, 2**31 - 1)


class GrpcReceiver:
    """The OTLP/gRPC server (``receivers.otlp.grpc``)."""

    def __init__(
        self,
        config: GrpcConfig,
        ingests: Sequence[Ingest],
        auth: TokenCheck,
        max_request_bytes: int,
    ) -> None:
        self._config = config
        self._ingests = ingests
        self._auth = auth
        self._max_request_bytes = max_request_bytes
        self._server: grpc.aio.Server | None = None
        self.port = 0  # the bound port, once started

    async def start(self) -> None:
        """Bind the endpoint and start serving; raise RuntimeError naming the key if bind fails."""
        limit = grpc_message_limit(self._max_request_bytes)
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                # grpc sets SO_REUSEPORT by default, so a second keiko would share the port
                # silently instead of failing to start.
                ("grpc.so_reuseport", 0),
            ]
        )
        for ingest in self._ingests:
            method = grpc.unary_unary_rpc_method_handler(self._handler(ingest))
            server.add_generic_rpc_handlers(
                (
                    grpc.method_handlers_generic_handler(
                        ingest.signal.grpc_service, {"Export": method}
                    ),
                )
            )
        endpoint = self._config.endpoint
        try:
            if self._config.tls is None:
                self.port = server.add_insecure_port(endpoint)
            else:
                creds = self._config.tls.grpc_credentials()
                self.port = server.add_secure_port(endpoint, creds)
        except RuntimeError as exc:
            raise RuntimeError(
                f"receivers.otlp.grpc.endpoint: cannot listen on {endpoint} "
                f"(address in use or not on this machine?): {exc}"
            ) from None
        await server.start()
        self._server = server

    async def shutdown(self, deadline: float) -> None:
        """Refuse new RPCs, let running ones finish until ``deadline`` (monotonic)."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace=max(0.0, deadline - time.monotonic()))

    def _handler(self, ingest: Ingest) -> Handler:
        auth = self._auth if self._auth.enabled else None

        async def export(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            started = now()
            count: Count | None = None
            try:
                if auth is not None:
                    auth.check(_authorization(context.invocation_metadata()))
                count = ingest.decode(request)
                await ingest.store(request, count)
            except KeikoError as exc:
                error = exc
            except asyncio.CancelledError:  # the client went away or its deadline passed
                ingest.account(TRANSPORT, started, len(request), count, "cancelled")
                raise
            except Exception:
                error = internal_error(TRANSPORT, ingest.signal.name)
            else:
                ingest.account(TRANSPORT, started, len(request), count)
                return ingest.response_bytes(count)
            ingest.account(TRANSPORT, started, len(request), count, error)
            await context.abort(error.grpc_code, str(error), grpc_trailers(error))
            raise AssertionError("unreachable: abort() raises")

        return export


def _authorization(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | bytes | None:
    for key, value in metadata or ():
        if key == "authorization":
            return value
    return None
