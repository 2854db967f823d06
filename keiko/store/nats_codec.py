"""How keiko's records, names and times are written to and read from NATS JetStream.

Naming (``prefix`` is ``store.nats.stream_prefix``, e.g. ``KEIKO``):

- keiko stream ``traces``  -> JetStream stream ``KEIKO_TRACES``, subject ``keiko.traces``
  (stream names are upper-cased; the subject keeps the exact keiko name, so
  :func:`stream_from_subject` maps back without guessing);
- consumer group ``g``     -> durable pull consumer ``g`` on that stream (see
  :func:`durable_name` for names with characters NATS does not allow);
- KV bucket ``b``          -> JetStream KV bucket ``KEIKO_b`` (stream ``KV_KEIKO_b``).

A record is one JetStream message: the payload as the message body, its kind, count and
key in headers. Header values must be single-line ASCII, so values that are not are
base64-encoded under a ``-B64`` header name.
"""

from __future__ import annotations

import base64
import calendar
import re
from datetime import UTC, datetime
from functools import lru_cache

from keiko.records import NewRecord, Record, check_stream_name

HDR_KIND = "Keiko-Kind"
HDR_COUNT = "Keiko-Count"
HDR_KEY = "Keiko-Key"
HDR_MSG_ID = "Nats-Msg-Id"
_B64 = "-B64"
# Header values that need no encoding: printable ASCII, no leading/trailing space (NATS
# header parsers strip it).
_PLAIN_VALUE = re.compile(r"^[!-~]([ -~]*[!-~])?$")

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_KV_PLAIN_KEY = re.compile(r"^[-/_a-zA-Z0-9]+(\.[-/_a-zA-Z0-9]+)*$")


def js_stream_name(prefix: str, stream: str) -> str:
    """``("KEIKO", "traces")`` -> ``"KEIKO_TRACES"``."""
    return f"{prefix}_{check_stream_name(stream).upper()}"


def subject(prefix: str, stream: str) -> str:
    """``("KEIKO", "traces")`` -> ``"keiko.traces"``."""
    return f"{prefix.lower()}.{check_stream_name(stream)}"


def stream_from_subject(prefix: str, subj: str) -> str | None:
    """The keiko stream behind ``subj``, or None when the subject is not one of ours."""
    head, _, name = subj.partition(".")
    if head != prefix.lower():
        return None
    try:
        return check_stream_name(name)
    except ValueError:
        return None


def durable_name(group: str) -> str:
    """The durable consumer of a group. Characters NATS refuses (``.``, ``*``, ``>``,
    spaces, slashes ...) become ``~hh`` escapes, so any group name works on both backends."""
    if not group or len(group) > 128:
        raise ValueError("a consumer group name must be 1-128 characters")
    if _PLAIN_NAME.match(group):
        return group
    return "".join(
        ch if _PLAIN_NAME.match(ch) else "".join(f"~{b:02x}" for b in ch.encode()) for ch in group
    )


def group_from_durable(durable: str) -> str:
    """Inverse of :func:`durable_name`."""
    if "~" not in durable:
        return durable
    raw = re.sub(rb"~([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), durable.encode())
    return raw.decode(errors="replace")


def kv_bucket_name(prefix: str, bucket: str) -> str:
    """``("KEIKO", "checkpoints")`` -> ``"KEIKO_checkpoints"`` (NATS allows A-Z a-z 0-9 _ -)."""
    if not _PLAIN_NAME.match(bucket) or len(bucket) > 64:
        raise ValueError(
            f"invalid bucket name {bucket!r}: on the nats backend use 1-64 characters "
            "A-Z, a-z, 0-9, '_' or '-'"
        )
    return f"{prefix}_{bucket}"


def kv_key(key: str) -> str:
    """A NATS KV key for any keiko key: plain keys as they are, others as ``=`` + base64url
    (``=`` never starts a plain key, so :func:`key_from_kv` is unambiguous)."""
    if _KV_PLAIN_KEY.match(key):
        return key
    return "=" + base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def key_from_kv(stored: str) -> str:
    """Inverse of :func:`kv_key`."""
    if not stored.startswith("="):
        return stored
    data = stored[1:]
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode()


def _put(headers: dict[str, str], name: str, value: str) -> None:
    if _PLAIN_VALUE.match(value):
        headers[name] = value
    else:
        headers[name + _B64] = base64.b64encode(value.encode()).decode()


def _get(headers: dict[str, str], name: str, default: str) -> str:
    encoded = headers.get(name + _B64)
    if encoded is not None:
        return base64.b64decode(encoded).decode()
    return headers.get(name, default)


def record_headers(record: NewRecord) -> dict[str, str]:
    """The headers that carry a record's kind, count and key (empty key: no header)."""
    headers: dict[str, str] = {HDR_COUNT: str(record.count)}
    _put(headers, HDR_KIND, record.kind)
    if record.key:
        _put(headers, HDR_KEY, record.key)
    if record.id:  # JetStream drops a second message with this id (duplicate window)
        headers[HDR_MSG_ID] = record.id
    return headers


def decode_record(
    offset: int, time_ns: int, headers: dict[str, str] | None, payload: bytes
) -> Record:
    """A stored message back as a Record."""
    hdrs = headers or {}
    return Record(
        offset=offset,
        time_ns=time_ns,
        kind=_get(hdrs, HDR_KIND, ""),
        payload=payload,
        count=int(hdrs.get(HDR_COUNT, "1")),
        key=_get(hdrs, HDR_KEY, ""),
    )


def ack_position(reply: str) -> tuple[int, int]:
    """(stream sequence, stored time in unix ns) from a JetStream ack subject.

    v1: ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>``;
    v2 adds ``<domain>.<account hash>`` after ``$JS.ACK`` and a trailing token.
    """
    tokens = reply.split(".")
    shift = 0 if len(tokens) == 9 else 2
    return int(tokens[5 + shift]), int(tokens[7 + shift])


@lru_cache(maxsize=256)
def _unix_seconds(text: str) -> int:
    return calendar.timegm(datetime.fromisoformat(text).timetuple())


def parse_time_ns(text: str) -> int:
    """RFC 3339 with up to nanoseconds, UTC (``2024-05-01T12:00:00.123456789Z``) -> unix ns.

    Python's datetime keeps only microseconds, so the fraction is parsed by hand.
    """
    text = text.rstrip("Z")
    whole, _, fraction = text.partition(".")
    return _unix_seconds(whole) * 1_000_000_000 + int((fraction + "000000000")[:9])


def format_time_ns(time_ns: int) -> str:
    """Unix ns -> RFC 3339 UTC with nanoseconds (what the JetStream API accepts)."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    whole = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{nanos:09d}Z"
