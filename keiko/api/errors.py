"""Every API error as JSON ``{"error": reason, "detail": message}`` with its status code.

The status comes from keiko.errors, so the API answers a failure the same way as the OTLP
receivers; retryable errors carry ``Retry-After``.
"""

from __future__ import annotations

import math

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from keiko.errors import InvalidInput, KeikoError, RetryableError, Unauthenticated


class BadParameter(InvalidInput):
    """A query parameter or header the API cannot use; the message names it."""

    reason = "bad_parameter"

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.parameter = name


def error_response(
    status: int, error: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one shape of every error body."""
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def keiko_error_response(exc: KeikoError) -> JSONResponse:
    """A KeikoError as its HTTP status, reason and message."""
    headers = {}
    if isinstance(exc, RetryableError):
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="keiko"'
    return error_response(exc.http_status, exc.reason, str(exc), headers)


async def on_keiko_error(request: Request, exc: Exception) -> Response:
    """Starlette exception handler for KeikoError."""
    assert isinstance(exc, KeikoError)
    return keiko_error_response(exc)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 ... in the same JSON shape."""
    assert isinstance(exc, HTTPException)
    reason = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    detail = "no such endpoint; see /api/v1/openapi.yaml" if exc.status_code == 404 else exc.detail
    return error_response(exc.status_code, reason, detail, dict(exc.headers or {}))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """A bug: answer 500 without internals (Starlette re-raises it; uvicorn logs the trace)."""
    return error_response(500, "internal", "internal error; see keiko's log")


EXCEPTION_HANDLERS = {
    KeikoError: on_keiko_error,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}
