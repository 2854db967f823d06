"""An instrumented HTTP microservice: the plumbing every demo service shares.

Each service is a real ``ThreadingHTTPServer`` on a free loopback port. A request gets a
SERVER span whose parent comes from the W3C ``traceparent`` header, the HTTP semantic
convention attributes, a duration histogram point, a request counter increment and one log
record in the trace's context. Calls to other services get CLIENT spans and carry the
context on in the same header, so a trace spans services with real parent/child links.
Faults from the FaultPlan are applied at the start of every request.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from opentelemetry import propagate
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from keiko.demo.faults import FaultPlan
from keiko.demo.otel import OtelLogHandler, ServiceTelemetry

# Semantic-convention advice for http.server.request.duration (seconds).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
CALL_TIMEOUT_S = 10.0
POLL_S = 0.05  # how soon a server notices stop(); the default 0.5 s adds up over services
SCOPE = "keiko.demo"

Json = dict[str, Any]


class UpstreamError(Exception):
    """A call to another service (or a dependency) failed; the caller answers 502."""

    def __init__(self, peer: str, detail: str) -> None:
        super().__init__(f"{peer}: {detail}")
        self.peer = peer


class BadRequest(Exception):
    """The request itself is wrong (answered 400, not an error of the service)."""


@dataclass(frozen=True, slots=True)
class Request:
    """What a route handler sees."""

    method: str
    path: str
    query: dict[str, str]
    body: Json


def operation(method: str, path: str, rpc: tuple[str, str] | None) -> tuple[str, dict[str, Any]]:
    """Span name and attributes of a call, on both sides: ``GET /cart`` with the HTTP
    attributes, or ``PaymentService/Charge`` with the JSON-RPC ones as well."""
    attrs: dict[str, Any] = {"http.request.method": method}
    if rpc is None:
        return f"{method} {path}", attrs
    attrs.update(
        {
            "rpc.system": "jsonrpc",
            "rpc.service": rpc[0],
            "rpc.method": rpc[1],
            "rpc.jsonrpc.version": "2.0",
        }
    )
    return f"{rpc[0]}/{rpc[1]}", attrs


@dataclass(frozen=True, slots=True)
class Route:
    """A handler for ``method path``; ``rpc`` names a JSON-RPC ``(service, method)``."""

    method: str
    path: str
    handler: Callable[[Request], Json]
    rpc: tuple[str, str] | None = None


@dataclass
class Directory:
    """Where each service listens: ``name -> (host, port)``, filled as servers start."""

    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)

    def url(self, name: str) -> str:
        """``http://127.0.0.1:PORT`` of ``name``."""
        host, port = self.addresses[name]
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        # Lower-case names: the propagator looks up "traceparent" in a plain dict.
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, body = self.server.service.handle(self.command, self.path, headers, raw)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the service logs each request through OpenTelemetry instead


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, service: Service) -> None:
        self.service = service
        super().__init__(("127.0.0.1", 0), _Handler)


