"""Can this machine run bcc programs? If not, exactly why and how to fix it.

``diagnose()`` takes every fact it looks at as an injectable input (``Host``), so tests can
pose as a non-root user, a machine without tracefs or without kernel headers. The same
function serves `keiko ebpf check`, the agent's start-up and the tests' ``requires_bpf``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ebpf.probe import ProbeError

# Capability bits (linux/capability.h).
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason BPF cannot be used, with what to do about it."""

    why: str
    fix: str

    def __str__(self) -> str:
        return f"{self.why} (fix: {self.fix})"


def _effective_caps() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def _bcc_importable() -> bool:
    try:
        return importlib.util.find_spec("bcc") is not None
    except (ImportError, ValueError):
        return False


def _find_tracefs() -> Path | None:
    for path in TRACEFS_CANDIDATES:
        if (path / "events").is_dir():
            return path
    return None


@dataclass(frozen=True)
class Host:
    """The facts diagnose() looks at; ``Host.current()`` reads them from this machine."""

    system: str = field(default_factory=platform.system)
    euid: int = field(default_factory=lambda: os.geteuid() if hasattr(os, "geteuid") else -1)
    caps: int = field(default_factory=_effective_caps)
    bcc: bool = field(default_factory=_bcc_importable)
    tracefs: Path | None = field(default_factory=_find_tracefs)
    release: str = field(default_factory=platform.release)
    modules_root: Path = Path("/lib/modules")

    @classmethod
    def current(cls) -> Host:
        return cls()

    @property
    def headers(self) -> Path:
        return self.modules_root / self.release / "build"

    def has_cap(self, bit: int) -> bool:
        return bool(self.caps >> bit & 1)


def diagnose(host: Host | None = None) -> list[Problem]:
    """Every reason bcc programs cannot be loaded here (empty: BPF is usable)."""
    host = host or Host.current()
    if host.system != "Linux":
        return [Problem(f"eBPF needs Linux, this is {host.system}", "run keiko on a Linux node")]
    problems = []
    privileged = host.euid == 0 or host.has_cap(CAP_SYS_ADMIN)
    if not privileged and not (host.has_cap(CAP_BPF) and host.has_cap(CAP_PERFMON)):
        problems.append(
            Problem(
                f"not root (uid {host.euid}) and neither CAP_BPF+CAP_PERFMON nor CAP_SYS_ADMIN",
                "run as root, or grant CAP_BPF+CAP_PERFMON (setcap cap_bpf,cap_perfmon+ep; in "
                "Kubernetes securityContext.capabilities.add: [BPF, PERFMON]) or CAP_SYS_ADMIN",
            )
        )
    if not host.bcc:
        problems.append(
            Problem(
                "the Python module bcc is not importable",
                "install Debian's python3-bpfcc (apt-get install python3-bpfcc) and make it "
                "visible to keiko's Python (make test does); never pip-install the unrelated "
                "PyPI package named bcc",
            )
        )
    if not host.headers.exists():
        problems.append(
            Problem(
                f"kernel headers missing under {host.headers}",
                "install linux-headers-amd64 (or linux-headers-$(uname -r)) and link "
                f"{host.headers}, or run deploy/ebpf-host-setup.sh",
            )
        )
    if host.tracefs is None or not (host.tracefs / "events").is_dir():
        problems.append(
            Problem(
                "tracefs is not mounted",
                "mount -t tracefs tracefs /sys/kernel/tracing",
            )
        )
    return problems


def missing_tracepoints(tracepoints: tuple[str, ...], host: Host | None = None) -> list[str]:
    """The ``category:name`` tracepoints this kernel does not have (needs tracefs)."""
    host = host or Host.current()
    if host.tracefs is None:
        return list(tracepoints)
    events = host.tracefs / "events"
    return [tp for tp in tracepoints if not (events / tp.replace(":", "/", 1)).is_dir()]


def bpf_unusable_reason(host: Host | None = None) -> str | None:
    """One line for a pytest skip or a log: None when BPF is usable."""
    problems = diagnose(host)
    return "; ".join(str(p) for p in problems) or None


@dataclass(frozen=True, slots=True)
class ProbeCheck:
    """The outcome of loading one probe: ok, or why not and how to fix it."""

    probe: str
    ok: bool
    why: str = ""
    fix: str = ""
    load_seconds: float = 0.0


def check_probe(probe: Any, host_problems: list[Problem], host: Host | None = None) -> ProbeCheck:
    """Load ``probe`` (then close it) unless the host or its tracepoints already rule it out."""
    name = probe.name
    if host_problems:
        return ProbeCheck(
            name,
            False,
            "; ".join(p.why for p in host_problems),
            "; ".join(p.fix for p in host_problems),
        )
    missing = missing_tracepoints(tuple(probe.tracepoints), host)
    if missing:
        return ProbeCheck(
            name,
            False,
            f"tracepoint(s) missing in this kernel: {', '.join(missing)}",
            "a kernel with these tracepoints (see /sys/kernel/tracing/events)",
        )
    started = time.perf_counter()
    try:
        probe.load()
    except ProbeError as exc:
        return ProbeCheck(name, False, exc.why, exc.fix)
    except Exception as exc:  # a probe's own bug: report it rather than crash the check
        return ProbeCheck(name, False, f"{type(exc).__name__}: {exc}", "report this bug")
    finally:
        with contextlib.suppress(Exception):
            probe.close()
    return ProbeCheck(name, True, load_seconds=time.perf_counter() - started)
