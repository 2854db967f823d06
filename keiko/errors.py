"""One error tree: permanent versus retryable, mapped once to OTLP gRPC and HTTP codes.

Receivers and the API raise these; the transports translate them with :func:`grpc_code`
and :func:`http_status` so that every entry point answers the same failure the same way
(OTLP 1.x: 400 / INVALID_ARGUMENT is final, 429 / 503 / RESOURCE_EXHAUSTED / UNAVAILABLE
with a retry delay are retried by SDK exporters).
"""

from __future__ import annotations

import grpc


class KeikoError(Exception):
    """Base of every error keiko raises on purpose."""

    grpc_code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500
    reason: str = "internal"  # the `reason` label of refused/dropped counters


class PermanentError(KeikoError):
    """Retrying the same request cannot succeed."""


class InvalidInput(PermanentError):
    """The request cannot be decoded or breaks a rule (answered 400 / INVALID_ARGUMENT)."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    reason = "invalid"


class TooLarge(InvalidInput):
    """The request body is over the configured limit (still 400: OTLP says bad data is 400)."""

    reason = "too_large"


class UnsupportedMediaType(InvalidInput):
    """Wrong Content-Type or Content-Encoding (HTTP only)."""

    http_status = 415
    reason = "unsupported_media_type"


class Unauthenticated(PermanentError):
    """Missing or wrong bearer token."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    reason = "unauthenticated"


class NotFound(PermanentError):
    """An API resource that does not exist (unknown stream, group ...)."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    reason = "not_found"


class RetryableError(KeikoError):
    """A transient condition: the client should retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreFull(RetryableError):
    """The store is over a configured bound (backpressure: 429 / RESOURCE_EXHAUSTED)."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429
    reason = "backpressure"


class StoreUnavailable(RetryableError):
    """The store cannot take writes now (disk error, NATS unreachable: 503 / UNAVAILABLE)."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    reason = "store_unavailable"


class ShuttingDown(RetryableError):
    """The process is stopping; another replica (or this one after restart) will take it."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 503
    reason = "shutting_down"
