"""OTLP/HTTP: a raw ASGI app (no framework on the hot path) served by uvicorn on the running loop.

POST /v1/traces, /v1/metrics and /v1/logs take an Export*ServiceRequest in protobuf or
JSON, optionally gzip-compressed, and answer in the request's encoding. Errors carry a
google.rpc.Status body in that encoding, and ``Retry-After`` when the client should retry.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import uvicorn
from google.protobuf.message import Message

from collectors.otlp.config import HttpConfig
from collectors.otlp.http_body import (
    BodyReader,
    ClientGone,
    Encoding,
    gunzip,
    parse_content_encoding,
    parse_content_type,
)
from collectors.otlp.ingest import Ingest, internal_error, now
from collectors.otlp.signals import Count
from collectors.otlp.status import retry_after_header, rpc_status
from keiko.errors import InvalidInput, KeikoError, NotFound, TooLarge, Unauthenticated
from keiko.otlp_json import json_to_proto, proto_to_json
from keiko.security import TokenCheck
from keiko.sockets import listen_socket

TRANSPORT = "http"
# OTLP exporters send every few seconds: keep their connections open across batches.
KEEP_ALIVE_SECONDS = 30.0

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class MethodNotAllowed(InvalidInput):
    """Anything but POST on an OTLP path."""

    http_status = 405
    reason = "method_not_allowed"


class OtlpHttpApp:
    """The ASGI application: routing, headers, body, then the shared :class:`Ingest` steps."""

    def __init__(self, ingests: Sequence[Ingest], auth: TokenCheck, max_request_bytes: int) -> None:
        self._routes = {ingest.signal.http_path: ingest for ingest in ingests}
        self._auth = auth if auth.enabled else None
        self._max_request_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off and websockets are not served
            return
        ingest = self._routes.get(scope["path"])
        if ingest is None:
            paths = ", ".join(sorted(self._routes))
            await send_error(
                send,
                NotFound(f"no OTLP endpoint at {scope['path']!r}; POST to one of {paths}"),
                Encoding.JSON,
            )
        elif scope["method"] != "POST":
            await send_error(
                send,
                MethodNotAllowed(f"{scope['method']} is not allowed on {scope['path']}; use POST"),
                Encoding.JSON,
            )
        else:
            await self._export(ingest, scope, receive, send)

    async def _export(self, ingest: Ingest, scope: Scope, receive: Receive, send: Send) -> None:
        started = now()
        headers = _wanted_headers(scope["headers"])
        answer_in = _answer_encoding(headers.get(b"content-type"))
        count: Count | None = None
        nbytes = 0
        reader = BodyReader(receive)
        try:
            if self._auth is not None:
                self._auth.check(headers.get(b"authorization"))
            encoding = parse_content_type(headers.get(b"content-type"))
            gzipped = parse_content_encoding(headers.get(b"content-encoding"))
            body = await reader.read(headers.get(b"content-length"), self._max_request_bytes)
            nbytes = len(body)
            if gzipped:
                body = gunzip(body, self._max_request_bytes)
            if encoding is Encoding.JSON:
                body = json_to_proto(ingest.signal.request, body)
            count = ingest.decode(body)
            await ingest.store(body, count)
        except ClientGone:
            ingest.account(TRANSPORT, started, nbytes, count, "disconnected")
            return
        except KeikoError as exc:
            error = exc
        except Exception:
            error = internal_error(TRANSPORT, ingest.signal.name)
        else:
            ingest.account(TRANSPORT, started, nbytes, count)
            await _send_ok(send, ingest, count, encoding)
            return
        ingest.account(TRANSPORT, started, nbytes, count, error)
        # uvicorn would receive (and drop) whatever is left of the body to keep the
        # connection; past a bound, closing it is cheaper.
        cut_off = False
        if isinstance(error, TooLarge) and not reader.complete:
            try:
                cut_off = not await reader.discard(self._max_request_bytes)
            except ClientGone:
                return
        await send_error(send, error, answer_in, close=cut_off)


_WANTED = frozenset({b"content-type", b"content-encoding", b"content-length", b"authorization"})


def _wanted_headers(raw: Sequence[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    return {name: value for name, value in raw if name in _WANTED}


def _answer_encoding(content_type: bytes | None) -> Encoding:
    """Answer errors in protobuf to protobuf requests, in JSON to everything else."""
    try:
        return parse_content_type(content_type)
    except KeikoError:
        return Encoding.JSON


async def _send_ok(send: Send, ingest: Ingest, count: Count, encoding: Encoding) -> None:
    if encoding is Encoding.PROTOBUF:
        body = ingest.response_bytes(count)
    else:
        body = _json_body(ingest.response(count))
    await _respond(send, 200, encoding, body)


async def send_error(
    send: Send, error: KeikoError, encoding: Encoding, close: bool = False
) -> None:
    """Answer ``error`` with its status and a google.rpc.Status body in ``encoding``."""
    status = rpc_status(error)
    body = status.SerializeToString() if encoding is Encoding.PROTOBUF else _json_body(status)
    extra: list[tuple[bytes, bytes]] = []
    retry_after = retry_after_header(error)
    if retry_after is not None:
        extra.append((b"retry-after", retry_after))
    if isinstance(error, Unauthenticated):
        extra.append((b"www-authenticate", b'Bearer realm="keiko"'))
    if isinstance(error, MethodNotAllowed):
        extra.append((b"allow", b"POST"))
    if close:
        extra.append((b"connection", b"close"))
    await _respond(send, error.http_status, encoding, body, extra)


def _json_body(message: Message) -> bytes:
    return json.dumps(proto_to_json(message), separators=(",", ":")).encode()


async def _respond(
    send: Send,
    status: int,
    encoding: Encoding,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", encoding.value), (b"content-length", str(len(body)).encode())]
    if extra:
        headers += extra
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class HttpReceiver:
    """The OTLP/HTTP server (``receivers.otlp.http``): uvicorn driven on the running loop.

    uvicorn's ``serve()`` would install its own SIGINT/SIGTERM handlers, which belong to
    keiko's process, so this drives ``startup``/``shutdown`` itself on a socket it bound
    (which also makes a bind error surface in :meth:`start` with the config key).
    """

    def __init__(
        self,
        config: HttpConfig,
        ingests: Sequence[Ingest],
        auth: TokenCheck,
        max_request_bytes: int,
    ) -> None:
        self._config = config
        self._app = OtlpHttpApp(ingests, auth, max_request_bytes)
        self._server: uvicorn.Server | None = None
        self._socket: socket.socket | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.port = 0  # the bound port, once started

    async def start(self) -> None:
        """Bind the endpoint and start serving; raise RuntimeError naming the key if bind fails."""
        sock = listen_socket(self._config.endpoint, "receivers.otlp.http.endpoint")
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            access_log=False,
            http="httptools",
            ws="none",
            log_config=None,
            server_header=False,
            proxy_headers=False,
            timeout_keep_alive=int(KEEP_ALIVE_SECONDS),
        )
        config.load()
        if self._config.tls is not None:
            config.ssl = self._config.tls.server_context()
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)  # serve() would set it; we drive startup
        try:
            await server.startup(sockets=[sock])
        except BaseException:
            sock.close()
            raise
        self._server, self._socket = server, sock
        self.port = sock.getsockname()[1]
        # main_loop refreshes the Date header every second and watches should_exit.
        self._ticker = asyncio.create_task(server.main_loop(), name="otlp-http-ticker")

    async def shutdown(self, deadline: float) -> None:
        """Stop accepting, let running requests finish until ``deadline`` (monotonic)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.should_exit = True
        if self._ticker is not None:
            await self._ticker
        server.config.timeout_graceful_shutdown = max(0, int(deadline - time.monotonic()))
        sockets = [self._socket] if self._socket else None
        try:
            await asyncio.wait_for(
                server.shutdown(sockets=sockets), timeout=max(0.1, deadline - time.monotonic())
            )
        except TimeoutError:
            server.force_exit = True
