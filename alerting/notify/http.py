"""One HTTP POST of a JSON document, with the outbox's error tree: 2xx ok; 429, 5xx and
connection errors retryable (Retry-After honoured); other 4xx permanent.

Messages name the channel (``slack_configs[0] of receiver ops``), never the URL: URLs of
webhooks carry tokens."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time
from typing import Any

import httpx

from alerting.delivery import Permanent, Retryable
from alerting.secrets import REDACTED, redact

_URL_PATH = re.compile(r"(?P<origin>https?://[^/\s\"']+)/[^\s\"']*")


class RedactUrls(logging.Filter):
    """httpx logs every request's URL at INFO; webhook URLs carry tokens in the path or
    query, so the paths are cut and known secrets scrubbed from its records."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; never drops it."""
        text = _URL_PATH.sub(lambda m: f"{m.group('origin')}/{REDACTED}", record.getMessage())
        record.msg, record.args = redact(text), ()
        return True


def _install_filter() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, RedactUrls) for f in logger.filters):
        logger.addFilter(RedactUrls())


_install_filter()


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class HttpClient:
    """The httpx client a receiver's HTTP channels share: connections are reused and the
    TLS context is built once (a client per request cost ~20 ms, mostly loading CA
    certificates). Created on first use in the running event loop; :meth:`close` ends it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def client(self) -> httpx.AsyncClient:
        """The client of the running loop (a new one if the loop changed)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
            self._loop = loop
        return self._client

    async def close(self) -> None:
        """Close the connections (idempotent)."""
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = self._loop = None

    async def post_json(
        self, url: str, doc: dict[str, Any], what: str, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST ``doc`` to ``url``; the response if 2xx, else Retryable/Permanent naming
        ``what`` (never the URL)."""
        try:
            response = await self.client().post(url, json=doc, headers=headers)
        except httpx.UnsupportedProtocol:
            raise Permanent(f"{what}: the URL is not http(s)") from None
        except httpx.InvalidURL:
            raise Permanent(f"{what}: the URL is not valid") from None
        except httpx.TransportError as exc:  # connect, read, write, timeout, protocol errors
            raise Retryable(f"{what}: {type(exc).__name__}: {exc}") from None
        return checked(response, what)


def checked(response: httpx.Response, what: str) -> httpx.Response:
    """``response`` if 2xx; else Retryable (429, 5xx; with Retry-After) or Permanent."""
    status = response.status_code
    if 200 <= status < 300:
        return response
    snippet = response.text[:200].replace("\n", " ")
    message = f"{what}: HTTP {status} {snippet}".rstrip()
    if status == 429 or status >= 500:
        raise Retryable(message, retry_after(response.headers.get("retry-after")))
    raise Permanent(message)
