"""Where a config makes keiko listen, for the start-up summary and `keiko config check`.

Found by convention, so that every component is covered without registering anything: a
config model with an ``endpoint`` field listens there, over TLS when its sibling ``tls`` is
set, unless its own or an enclosing ``enabled`` is false.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from keiko.components import SECTIONS
from keiko.config import KeikoConfig
from keiko.units import split_endpoint

_WILDCARDS = {"0.0.0.0", "::", ""}


@dataclass(frozen=True)
class Listener:
    """One listening socket: its config path (``receivers.otlp.grpc``), endpoint and TLS."""

    name: str
    endpoint: str
    tls: bool

    @property
    def url(self) -> str:
        """``http(s)://host:port`` as configured."""
        return self._url(self.endpoint)

    @property
    def local_url(self) -> str:
        """The URL a client on this machine uses (a wildcard host becomes 127.0.0.1)."""
        host, port = split_endpoint(self.endpoint)
        return self._url(f"127.0.0.1:{port}" if host in _WILDCARDS else self.endpoint)

    def _url(self, endpoint: str) -> str:
        return f"{'https' if self.tls else 'http'}://{endpoint}"


def listeners(config: KeikoConfig) -> list[Listener]:
    """Every socket the config opens: the API first, then components in section order."""
    found = []
    if config.api.enabled:
        found.append(Listener("api", config.api.endpoint, config.api.tls is not None))
    for section in SECTIONS:
        for name, model in sorted(getattr(config, section).items()):
            if isinstance(model, BaseModel):
                found += _walk(model, f"{section}.{name}")
    return found


def _walk(model: BaseModel, path: str) -> list[Listener]:
    if getattr(model, "enabled", True) is False:
        return []
    found = []
    endpoint = getattr(model, "endpoint", None)
    if isinstance(endpoint, str):
        found.append(Listener(path, endpoint, getattr(model, "tls", None) is not None))
    for field in type(model).model_fields:
        value = getattr(model, field)
        if isinstance(value, BaseModel) and field != "tls":
            found += _walk(value, f"{path}.{field}")
    return found


def otel_sdk_hints(found: list[Listener]) -> list[str]:
    """The environment settings that point an OpenTelemetry SDK at keiko's OTLP receiver."""
    hints = []
    for listener in found:
        if "otlp" not in listener.name:
            continue
        if listener.name.endswith(".grpc"):
            hints.append(f"OTEL_EXPORTER_OTLP_ENDPOINT={listener.local_url}")
        elif listener.name.endswith(".http"):
            hints.append(
                "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf "
                f"OTEL_EXPORTER_OTLP_ENDPOINT={listener.local_url}"
            )
    return hints
