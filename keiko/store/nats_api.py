"""The JetStream API calls the NATS backend makes, as plain JSON requests.

nats-py's typed wrappers drop fields keiko needs (the stream's first and last timestamps)
and round times to microseconds, so the management calls here speak the documented JSON
API (``$JS.API.*``) directly. Every failure leaves as a keiko error: StoreFull when
JetStream is out of resources, StoreUnavailable for everything else (no connection,
timeouts, no JetStream, refusals), except "not found", which callers handle.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from keiko.errors import KeikoError, StoreFull, StoreUnavailable

API = "$JS.API"
# JetStream error codes that mean "out of storage/memory": backpressure, not an outage.
RESOURCE_CODES = frozenset({10023, 10028, 10047})
_NOT_FOUND_CODES = {10014, 10059, 10037}  # consumer, stream, message not found


class NotFound(Exception):
    """The stream, consumer or message does not exist."""


def to_keiko_error(exc: BaseException, what: str, retry_after: float = 1.0) -> KeikoError:
    """A keiko error for a failed NATS call (``what`` names the operation)."""
    if isinstance(exc, KeikoError):
        return exc
    if isinstance(exc, TimeoutError):
        return StoreUnavailable(f"NATS did not answer {what} in time", retry_after)
    return StoreUnavailable(f"NATS {what} failed: {type(exc).__name__}: {exc}", retry_after)


@contextmanager
def nats_errors(what: str, retry_after: float = 1.0) -> Iterator[None]:
    """Turn nats-py and socket errors raised inside the block into keiko errors."""
    try:
        yield
    except (nats.errors.Error, TimeoutError, OSError) as exc:
        raise to_keiko_error(exc, what, retry_after) from exc


def _api_error(error: dict[str, Any], what: str, retry_after: float) -> Exception:
    code, err_code = error.get("code", 0), error.get("err_code", 0)
    text = f"JetStream refused {what}: {error.get('description', error)} (err_code {err_code})"
    if code == 404 or err_code in _NOT_FOUND_CODES:
        return NotFound(text)
    if err_code in RESOURCE_CODES:
        return StoreFull(text, retry_after)
    return StoreUnavailable(text, retry_after)


class JsApi:
    """JSON requests to the JetStream API of one connection."""

    def __init__(self, nc: Client, timeout: float, retry_after: float = 1.0) -> None:
        self.nc = nc
        self.timeout = timeout
        self.retry_after = retry_after

    async def request(
        self, subject: str, body: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """One API call; the decoded answer, or a keiko error / NotFound."""
        what = subject.removeprefix(API + ".").split(".", 2)[0].lower()
        payload = json.dumps(body).encode() if body is not None else b""
        with nats_errors(what, self.retry_after):
            if not self.nc.is_connected:
                raise StoreUnavailable("not connected to NATS (reconnecting)", self.retry_after)
            msg = await self.nc.request(f"{API}.{subject}", payload, timeout or self.timeout)
        answer: dict[str, Any] = json.loads(msg.data)
        if "error" in answer:
            raise _api_error(answer["error"], f"{what} ({subject})", self.retry_after)
        return answer

    async def account_info(self, timeout: float | None = None) -> dict[str, Any]:
        return await self.request("INFO", timeout=timeout)

    async def stream_info(self, name: str) -> dict[str, Any]:
        return await self.request(f"STREAM.INFO.{name}")

    async def streams(self, subject_filter: str) -> list[dict[str, Any]]:
        """Info of every stream that holds a subject matching ``subject_filter``."""
        return await self._paged("STREAM.LIST", "streams", {"subject": subject_filter})

    async def add_stream(self, config: dict[str, Any]) -> dict[str, Any]:
        return await self.request(f"STREAM.CREATE.{config['name']}", config)

    async def update_stream(self, config: dict[str, Any]) -> dict[str, Any]:
        return await self.request(f"STREAM.UPDATE.{config['name']}", config)

    async def consumers(self, stream: str) -> list[dict[str, Any]]:
        return await self._paged(f"CONSUMER.LIST.{stream}", "consumers", {})

    async def consumer_info(self, stream: str, name: str) -> dict[str, Any]:
        return await self.request(f"CONSUMER.INFO.{stream}.{name}")

    async def add_consumer(self, stream: str, config: dict[str, Any]) -> dict[str, Any]:
        """Create a consumer: durable when ``config`` has ``durable_name``, else ephemeral."""
        body = {"stream_name": stream, "config": config}
        durable = config.get("durable_name")
        if durable:
            return await self.request(f"CONSUMER.DURABLE.CREATE.{stream}.{durable}", body)
        return await self.request(f"CONSUMER.CREATE.{stream}", body)

    async def delete_consumer(self, stream: str, name: str) -> None:
        await self.request(f"CONSUMER.DELETE.{stream}.{name}")

    async def direct_get(self, stream: str, seq: int) -> Msg | None:
        """The message with sequence ``seq`` (None if there is none), served by any replica.

        The answer is the stored message itself: its headers plus ``Nats-Sequence`` and
        ``Nats-Time-Stamp``; a missing message comes back as a 404 status without body.
        """
        with nats_errors("direct get", self.retry_after):
            msg = await self.nc.request(
                f"{API}.DIRECT.GET.{stream}", b'{"seq":%d}' % seq, self.timeout
            )
        status = (msg.headers or {}).get("Status")
        if status == "404":
            return None
        if status:
            description = (msg.headers or {}).get("Description", "")
            raise StoreUnavailable(
                f"JetStream direct get failed: {status} {description}", self.retry_after
            )
        return msg

    async def _paged(self, subject: str, field: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            answer = await self.request(subject, {**body, "offset": len(items)})
            page = answer.get(field) or []
            items.extend(page)
            if not page or len(items) >= answer.get("total", 0):
                return items


async def gather_or_cancel(*aws: asyncio.Future[Any]) -> list[Any]:
    """asyncio.gather that cancels the rest when one fails (gather leaves them running)."""
    try:
        return list(await asyncio.gather(*aws))
    except BaseException:
        for aw in aws:
            aw.cancel()
        raise
