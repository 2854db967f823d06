"""Config of the OTLP receiver (the `receivers.otlp` section)."""

from __future__ import annotations

from pydantic import Field

from keiko.security import AuthConfig, TLSConfig
from keiko.store.config import Strict
from keiko.units import ByteSize, Endpoint


class GrpcConfig(Strict):
    """OTLP/gRPC (the trace, metrics and logs services of opentelemetry-proto)."""

    enabled: bool = Field(default=True, description="Serve OTLP/gRPC.")
    endpoint: Endpoint = Field(
        default="127.0.0.1:4317",
        description="host:port to listen on; 0.0.0.0:4317 to accept other machines.",
    )
    tls: TLSConfig | None = Field(
        default=None,
        description="Serve gRPC over TLS (and mutual TLS with client_ca_file) when set.",
    )


class HttpConfig(Strict):
    """OTLP/HTTP: POST /v1/traces, /v1/metrics, /v1/logs in protobuf or JSON, optionally gzip."""

    enabled: bool = Field(default=True, description="Serve OTLP/HTTP.")
    endpoint: Endpoint = Field(
        default="127.0.0.1:4318",
        description="host:port to listen on; 0.0.0.0:4318 to accept other machines.",
    )
    tls: TLSConfig | None = Field(
        default=None, description="Serve HTTPS (and mutual TLS with client_ca_file) when set."
    )


class OtlpReceiverConfig(Strict):
    """The OTLP receiver: applications' OpenTelemetry SDKs and collectors send here."""

    enabled: bool = Field(default=True, description="Run the OTLP receiver.")
    grpc: GrpcConfig = Field(default_factory=GrpcConfig, description="OTLP/gRPC transport.")
    http: HttpConfig = Field(default_factory=HttpConfig, description="OTLP/HTTP transport.")
    auth: AuthConfig | None = Field(
        default=None,
        description="Require 'Authorization: Bearer <token>' on both transports when set.",
    )
    max_request_bytes: ByteSize = Field(
        default=16 * 1024**2,
        gt=0,
        description="Largest request accepted, after gzip decompression. Bigger ones get 400 / "
        "INVALID_ARGUMENT, which exporters do not retry. gRPC's own message limit is set to "
        "twice this plus 1MiB, so that keiko answers rather than grpc core, whose "
        "RESOURCE_EXHAUSTED exporters would retry forever.",
    )
