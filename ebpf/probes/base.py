"""What every bcc probe shares: compile + attach, clean detach, read-and-clear of maps.

A probe subclasses ``BccProbe``, names its program (``programs/<name>.c``) and its
tracepoints, and implements ``collect()`` with ``drain()`` and ``log2_histogram()``.
Programs see their map sizes as macros (``MAX_CGROUPS``, ``MAX_CONNECTIONS``,
``MAX_REMOTE_ENDPOINTS``) and get ``PRELUDE`` (``keiko_log2``). Counters use bcc's
``map.atomic_increment(key, n)``; a full map drops new keys, which ``drain`` notices and
``map_full_points`` reports.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ebpf.points import Collected, Log2Histogram, MetricPoint, PointKind
from ebpf.probe import ProbeError

PROGRAMS = Path(__file__).resolve().parent.parent / "programs"
DEFAULT_SIZES = {"max_cgroups": 4096, "max_connections": 65536, "max_remote_endpoints": 4096}

PRELUDE = r"""
/* log2 bucket of v (bucket 0 holds 0 and 1), as bcc's bpf_log2l without the +1. */
static __always_inline u32 keiko_log2(u64 v) { return v > 1 ? bpf_log2l(v) - 1 : 0; }
"""


def program_text(name: str) -> str:
    """The C text of ``ebpf/programs/<name>.c`` (shipped as package data)."""
    return (PROGRAMS / f"{name}.c").read_text()


def _why_and_fix(exc: Exception) -> tuple[str, str]:
    text = str(exc)
    if "Operation not permitted" in text or "Permission denied" in text:
        return text, "run as root or grant CAP_BPF+CAP_PERFMON (or CAP_SYS_ADMIN)"
    if "compile" in text or "headers" in text:
        return text, "install linux-headers for this kernel and link /lib/modules/$(uname -r)/build"
    if "tracepoint" in text or "attach" in text:
        return text, "mount tracefs (mount -t tracefs tracefs /sys/kernel/tracing)"
    return text, "run `keiko ebpf check` for the host's BPF prerequisites"


class BccProbe:
    """A bcc program from ``programs/<program>.c`` on tracepoints (auto-attached by bcc)."""

    name = ""
    program = ""  # defaults to ``name``
    tracepoints: tuple[str, ...] = ()

    def __init__(self, sizes: Mapping[str, Any] | None = None) -> None:
        self.sizes = {**DEFAULT_SIZES, **(sizes or {})}
        self.bpf: Any = None
        self._full: dict[str, int] = {}

    def cflags(self) -> list[str]:
        """Map sizes as -D macros, e.g. ``-DMAX_CGROUPS=4096``."""
        return [f"-D{key.upper()}={int(value)}" for key, value in self.sizes.items()]

    def source(self) -> str:
        """The C text handed to bcc: PRELUDE and the program (override to add to it)."""
        return PRELUDE + program_text(self.program or self.name)

    def load(self) -> None:
        """Compile and attach; any failure becomes a ProbeError with the fix."""
        if self.bpf is not None:
            return
        try:
            from bcc import BPF
        except ImportError as exc:
            raise ProbeError(
                self.name, f"bcc is not importable ({exc})", "apt-get install python3-bpfcc"
            ) from exc
        text = self.source()
        try:  # bcc warns (DeprecationWarning) about str arguments: hand it bytes
            self.bpf = BPF(text=text.encode(), cflags=self.cflags())
        except Exception as exc:  # bcc raises bare Exceptions for compile/load/attach
            raise ProbeError(self.name, *_why_and_fix(exc)) from exc

    def close(self) -> None:
        """Detach and free the program (bcc detaches tracepoints in cleanup). Idempotent."""
        bpf, self.bpf = self.bpf, None
        if bpf is not None:
            bpf.cleanup()

    def table(self, name: str) -> Any:
        if self.bpf is None:
            raise RuntimeError(f"probe {self.name} is not loaded")
        return self.bpf[name.encode()]

    def collect(self) -> Collected:
        raise NotImplementedError

    def drain(self, name: str) -> list[tuple[Any, Any]]:
        """``drain()`` of one of this probe's maps; remembers when it was full."""
        table = self.table(name)
        items = drain(table)
        if len(items) >= table.max_entries:
            self._full[name] = self._full.get(name, 0) + 1
        return items

    def map_full_points(self) -> list[MetricPoint]:
        """Collects that found a map full since the last call (new keys were dropped)."""
        full, self._full = self._full, {}
        return [
            MetricPoint(
                "keiko.ebpf.map.full",
                PointKind.COUNTER,
                float(times),
                labels={"probe": self.name, "map": name},
                unit="1",
                description="Collects that found a probe's BPF map full (samples dropped)",
            )
            for name, times in full.items()
        ]


def drain(table: Any) -> list[tuple[Any, Any]]:
    """Read every entry of a BPF hash and delete it: one batch syscall where the kernel
    has it (5.6+), else read then delete key by key (increments in between are lost).
    Scalar keys and values come back as ints, structs as their ctypes objects."""
    try:
        items = list(table.items_lookup_and_delete_batch())
    except Exception:  # bcc raises bare Exception when the kernel lacks the batch op
        items = list(table.items())
        for key, _ in items:
            with contextlib.suppress(KeyError):
                del table[key]
    return [(_plain(key), _plain(value)) for key, value in items]


def _plain(obj: Any) -> Any:
    # The batch call yields ints for scalar maps, items() yields c_ulong & co.
    return obj.value if isinstance(obj, ctypes._SimpleCData) else obj


def log2_histogram(slots: Sequence[int], unit: str, total: float | None) -> Log2Histogram:
    """A program's log2 slot array as a Log2Histogram, without the empty top slots."""
    counts = list(slots)
    while len(counts) > 1 and not counts[-1]:
        counts.pop()
    return Log2Histogram(tuple(int(c) for c in counts), unit, total)