class Service:
    """One instrumented service: routes, outgoing calls, telemetry, faults."""

    def __init__(
        self,
        name: str,
        telemetry: ServiceTelemetry,
        faults: FaultPlan,
        directory: Directory,
    ) -> None:
        self.name = name
        self.telemetry = telemetry
        self.faults = faults
        self.directory = directory
        self.routes: dict[tuple[str, str], Route] = {}
        self.tracer = telemetry.tracer_provider.get_tracer(SCOPE)
        self.meter = telemetry.meter_provider.get_meter(SCOPE)
        self.log = logging.getLogger(f"keiko.demo.services.{name}")
        self.log.propagate = False  # the services' logs go to keiko, not to the console
        self.log.setLevel(logging.INFO)
        self._log_handler = OtelLogHandler(telemetry.logger_provider)
        self.log.addHandler(self._log_handler)
        self._inflight = 0
        self._lock = threading.Lock()
        self._requests = self.meter.create_counter(
            "http.server.requests", "{request}", "HTTP requests handled, by route and status"
        )
        self._duration = self.meter.create_histogram(
            "http.server.request.duration",
            "s",
            "Duration of HTTP server requests",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.meter.create_observable_gauge(
            "demo.service.inflight",
            [self._observe_inflight],
            "{request}",
            "Requests being handled at collection time",
        )
        self._server: _Server | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def add_routes(self, routes: Iterable[Route]) -> None:
        """Register handlers (before :meth:`start`)."""
        for route in routes:
            self.routes[(route.method, route.path)] = route

    def start(self) -> None:
        """Listen on a free loopback port and serve in a background thread."""
        self._server = _Server(self)
        host, port = self._server.server_address[:2]
        self.directory.addresses[self.name] = (str(host), int(port))
        threading.Thread(
            target=self._server.serve_forever,
            args=(POLL_S,),
            name=f"demo-{self.name}",
            daemon=True,
        ).start()

    def stop(self) -> None:
        """Stop serving and detach the log handler (telemetry is flushed by the caller)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.log.removeHandler(self._log_handler)

    # -- serving -------------------------------------------------------------------------

    def handle(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Json]:
        """Serve one request inside a SERVER span; returns (status, JSON body).

        ``headers`` has lower-case names.
        """
        url = urlsplit(target)
        route = self.routes.get((method, url.path))
        if route is None:
            return 404, {"error": f"no route {method} {url.path}"}
        host, port = self.directory.addresses[self.name]
        name, attributes = operation(method, url.path, route.rpc)
        attributes.update(
            {
                "http.route": route.path,
                "url.path": url.path,
                "url.scheme": "http",
                "server.address": host,
                "server.port": port,
                "network.protocol.version": "1.1",
                "user_agent.original": headers.get("user-agent", ""),
            }
        )
        started = time.perf_counter()
        with self.tracer.start_as_current_span(
            name,
            context=propagate.extract(headers),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            with self._lock:
                self._inflight += 1
            try:
                status, body, error = self._run(route, url.query, raw)
            finally:
                with self._lock:
                    self._inflight -= 1
            self._finish(span, route, status, error, time.perf_counter() - started)
            return status, body

    def _run(self, route: Route, query: str, raw: bytes) -> tuple[int, Json, Exception | None]:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError as exc:
            return 400, {"error": f"body is not JSON: {exc}"}, None
        if not isinstance(body, dict):
            return 400, {"error": "body is not a JSON object"}, None
        request = Request(route.method, route.path, dict(parse_qsl(query)), body)
        try:
            self.faults.apply(self.name)
            return 200, route.handler(request), None
        except BadRequest as exc:
            return 400, {"error": str(exc)}, None
        except UpstreamError as exc:
            return 502, {"error": str(exc)}, exc
        except Exception as exc:  # an injected fault, or a bug: the service answers 500
            return 500, {"error": str(exc)}, exc

    def _finish(
        self, span: Span, route: Route, status: int, error: Exception | None, seconds: float
    ) -> None:
        attrs: dict[str, Any] = {
            "http.request.method": route.method,
            "http.route": route.path,
            "http.response.status_code": status,
        }
        span.set_attribute("http.response.status_code", status)
        if error is not None:
            attrs["error.type"] = type(error).__name__
            span.set_attribute("error.type", type(error).__name__)
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error)))
        self._requests.add(1, attrs)
        self._duration.record(seconds, attrs)
        extra = {"otel": attrs}
        message = "%s %s -> %d in %.1f ms"
        args = (route.method, route.path, status, seconds * 1000)
        if error is None:
            self.log.info(message, *args, extra=extra)
        else:
            self.log.error(message + ": %s", *args, error, exc_info=error, extra=extra)

    def _observe_inflight(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            yield Observation(self._inflight)

    # -- calling others ------------------------------------------------------------------

    def call(
        self,
        peer: str,
        method: str,
        path: str,
        payload: Json | None = None,
        rpc: tuple[str, str] | None = None,
    ) -> Json:
        """Call another service inside a CLIENT span (JSON-RPC when ``rpc`` is given)."""
        host, port = self.directory.addresses[peer]
        name, attributes = operation(method, urlsplit(path).path, rpc)
        attributes.update(
            {
                "server.address": host,
                "server.port": port,
                "url.full": f"http://{host}:{port}{path}",
                "peer.service": peer,
            }
        )
        with self.client_span(name, attributes) as span:
            return self.exchange(span, peer, method, path, payload)

    def client_span(self, name: str, attributes: dict[str, Any]) -> Any:
        """A CLIENT span whose status and exception events the caller sets itself."""
        return self.tracer.start_as_current_span(
            name,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        )

    def exchange(
        self, span: Span, peer: str, method: str, path: str, payload: Json | None = None
    ) -> Json:
        """One HTTP request to ``peer`` in the current (CLIENT) span; raise UpstreamError."""
        host, port = self.directory.addresses[peer]
        headers = {"Content-Type": "application/json", "User-Agent": f"{self.name}/demo"}
        propagate.inject(headers)
        conn = http.client.HTTPConnection(host, port, timeout=CALL_TIMEOUT_S)
        try:
            conn.request(
                method, path, json.dumps(payload) if payload is not None else None, headers
            )
            response = conn.getresponse()
            data = response.read()
        except OSError as exc:
            _fail(span, type(exc).__name__, f"{peer} unreachable: {exc}")
            raise UpstreamError(peer, str(exc)) from exc
        finally:
            conn.close()
        span.set_attribute("http.response.status_code", response.status)
        body: Json = json.loads(data) if data else {}
        if response.status >= 400:
            detail = str(body.get("error", response.reason))
            _fail(span, str(response.status), detail)
            raise UpstreamError(peer, f"{response.status} {detail}")
        return body


def _fail(span: Span, error_type: str, detail: str) -> None:
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, detail))
