"""Bearer-token check in front of every route except the open probes.

A pure ASGI middleware (not BaseHTTPMiddleware) so that streamed responses such as the
Server-Sent Events endpoint pass through untouched.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from keiko.api.errors import keiko_error_response
from keiko.api.state import ApiState
from keiko.errors import Unauthenticated

# Probes for Kubernetes and Prometheus; /metrics joins the protected set with api.metrics_auth.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


class BearerAuth:
    """Refuses requests without an accepted ``Authorization: Bearer`` token (401)."""

    def __init__(self, app: ASGIApp, state: ApiState) -> None:
        self.app = app
        self.state = state

    def _open(self, path: str) -> bool:
        if path in OPEN_PATHS:
            return True
        return path == "/metrics" and not self.state.config.metrics_auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        check = self.state.auth  # read once: a reload may replace it
        if scope["type"] == "http" and check.enabled and not self._open(scope["path"]):
            header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            try:
                check.check(header)
            except Unauthenticated as exc:
                await keiko_error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)
