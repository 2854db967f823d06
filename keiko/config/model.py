"""The whole config file: core sections here, component sections from the registry."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from keiko.security import AuthConfig, TLSConfig
from keiko.store.config import StoreConfig, Strict
from keiko.units import Duration, Endpoint


class LoggingConfig(Strict):
    """The `logging:` section."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Log level."
    )
    format: Literal["text", "json"] = Field(
        default="text", description="text for people, json for log shippers."
    )


class ApiConfig(Strict):
    """keiko's HTTP API: health, readiness, Prometheus metrics, store stats, events."""

    enabled: bool = Field(default=True, description="Serve the HTTP API.")
    endpoint: Endpoint = Field(default="127.0.0.1:8470", description="host:port to listen on.")
    tls: TLSConfig | None = Field(
        default=None, description="Serve HTTPS (and mutual TLS) when set."
    )
    auth: AuthConfig | None = Field(
        default=None,
        description="Require a bearer token (except on /healthz, /readyz and /metrics).",
    )
    metrics_auth: bool = Field(default=False, description="Also require the token on /metrics.")
    shutdown_grace: Duration = Field(default=10.0, description="Seconds to drain on shutdown.")


class KeikoConfig(Strict):
    """The root of keiko's YAML config."""

    store: StoreConfig = Field(default_factory=StoreConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    receivers: dict[str, Any] = Field(default_factory=dict, description="Receivers by name.")
    probes: dict[str, Any] = Field(default_factory=dict, description="Node probes by name.")
    analytics: dict[str, Any] = Field(default_factory=dict, description="Analytics stages.")
    alerting: dict[str, Any] = Field(default_factory=dict, description="Alerting stages.")

    def component(self, section: str, name: str) -> Any:
        """The validated config model of one component (see keiko.config.load)."""
        return getattr(self, section)[name]
