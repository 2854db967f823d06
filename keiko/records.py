"""The record types every stage reads and writes through the store."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# Stream names double as NATS subject tokens and file names, so keep them plain.
STREAM_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


class Stream(StrEnum):
    """The well-known streams. Stages may create others (same naming rule)."""

    TRACES = "traces"
    METRICS = "metrics"
    LOGS = "logs"
    EVENTS = "events"


class Kind(StrEnum):
    """What a record's payload holds: decoders dispatch on this."""

    # An OTLP Export*ServiceRequest exactly as the receiver validated it (protobuf).
    OTLP_TRACES = "otlp.traces.v1+proto"
    OTLP_METRICS = "otlp.metrics.v1+proto"
    OTLP_LOGS = "otlp.logs.v1+proto"
    # A keiko event (anomaly, incident, alert state change ...) as a JSON object.
    EVENT_JSON = "keiko.event+json"
    # TCP edges (client container/pod -> server address) seen by the eBPF agent, as JSON.
    EDGES_JSON = "keiko.edges+json"


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A record to append: the store assigns its offset and time."""

    kind: str
    payload: bytes
    count: int = 1  # items inside the payload (spans, points, log records)
    key: str = ""  # partition key (trace id, series key); empty when none
    # Idempotency key: on NATS a record appended again with the same id within JetStream's
    # duplicate window (2 minutes) is stored once; a stage that replays after a takeover
    # writes the same events again. Empty: none. The embedded store ignores it.
    id: str = ""


@dataclass(frozen=True, slots=True)
class Record:
    """A stored record. Offsets start at 1 and grow by one per record in a stream."""

    offset: int
    time_ns: int  # when the store appended it (unix ns)
    kind: str
    payload: bytes
    count: int = 1
    key: str = ""


def check_stream_name(name: str) -> str:
    """Return ``name`` if it is a valid stream name, else raise ValueError naming the rule."""
    if not STREAM_NAME.match(name):
        raise ValueError(
            f"invalid stream name {name!r}: use 1-64 characters a-z, 0-9, '_' or '-', "
            "starting with a letter"
        )
    return name
