"""Config shared by stream workers: fetch settings and where the state is checkpointed.

A stage's config model derives from :class:`StreamStageConfig` (its keys sit at the top of
the stage's section: ``enabled``, ``fetch_batch``, ``fetch_timeout``, ``checkpoint``). A
stage that wants its own bucket by default (or its own wording in the reference docs)
subclasses :class:`CheckpointConfig`, redeclares ``bucket`` and redeclares ``checkpoint``
with that type; a redeclared field keeps its place in the docs.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from keiko.store.config import Strict
from keiko.units import ByteSize, Duration

_BUCKET = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# NATS refuses messages over max_payload (1 MiB by default), headers included.
MAX_CHUNK_BYTES = 1024**2 - 4096
BUCKET_DESCRIPTION = "Key-value bucket of the checkpoint (A-Z a-z 0-9 _ -)."


class CheckpointConfig(Strict):
    """Where and how often the stage's state is saved (restored at start)."""

    interval: Duration = Field(
        default=60.0,
        gt=0,
        description="Save the state this often; the consumer offset is committed with it, "
        "so a crash replays at most this much. On the nats backend under 30s avoids "
        "JetStream redelivering records left uncommitted longer (they are skipped, but "
        "fetched again).",
    )
    max_records: int = Field(
        default=5000,
        gt=0,
        description="Also save once this many records were consumed since the last save. "
        "Keep it under the NATS backend's 10000 records a group may hold uncommitted.",
    )
    # Stages sharing a bucket must use different checkpoint names (the keys' prefix).
    bucket: str = Field(default="checkpoints", description=BUCKET_DESCRIPTION)
    chunk_bytes: ByteSize = Field(
        default=512 * 1024,
        gt=0,
        le=MAX_CHUNK_BYTES,
        description="Checkpoints are split into values of at most this size (NATS KV "
        "values must fit in one message, 1 MiB by default).",
    )

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET.match(value):
            raise ValueError("use 1-64 characters A-Z, a-z, 0-9, '_' or '-'")
        return value


class StreamStageConfig(Strict):
    """The keys every stream worker's section has."""

    enabled: bool = Field(default=True, description="Run the stage.")
    fetch_batch: int = Field(
        default=200, gt=0, le=10_000, description="Records fetched from the store at once."
    )
    fetch_timeout: Duration = Field(
        default=1.0, gt=0, description="How long one fetch waits for records."
    )
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
