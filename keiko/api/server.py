"""Serve an ASGI app with uvicorn inside keiko's own event loop (keiko owns the signals)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from keiko.security import TLSConfig
from keiko.sockets import listen_socket

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: keiko's process handles SIGTERM/SIGINT/SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def url_of(sock: socket.socket, tls: bool) -> str:
    """``http(s)://host:port`` of a bound socket (IPv6 hosts in brackets)."""
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{port}"


class ApiServer:
    """One HTTP(S) listener for ``app``: start() binds and serves, shutdown() drains."""

    def __init__(self, app: ASGIApp, endpoint: str, tls: TLSConfig | None) -> None:
        self.app = app
        self.endpoint = endpoint
        self.tls = tls
        self.url = ""
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind (errors surface here, naming the endpoint) and serve in a task."""
        sock = listen_socket(self.endpoint, "api.endpoint")
        self.url = url_of(sock, self.tls is not None)
        config = uvicorn.Config(
            self.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="none",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=None,
        )
        config.load()
        if self.tls is not None:
            config.ssl = self.tls.server_context()  # one TLS policy for every keiko listener
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="api-server")
        while not self._server.started:
            if self._task.done():
                await self._task  # raises the start-up error
                raise RuntimeError(f"the API server on {self.endpoint} stopped while starting")
            await asyncio.sleep(0.01)

    async def shutdown(self, deadline: float) -> None:
        """Stop accepting, let open requests finish until ``deadline`` (monotonic), then cut."""
        if self._server is None or self._task is None or self._task.done():
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(
                asyncio.shield(self._task), max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            log.warning("API requests still open at the shutdown deadline; closing them")
            self._server.force_exit = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
