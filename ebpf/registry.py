"""Every probe module of the ebpf.probes package, imported so that each registers itself.

New probes need no edit here: any module in ebpf/probes/ that uses ``@register`` counts.
A module that fails to import is reported (by name, with the error), not fatal.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Mapping
from typing import Any

import ebpf.probes
from ebpf.config import ProbesConfig
from ebpf.probe import Probe, ProbeFactory
from ebpf.probes import PROBES

log = logging.getLogger(__name__)
_broken: dict[str, str] = {}


def discover() -> tuple[dict[str, ProbeFactory], dict[str, str]]:
    """(probe factories by name, modules that failed to import: module -> error)."""
    for info in pkgutil.iter_modules(ebpf.probes.__path__, "ebpf.probes."):
        if info.name in _broken:
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            _broken[info.name] = f"{type(exc).__name__}: {exc}"
            log.warning("eBPF probe module %s cannot be imported: %s", info.name, exc)
    return dict(PROBES), dict(_broken)


def build_probes(enabled: Mapping[str, bool], maps: Mapping[str, Any]) -> list[Probe]:
    """Unloaded probes: every registered one not switched off in ``enabled``.

    Raises ValueError naming the known probes when ``enabled`` names an unknown one; the
    default names only warn when absent (a probe module that failed to import).
    """
    factories, _ = discover()
    absent = set(enabled) - set(factories)
    unknown = sorted(absent - set(ProbesConfig.model_fields))
    for name in sorted(absent & set(ProbesConfig.model_fields)):
        if enabled[name]:
            log.warning("eBPF probe %s is not available in this installation", name)
    if unknown:
        raise ValueError(
            f"probes.ebpf.probes: unknown probe(s) {', '.join(unknown)}; "
            f"known here: {', '.join(sorted(factories)) or 'none'}"
        )
    return [
        factory(dict(maps))
        for name, factory in sorted(factories.items())
        if enabled.get(name, True)
    ]
