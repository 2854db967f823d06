"""Fault injection for the demo services: extra latency and an error rate, per service.

A fault is given on the command line as ``SERVICE:latency=200ms``, ``SERVICE:errors=0.3``
or both at once (``payment:latency=150ms,errors=0.2``), optionally delayed with
``after=10s`` so that the first part of a run shows the healthy baseline that a detector
learns from. The plan can also be changed while the demo runs (:meth:`FaultPlan.set`),
which is the hook later demos use to switch a fault on and off.
"""

from __future__ import annotations

import math
import random
import threading
import time
from dataclasses import dataclass, field

from keiko.units import parse_duration

FAULT_SYNTAX = (
    "SERVICE:latency=200ms | SERVICE:errors=0.3 | SERVICE:latency=1s,errors=0.1,after=10s"
)


class InjectedFault(Exception):
    """Raised inside a service handler when the fault plan says this request fails."""


@dataclass(frozen=True, slots=True)
class Fault:
    """What goes wrong on one service: added latency, a share of failing requests."""

    latency: float = 0.0  # seconds added to every request
    error_rate: float = 0.0  # share of requests that fail, 0..1
    after: float = 0.0  # seconds after the start of the run before the fault begins

    def describe(self) -> str:
        """``latency=200ms,errors=0.3`` (the form it was given in)."""
        parts = []
        if self.latency:
            parts.append(f"latency={self.latency * 1000:g}ms")
        if self.error_rate:
            parts.append(f"errors={self.error_rate:g}")
        if self.after:
            parts.append(f"after={self.after:g}s")
        return ",".join(parts)


def parse_seconds(text: str) -> float:
    """``"200ms"``, ``"1.5s"``, ``"2m"`` or a bare number of seconds -> seconds."""
    try:
        seconds = float(text)
    except ValueError:
        return parse_duration(text)
    if not 0 <= seconds < math.inf:
        raise ValueError(f"{text!r} is not a duration: use 0 or more seconds, or e.g. 250ms, 5m")
    return seconds


def parse_fault(text: str, services: tuple[str, ...]) -> tuple[str, Fault]:
    """Parse ``SERVICE:key=value[,key=value]``; raise ValueError with the allowed forms."""
    service, sep, spec = text.partition(":")
    service = service.strip()
    if not sep or not spec.strip():
        raise ValueError(f"{text!r}: expected {FAULT_SYNTAX}")
    if service not in services:
        raise ValueError(f"{text!r}: unknown service {service!r}; one of {', '.join(services)}")
    values: dict[str, float] = {}
    for item in spec.split(","):
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq or key not in ("latency", "errors", "after"):
            raise ValueError(f"{text!r}: {item.strip()!r} is not latency=…, errors=… or after=…")
        if key in values:
            raise ValueError(f"{text!r}: {key} is given twice")
        try:
            values[key] = float(value) if key == "errors" else parse_seconds(value)
        except ValueError as exc:
            raise ValueError(f"{text!r}: {key}: {exc}") from None
    rate = values.get("errors", 0.0)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{text!r}: errors must be a share between 0 and 1, e.g. errors=0.3")
    if not values.keys() - {"after"}:
        raise ValueError(f"{text!r}: give latency=… and/or errors=…")
    return service, Fault(values.get("latency", 0.0), rate, values.get("after", 0.0))


@dataclass
class FaultPlan:
    """The faults in force, by service; safe to read and change from any thread."""

    faults: dict[str, Fault] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def restart_clock(self) -> None:
        """Count the faults' ``after`` delays from now (the start of the load)."""
        self.started = time.monotonic()

    def set(self, service: str, fault: Fault | None) -> None:
        """Switch ``service``'s fault on (or off with None) from now on."""
        with self._lock:
            if fault is None:
                self.faults.pop(service, None)
            else:
                self.faults[service] = fault

    def active(self, service: str) -> Fault | None:
        """The fault in force on ``service`` now, if any."""
        with self._lock:
            fault = self.faults.get(service)
        if fault is None or time.monotonic() - self.started < fault.after:
            return None
        return fault

    def apply(self, service: str) -> None:
        """Called at the start of every request that ``service`` handles.

        Sleeps for the injected latency, then raises InjectedFault for the chosen share
        of requests. The latency comes first, so failing requests are slow too.
        """
        fault = self.active(service)
        if fault is None:
            return
        if fault.latency:
            time.sleep(fault.latency)
        if fault.error_rate:
            with self._lock:
                fail = self.rng.random() < fault.error_rate
            if fail:
                raise InjectedFault(f"injected fault on {service} (errors={fault.error_rate:g})")
