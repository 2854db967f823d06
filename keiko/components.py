"""The plug-in point for stage packages: a component spec, its lifecycle and the registry.

Stage packages (collectors, ebpf, analytics, alerting) are never imported by the core by
name. Each declares a :class:`ComponentSpec` under the ``keiko.components`` entry point
group in its distribution's metadata; the core finds them there, validates their config
section and builds them with their factory. Every component has ``start()``, which
returns quickly, and an idempotent ``shutdown(deadline)``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from keiko.config.model import KeikoConfig
    from keiko.store.base import Store
    from keiko.telemetry import Telemetry

log = logging.getLogger(__name__)

SECTIONS = ("receivers", "probes", "analytics", "alerting")


class Component(Protocol):
    """Anything `keiko run` starts and stops."""

    name: str

    async def start(self) -> None:
        """Start serving or processing; return quickly (long work goes in tasks)."""
        ...

    async def shutdown(self, deadline: float) -> None:
        """Stop intake, flush and cancel tasks by ``deadline`` (monotonic). Idempotent."""
        ...


@dataclass
class Context:
    """What a component factory gets: the store, telemetry, API routes and the whole config."""

    store: Store
    telemetry: Telemetry
    config: KeikoConfig
    routes: list[BaseRoute] = field(default_factory=list)  # mounted on keiko's HTTP API
    # Config changes a component can take without a restart (called on SIGHUP).
    reloaders: list[Callable[[KeikoConfig], None]] = field(default_factory=list)


@dataclass(frozen=True)
class ComponentSpec:
    """How to configure and build one kind of component."""

    section: str  # one of SECTIONS: where its config lives (e.g. receivers.otlp)
    name: str
    config_model: type[BaseModel]  # must have an `enabled: bool` field
    factory: Callable[[Any, Context], Component]
    description: str = ""
    # The stream a StreamWorker component consumes. When set and the store is shared
    # (NATS), the component runs as one worker per partition of that stream under leases
    # (keiko.stream.partitions), so several processes share the work.
    partitioned_stream: str | None = None


def registry() -> dict[tuple[str, str], ComponentSpec]:
    """Every installed component spec, by (section, name)."""
    found: dict[tuple[str, str], ComponentSpec] = {}
    for ep in entry_points(group="keiko.components"):
        spec = ep.load()
        if not isinstance(spec, ComponentSpec) or spec.section not in SECTIONS:
            raise TypeError(f"entry point {ep.name} = {ep.value} is not a valid ComponentSpec")
        found[(spec.section, spec.name)] = spec
    return found
