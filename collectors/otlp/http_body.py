"""OTLP/HTTP request bodies: media types, bounded reading and bounded gzip decompression."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from collectors.otlp.ingest import too_large
from keiko.errors import InvalidInput, UnsupportedMediaType

PROTOBUF = b"application/x-protobuf"
JSON = b"application/json"


class Encoding(Enum):
    """The two OTLP/HTTP encodings; the answer uses the request's."""

    PROTOBUF = PROTOBUF
    JSON = JSON


class ClientGone(Exception):
    """The client disconnected before its body was read (nothing to answer)."""


def parse_content_type(value: bytes | None) -> Encoding:
    """``application/x-protobuf`` or ``application/json`` (parameters such as charset ignored)."""
    media = (value or b"").split(b";", 1)[0].strip().lower()
    if media == PROTOBUF:
        return Encoding.PROTOBUF
    if media == JSON:
        return Encoding.JSON
    shown = media.decode("latin-1")[:100] or "none"
    raise UnsupportedMediaType(
        f"unsupported Content-Type {shown!r}: OTLP/HTTP takes "
        "application/x-protobuf or application/json"
    )


def parse_content_encoding(value: bytes | None) -> bool:
    """True for gzip, False for none/identity; anything else is refused (415)."""
    coding = (value or b"").strip().lower()
    if coding in (b"", b"identity"):
        return False
    if coding == b"gzip":
        return True
    raise UnsupportedMediaType(
        f"unsupported Content-Encoding {coding.decode('latin-1')[:100]!r}: use gzip or none"
    )


class BodyReader:
    """Reads one request body from ASGI ``receive``, within a size limit."""

    def __init__(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._receive = receive
        self.complete = False  # True once the last chunk was received

    async def read(self, content_length: bytes | None, limit: int) -> bytes:
        """The whole body, refusing it (TooLarge) as soon as it passes ``limit`` bytes.

        A declared Content-Length over the limit is refused before anything is read.
        """
        if content_length is not None:
            try:
                declared = int(content_length)
            except ValueError:
                raise InvalidInput("Content-Length is not a number") from None
            if declared > limit:
                raise too_large(limit, declared)
        chunks: list[bytes] = []
        size = 0
        while not self.complete:
            chunk = await self._next()
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            if chunk:
                chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def discard(self, budget: int) -> bool:
        """Receive and drop the rest of the body, at most ``budget`` bytes; True if it ended.

        Answering before the client has sent its whole body, then closing, makes some
        clients (those that write everything before reading) see a reset instead of the
        answer; draining a bounded amount first avoids that in the common case.
        """
        while not self.complete and budget >= 0:
            budget -= len(await self._next())
        return self.complete

    async def _next(self) -> bytes:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        self.complete = not message.get("more_body", False)
        chunk: bytes = message.get("body", b"")
        return chunk


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress a gzip body (several members allowed) to at most ``limit`` bytes.

    The output is bounded while decompressing, so a small "zip bomb" cannot expand past
    the limit in memory. A truncated or corrupt stream is InvalidInput.
    """
    out: list[bytes] = []
    size = 0
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            chunk = inflater.decompress(data, limit + 1 - size)
        except zlib.error as exc:
            raise InvalidInput(f"corrupt gzip body: {exc}") from None
        size += len(chunk)
        out.append(chunk)
        if size > limit:
            raise too_large(limit, what="gzip body, decompressed,")
        if not inflater.eof:
            raise InvalidInput("truncated gzip body: the stream ends before its end marker")
        data = inflater.unused_data
        if not data:
            return out[0] if len(out) == 1 else b"".join(out)
