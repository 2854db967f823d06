"""Real peers for the notification tests (no tests here): an HTTP server capturing JSON
POSTs (webhook-, Slack- and PagerDuty-shaped) and an aiosmtpd SMTP server capturing mail,
both on free loopback ports. Helpers only; they belong in tests/fixtures/ once that is
shared (the alerting helper could not create files there)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fixtures.keiko import HOST, free_port


@dataclass
class Captured:
    """One POST the sink answered 2xx (or any status, see ``status``)."""

    path: str
    headers: dict[str, str]
    body: Any
    status: int


@dataclass
class HttpSink:
    """A threading HTTP server: records every POST; answers per path (default 200)."""

    port: int = field(default_factory=free_port)
    requests: list[Captured] = field(default_factory=list)
    answers: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)  # seconds before answering
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The base URL (no trailing slash)."""
        return f"http://{HOST}:{self.port}"

    def answer(self, path: str, status: int, headers: dict[str, str] | None = None) -> None:
        """Answer POSTs to ``path`` with ``status`` from now on."""
        self.answers[path] = (status, headers or {})

    def received(self, path: str) -> list[Any]:
        """Bodies of the POSTs to ``path`` that were answered 2xx, in order."""
        return [r.body for r in self.requests if r.path == path and 200 <= r.status < 300]

    def start(self) -> HttpSink:
        """Listen (again) on ``port``."""
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                status, headers = sink.answers.get(self.path, (200, {}))
                time.sleep(sink.delays.get(self.path, 0.0))
                body = json.loads(raw) if raw else None
                sink.requests.append(Captured(self.path, dict(self.headers), body, status))
                # The client may have given up waiting (a timeout test): not an error here.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self._server = ThreadingHTTPServer((HOST, self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused until start())."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        self.messages.append(message_from_bytes(content))
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK"


class SmtpSink:
    """An aiosmtpd server on a free loopback port (plain SMTP, no TLS, no auth)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = _Mailbox()
        self._controller = Controller(self.mailbox, hostname=HOST, port=self.port)

    @property
    def messages(self) -> list[Message]:
        """Mail received, in order."""
        return self.mailbox.messages

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


def http_sink() -> Iterator[HttpSink]:
    """For a fixture: a started sink, stopped afterwards."""
    sink = HttpSink().start()
    try:
        yield sink
    finally:
        sink.stop()
