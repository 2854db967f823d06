"""`keiko ebpf check` for real (every probe loads here as root) and diagnose() with
injected host conditions (non-root uid, no tracefs, no headers, no bcc, not Linux)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ebpf.diagnose import (
    CAP_BPF,
    CAP_PERFMON,
    CAP_SYS_ADMIN,
    Host,
    check_probe,
    diagnose,
    missing_tracepoints,
)
from ebpf.probe import ProbeError
from ebpf.registry import discover
from keiko.cli import main


def fake_host(tmp_path: Path, **kw: object) -> Host:
    """A machine where everything is fine unless ``kw`` says otherwise."""
    tracefs = tmp_path / "tracing"
    (tracefs / "events" / "sched" / "sched_switch").mkdir(parents=True, exist_ok=True)
    (tmp_path / "modules" / "6.1.0-test" / "build").mkdir(parents=True, exist_ok=True)
    base = dict(
        system="Linux",
        euid=0,
        caps=0,
        bcc=True,
        tracefs=tracefs,
        release="6.1.0-test",
        modules_root=tmp_path / "modules",
    )
    return Host(**{**base, **kw})  # type: ignore[arg-type]


def test_a_healthy_host_has_no_problems(tmp_path: Path) -> None:
    assert diagnose(fake_host(tmp_path)) == []


def test_non_root_without_capabilities(tmp_path: Path) -> None:
    (p,) = diagnose(fake_host(tmp_path, euid=1000))
    assert "not root (uid 1000)" in p.why and "CAP_BPF" in p.fix
    bpf_perfmon = 1 << CAP_BPF | 1 << CAP_PERFMON
    assert diagnose(fake_host(tmp_path, euid=1000, caps=bpf_perfmon)) == []
    assert diagnose(fake_host(tmp_path, euid=1000, caps=1 << CAP_SYS_ADMIN)) == []
    assert diagnose(fake_host(tmp_path, euid=1000, caps=1 << CAP_BPF))  # PERFMON missing


def test_missing_pieces_each_name_their_fix(tmp_path: Path) -> None:
    (p,) = diagnose(fake_host(tmp_path, bcc=False))
    assert "bcc" in p.why and "python3-bpfcc" in p.fix and "never" in p.fix
    (p,) = diagnose(fake_host(tmp_path, release="9.9.9-none"))
    assert "9.9.9-none/build" in p.why and "linux-headers" in p.fix
    assert "deploy/ebpf-host-setup.sh" in p.fix
    (p,) = diagnose(fake_host(tmp_path, tracefs=None))
    assert p.why == "tracefs is not mounted"
    assert p.fix == "mount -t tracefs tracefs /sys/kernel/tracing"
    (p,) = diagnose(fake_host(tmp_path, system="Darwin"))
    assert "needs Linux" in p.why


def test_missing_tracepoint_fails_the_probe(tmp_path: Path) -> None:
    host = fake_host(tmp_path)
    tps = ("sched:sched_switch", "oom:mark_victim")
    assert missing_tracepoints(tps, host) == ["oom:mark_victim"]

    class Probe:
        name, tracepoints, loaded = "p", tps, False

        def load(self) -> None:
            self.loaded = True

        def close(self) -> None:
            pass

    probe = Probe()
    result = check_probe(probe, [], host)
    assert not result.ok and "oom:mark_victim" in result.why and not probe.loaded


def test_a_probe_error_is_reported_with_its_fix(tmp_path: Path) -> None:
    closed = []

    class Broken:
        name, tracepoints = "broken", ("sched:sched_switch",)

        def load(self) -> None:
            raise ProbeError("broken", "compile failed: no such map type", "upgrade the kernel")

        def close(self) -> None:
            closed.append(True)

    result = check_probe(Broken(), [], fake_host(tmp_path))
    assert (result.ok, result.why, result.fix) == (
        False,
        "compile failed: no such map type",
        "upgrade the kernel",
    )
    assert closed


@pytest.mark.requires_bpf
def test_keiko_ebpf_check_loads_every_probe(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ebpf", "check"]) == 0
    out = capsys.readouterr().out
    names = sorted(discover()[0])
    for name in names:
        assert f"{name} " in out and "FAILED" not in out
    assert f"{len(names)}/{len(names)} probes load on this host" in out
    assert main(["ebpf", "check", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["ok"] is True and body["host"] == []
    assert sorted(p["probe"] for p in body["probes"]) == names
    assert all(p["ok"] and p["load_seconds"] > 0 for p in body["probes"])


def test_keiko_ebpf_check_fails_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(Host, "current", classmethod(lambda cls: fake_host(tmp_path, euid=1000)))
    assert main(["ebpf", "check"]) == 1
    out = capsys.readouterr().out
    assert "FAILED  not root (uid 1000)" in out and "fix: run as root" in out
