"""One HTTP POST of a JSON document, with the outbox's error tree: 2xx ok; 429, 5xx and
connection errors retryable (Retry-After honoured); other 4xx permanent.

Messages name the channel (``slack_configs[0] of receiver ops``), never the URL: URLs of
webhooks carry tokens."""

from __future__ import annotations

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


async def post_json(
    url: str, doc: dict[str, Any], what: str, timeout: float, headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST ``doc`` to ``url``; the response if 2xx, else Retryable/Permanent naming ``what``."""
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            response = await client.post(url, json=doc, headers=headers)
    except httpx.UnsupportedProtocol:
        raise Permanent(f"{what}: the URL is not http(s)") from None
    except httpx.InvalidURL:
        raise Permanent(f"{what}: the URL is not valid") from None
    except httpx.TransportError as exc:  # connect, read, write, timeout, protocol errors
        raise Retryable(f"{what}: {type(exc).__name__}: {exc}") from None
    status = response.status_code
    if 200 <= status < 300:
        return response
    snippet = response.text[:200].replace("\n", " ")
    message = f"{what}: HTTP {status} {snippet}".rstrip()
    if status == 429 or status >= 500:
        raise Retryable(message, retry_after(response.headers.get("retry-after")))
    raise Permanent(message)
