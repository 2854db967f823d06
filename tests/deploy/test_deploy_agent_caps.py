"""The node agent's capabilities are enough: every eBPF probe loads in a root process that
has only the capabilities the DaemonSet adds (setpriv narrows the bounding set, as the
container runtime does), and not without CAP_PERFMON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from kube_objects import Obj, container, one

pytestmark = pytest.mark.slow
# Bits of /proc/self/status CapBnd (linux/capability.h).
CAP_BITS = {"SYS_PTRACE": 19, "SYS_RESOURCE": 24, "PERFMON": 38, "BPF": 39}


def ebpf_check(caps: set[str]) -> dict[str, Any]:
    """`keiko ebpf check --json` as root with the bounding set narrowed to ``caps``."""
    bounding = ",".join(["-all", *(f"+{c.lower()}" for c in sorted(caps))])
    keiko = [sys.executable, "-m", "keiko.cli", "ebpf", "check", "--json"]
    done = subprocess.run(
        ["setpriv", "--bounding-set", bounding, "--", *keiko],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def this_machines_caps() -> set[str]:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            bits = int(line.split()[1], 16)
            return {name for name, bit in CAP_BITS.items() if bits >> bit & 1}
    return set()


def test_probes_load_with_exactly_the_daemonsets_capabilities(
    rendered: dict[str, list[Obj]],
) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to narrow the capabilities")
    full = ebpf_check(set(CAP_BITS) | {"SYS_ADMIN"})
    if not full["ok"]:
        pytest.skip(f"eBPF probes do not load on this host even as root: {full}")
    ds = one(rendered["clustered"], "DaemonSet", "keiko-agent")
    added = set(container(ds, "agent")["securityContext"]["capabilities"]["add"])
    # A capability this machine's own bounding set lacks cannot be granted here (this
    # sandbox has no CAP_SYS_RESOURCE; kernels >= 5.11 do not need it for BPF maps).
    granted = added & this_machines_caps()
    assert {"BPF", "PERFMON"} <= granted
    report = ebpf_check(granted)
    assert report["ok"], [p for p in report["probes"] if not p["ok"]]
    assert len(report["probes"]) == len(full["probes"])
    without = ebpf_check(granted - {"PERFMON"})
    assert not without["ok"], "the check would pass without CAP_PERFMON: it tests nothing"
