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
    raise UnsupportedMediaType(f"unsupported Content-Type {shown!r}: OTLP/HTTP takes "
                               "application/x-protobuf or application/json")


def parse_content_encoding(value: bytes | None) -> bool:
    """True for gzip, False for none/identity; anything else is refused (415)."""
    coding = (value or b"").strip().lower()
    if coding in (b"", b"identity"):
        return False
    if coding == b"gzip":
        return True
    raise UnsupportedMediaType(f"unsupported Content-Encoding {coding.decode('latin-1')[:100]!r}: "
                               "use gzip or none")


async def read_body(receive: Callable[[], Awaitable[dict[str, Any]]], content_length: bytes | None,
                    limit: int) -> bytes:
    """The whole request body, refusing it (TooLarge) as soon as it passes ``limit`` bytes.

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
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


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
