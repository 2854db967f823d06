"""The transport-independent part of an OTLP export: validate, count, store, account.

Both transports call the same steps, so a request is judged the same way whether it came
over gRPC or HTTP: :meth:`Ingest.decode` parses the protobuf once with the upb message
class (that is the validation) and counts items per scope; :meth:`Ingest.store` appends
the request bytes as they came, as one record, and returns once the store holds them
durably. Decoding into spans, points and log records happens later, in consumers.
"""

from __future__ import annotations

import logging
import time

from google.protobuf.message import DecodeError, Message

from collectors.otlp.signals import Count, Signal
from keiko.errors import InvalidInput, KeikoError, ShuttingDown, TooLarge
from keiko.records import NewRecord
from keiko.store.base import Store
from keiko.telemetry import Outcome, Telemetry

log = logging.getLogger(__name__)

COMPONENT = "otlp"
PARTIAL = "partial"  # outcome of a request stored with some items rejected


class Ingest:
    """Receives the export requests of one signal."""

    def __init__(
        self, signal: Signal, store: Store, telemetry: Telemetry, max_request_bytes: int
    ) -> None:
        self.signal = signal
        self.max_request_bytes = max_request_bytes
        self.closing = False  # set on shutdown: new requests get a retryable UNAVAILABLE
        self._store = store
        self._telemetry = telemetry
        self._empty_response = signal.response().SerializeToString()

    def check_size(self, nbytes: int) -> None:
        """Raise TooLarge if a body of ``nbytes`` is over the limit."""
        if nbytes > self.max_request_bytes:
            raise too_large(self.max_request_bytes, nbytes)

    def decode(self, body: bytes) -> Count:
        """Validate an Export*ServiceRequest (protobuf) and count its items."""
        self.check_size(len(body))
        try:
            request = self.signal.request.FromString(body)
        except DecodeError as exc:
            # upb says "Error parsing message with type '<name>': <why>"; keep the why
            why = str(exc).rpartition("': ")[2] or str(exc)
            raise InvalidInput(
                f"malformed OTLP {self.signal.name} request: not a valid protobuf "
                f"{self.signal.request.DESCRIPTOR.name} ({why})"
            ) from None
        return self.signal.count(request)

    async def store(self, body: bytes, count: Count) -> None:
        """Append ``body`` as one record; return once it is durable.

        A request without items is acknowledged without storing: there is nothing to lose.
        """
        if self.closing:
            raise ShuttingDown("keiko is shutting down; retry on another replica or later")
        if not count.items:
            return
        record = NewRecord(kind=self.signal.kind, payload=body, count=count.items - count.rejected)
        await self._store.append(self.signal.stream, [record])

    def response(self, count: Count) -> Message:
        """The Export*ServiceResponse for a stored request."""
        if count.rejected:
            return self.signal.partial(count)
        return self.signal.response()

    def response_bytes(self, count: Count) -> bytes:
        """:meth:`response`, serialized (cheap when nothing was rejected)."""
        if count.rejected:
            return self.signal.partial(count).SerializeToString()
        return self._empty_response

    def account(
        self,
        transport: str,
        started: float,
        nbytes: int,
        count: Count | None,
        error: KeikoError | str | None = None,
    ) -> None:
        """Count one request in telemetry.

        ``error`` is the error it was answered with, or a reason string for requests that
        ended without an answer (client gone); ``count`` is None when it was refused before
        its items could be counted.
        """
        items = count.items if count else 0
        if error is None:
            assert count is not None
            outcome = Outcome(
                items, items - count.rejected, PARTIAL if count.rejected else "ok", nbytes
            )
        else:
            reason = error if isinstance(error, str) else error.reason
            outcome = Outcome(items, 0, reason, nbytes)
        self._telemetry.request(COMPONENT, self.signal.name, transport, outcome, started)


def internal_error(transport: str, signal: str) -> KeikoError:
    """Log the exception being handled (once, with traceback) and return the error to answer.

    The message sent to the client stays generic: tracebacks are for the operator's log.
    """
    log.exception(
        "unexpected error in the OTLP %s receiver (%s); answering INTERNAL / 500", transport, signal
    )
    return KeikoError("internal error in keiko's OTLP receiver; see keiko's log")


def too_large(limit: int, size: int | None = None, what: str = "request body") -> TooLarge:
    """The error for a body over ``limit`` bytes (``size`` when it is known)."""
    of = f" of {size} bytes" if size is not None else ""
    return TooLarge(
        f"{what}{of} is over the limit of {limit} bytes "
        "(receivers.otlp.max_request_bytes); send smaller batches"
    )


def now() -> float:
    """The clock that ``started`` values come from (what Telemetry.request expects)."""
    return time.perf_counter()
