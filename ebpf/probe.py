"""The probe plug-in point: a bcc program on kernel tracepoints plus the code that reads it.

A probe is loaded once (compile + attach), collected every interval on a worker thread
(map reads are blocking ctypes calls) and closed on shutdown (detach; idempotent).
Probes register themselves in ``PROBES`` (ebpf/probes/__init__.py) under their name,
which is also their key in the config (``probes.ebpf.probes.<name>``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ebpf.points import Collected


class ProbeError(Exception):
    """A probe could not be loaded; ``fix`` tells the operator what to do."""

    def __init__(self, probe: str, why: str, fix: str = "") -> None:
        super().__init__(f"{probe}: {why}" + (f" (fix: {fix})" if fix else ""))
        self.probe, self.why, self.fix = probe, why, fix


class Probe(Protocol):
    """One bcc program and its loader."""

    name: str  # e.g. "runqlat"; the config key and the `probe` label of self-metrics
    tracepoints: tuple[str, ...]  # e.g. ("sched:sched_switch", ...), checked by `ebpf check`

    def load(self) -> None:
        """Compile and attach. Raise ProbeError with the reason and the fix on failure."""
        ...

    def collect(self) -> Collected:
        """Read and reset what the program gathered since the last call (deltas)."""
        ...

    def close(self) -> None:
        """Detach and free the program. Idempotent."""
        ...


# A factory gets the probe's map sizes (ebpf config) and returns an unloaded probe.
ProbeFactory = Callable[[dict[str, Any]], Probe]
