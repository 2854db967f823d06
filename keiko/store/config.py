"""Config of the streaming store (the `store:` section)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from keiko.units import ByteSize, Duration


class Strict(BaseModel):
    """Base of every config model: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Durability(StrEnum):
    """When an append counts as durable (the fsync policy)."""

    PROCESS = "process"  # in the OS before the ack: survives a crash of keiko, not of the machine
    POWER = "power"  # fsync'd before the ack: survives power loss; slower


class RetentionConfig(Strict):
    """How long records are kept, per stream. The oldest are removed first."""

    max_age: Duration = Field(
        default=7 * 86400, description="Remove records older than this (e.g. 7d)."
    )
    max_bytes: ByteSize = Field(
        default=10 * 1024**3,
        description="Keep each stream under this many bytes on disk (e.g. 10GiB); on NATS, "
        "JetStream reserves this much per stream up front.",
    )


class LimitsConfig(Strict):
    """Bounds that make appends push back (retryable errors) instead of growing forever."""

    max_backlog_bytes: ByteSize = Field(
        default=4 * 1024**3,
        description="Refuse appends to a stream (retryable) while its slowest consumer group "
        "is more than this many bytes behind. 0 turns the check off.",
    )
    max_pending_bytes: ByteSize = Field(
        default=256 * 1024**2,
        description="Refuse appends (retryable) while this many bytes wait to be written.",
    )
    retry_after: Duration = Field(
        default=1.0, description="The delay suggested to clients when an append is refused."
    )


class EmbeddedConfig(Strict):
    """The embedded backend: one directory of SQLite (WAL) files on local disk."""

    path: Path = Field(
        default=Path("keiko-data"), description="Data directory (created if missing)."
    )
    durability: Durability = Field(
        default=Durability.PROCESS,
        description="process: acknowledged data survives a crash of keiko (SQLite WAL, "
        "synchronous=NORMAL). power: also a power loss (fsync per commit, slower).",
    )
    compression: Literal["zstd", "none"] = Field(
        default="zstd",
        description="Compress payloads on disk. zstd cuts the bytes written (and the CPU the "
        "kernel spends writing them) about tenfold for OTLP batches.",
    )
    compression_level: int = Field(
        default=1, ge=-7, le=19, description="zstd level: 1 is fast; higher packs more."
    )
    segment_bytes: ByteSize = Field(
        default=64 * 1024**2,
        description="Start a new segment file after this many bytes on disk (also the "
        "bound of the write-ahead log of the segment being written).",
    )
    segment_age: Duration = Field(default=3600, description="Start a new segment after this long.")


class NatsConfig(Strict):
    """The NATS JetStream backend (for more than one machine)."""

    servers: list[str] = Field(
        default_factory=lambda: ["nats://127.0.0.1:4222"], description="NATS server URLs."
    )
    stream_prefix: str = Field(
        default="KEIKO",
        pattern=r"^[A-Z][A-Z0-9_]*$",
        description="Prefix of JetStream stream names.",
    )
    replicas: int = Field(default=1, ge=1, le=5, description="Replicas per JetStream stream.")
    partitions: int = Field(
        default=1,
        ge=1,
        le=256,
        description="Partitions of the traces and metrics streams: spans by trace id, "
        "metrics by service. Several `keiko analyze` workers share the partitions (each "
        "owned by one worker at a time, taken over when it dies), so this bounds how many "
        "analysis workers can help. Every process of one deployment must use the same "
        "number; it is recorded in the store at first start and a different one is refused.",
    )
    partition_lease: Duration = Field(
        default=15.0,
        ge=1.0,
        description="How long a `keiko analyze` worker's claim on a partition lasts without "
        "renewal (renewed every third of it): a worker that died has its partitions taken "
        "over after this long. Keep it well above clock skew and pauses (>= 10s).",
    )
    connect_timeout: Duration = Field(default=5.0, description="Seconds to wait for a connection.")
    credentials_file: Path | None = Field(default=None, description="NATS .creds file, if needed.")
    token: str | None = Field(default=None, description="NATS auth token, if needed.")


class Backend(StrEnum):
    """Which store implementation to use."""

    EMBEDDED = "embedded"
    NATS = "nats"


class StoreConfig(Strict):
    """The `store:` section."""

    backend: Backend = Field(default=Backend.EMBEDDED, description="embedded (default) or nats.")
    embedded: EmbeddedConfig = Field(default_factory=EmbeddedConfig)
    nats: NatsConfig = Field(default_factory=NatsConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
