"""How a KeikoError is told to OTLP clients: google.rpc.Status, RetryInfo, Retry-After.

Retryable errors carry their delay in the forms exporters read: on gRPC the trailing
metadata ``google.rpc.retryinfo-bin`` (what the OpenTelemetry exporters look for) and the
standard rich-status trailer ``grpc-status-details-bin``; on HTTP a ``Retry-After`` header.
"""

from __future__ import annotations

import math

from google.protobuf.any_pb2 import Any as AnyProto
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status

from keiko.errors import KeikoError, RetryableError

RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def retry_info(seconds: float) -> RetryInfo:
    """A RetryInfo asking the client to wait ``seconds``."""
    whole = int(seconds)
    return RetryInfo(retry_delay=Duration(seconds=whole, nanos=int((seconds - whole) * 1e9)))


def rpc_status(error: KeikoError) -> Status:
    """The google.rpc.Status describing ``error`` (with RetryInfo when retryable)."""
    status = Status(code=error.grpc_code.value[0], message=str(error) or error.reason)
    if isinstance(error, RetryableError):
        detail = AnyProto()
        detail.Pack(retry_info(error.retry_after))
        status.details.append(detail)
    return status


def grpc_trailers(error: KeikoError) -> tuple[tuple[str, bytes], ...]:
    """Trailing metadata for a failed RPC: the retry delay when the error is retryable."""
    if not isinstance(error, RetryableError):
        return ()
    return (
        (RETRY_INFO_KEY, retry_info(error.retry_after).SerializeToString()),
        (STATUS_DETAILS_KEY, rpc_status(error).SerializeToString()),
    )


def retry_after_header(error: KeikoError) -> bytes | None:
    """The ``Retry-After`` value (whole seconds, at least 1) for a retryable error."""
    if not isinstance(error, RetryableError):
        return None
    return str(max(1, math.ceil(error.retry_after))).encode()
