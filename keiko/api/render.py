"""Records and store stats as JSON documents (shared by the HTTP API and the CLI).

OTLP payloads are rendered as OTLP/JSON so that a person or a UI can read them. That is
CPU work proportional to the payload, so callers on the event loop run it in a thread.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from google.protobuf.message import DecodeError

from keiko.humanize import rfc3339
from keiko.otlp_json import REQUEST_CLASSES, proto_to_json
from keiko.records import Record
from keiko.store.base import StoreStats


def payload_json(record: Record) -> tuple[str, Any]:
    """``(encoding, payload)``: ``json`` for JSON kinds (events, edges: any ``...+json``),
    ``otlp_json`` for OTLP batches, else ``base64``."""
    if record.kind.endswith("+json"):
        try:
            return "json", json.loads(record.payload)
        except ValueError:
            pass
    message_type = REQUEST_CLASSES.get(record.kind)
    if message_type is not None:
        try:
            return "otlp_json", proto_to_json(message_type.FromString(record.payload))
        except DecodeError:
            pass
    return "base64", base64.b64encode(record.payload).decode()


def record_json(record: Record) -> dict[str, Any]:
    """One record as the API and `keiko store tail` show it."""
    encoding, payload = payload_json(record)
    return {
        "offset": record.offset,
        "time": rfc3339(record.time_ns),
        "time_unix_nano": record.time_ns,
        "kind": record.kind,
        "count": record.count,
        "key": record.key,
        "encoding": encoding,
        "payload": payload,
    }


def stats_json(stats: StoreStats) -> dict[str, Any]:
    """StoreStats as a JSON object, with RFC 3339 times beside the nanosecond ones."""
    doc = dataclasses.asdict(stats)
    for stream in doc["streams"]:
        stream["oldest_time"] = rfc3339(stream["oldest_time_ns"])
        stream["newest_time"] = rfc3339(stream["newest_time_ns"])
    return doc
