"""The registry of probes: name -> factory. Each module adds itself here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ebpf.probe import ProbeFactory

PROBES: dict[str, ProbeFactory] = {}
F = TypeVar("F", bound=ProbeFactory)


def register(name: str) -> Callable[[F], F]:
    """Class decorator: ``@register("runqlat")`` adds the class as a probe factory."""

    def add(cls: F) -> F:
        PROBES[name] = cls
        return cls

    return add
