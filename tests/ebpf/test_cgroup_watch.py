"""cgroup ids learnt as the kernel creates and removes cgroups: a cgroup created and
removed between two collects is still attributed to its path, on real kernel events."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.cgroups import CGROUP_FS, cgroup, v2_cgroup

from ebpf.agent import Agent
from ebpf.attribution import Attributor, CgroupIndex, v2_root
from ebpf.cardinality import Limiter
from ebpf.cgroup_watch import CgroupEvent, CgroupWatch, mount_prefix, relative
from ebpf.probes.proc import ProcProbe


def test_paths_are_made_relative_to_the_agents_mount() -> None:
    assert relative("/a/b", "") == "/a/b"
    assert relative("/", "") == "/"
    assert relative("/kubepods/pod1/c", "/kubepods") == "/pod1/c"
    assert relative("/kubepods", "/kubepods") == "/"
    assert relative("/kubepodsX/c", "/kubepods") is None  # outside the mount


def test_mount_prefix_reads_the_cgroup2_mounts_root(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "30 25 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
        "41 31 0:38 /kubepods /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    )
    assert mount_prefix(Path("/sys/fs/cgroup/unified"), info) == "/kubepods"
    assert mount_prefix(Path("/sys/fs/cgroup/cpu"), info) == "/"  # not cgroup2
    assert mount_prefix(Path("/x"), tmp_path / "missing") == "/"


def test_removed_cgroups_are_kept_one_more_interval_then_forgotten() -> None:
    index = CgroupIndex(None)
    index.learn([CgroupEvent(7, "/job"), CgroupEvent(8, "/live")])
    index.learn([CgroupEvent(7, "/job", removed=True)])
    index.end_interval()  # the collect that saw the removal
    assert index.path(7) == "/job"
    index.end_interval()  # one more interval
    assert index.path(7) is None
    assert index.path(8) == "/live"


def test_learned_paths_are_bounded_oldest_first() -> None:
    index = CgroupIndex(None, max_learned=3)
    index.learn(CgroupEvent(i, f"/c{i}") for i in range(5))
    assert index.learned == 3
    assert [index.path(i) for i in range(5)] == [None, None, "/c2", "/c3", "/c4"]


@pytest.fixture
def watch(bpf: None) -> Iterator[CgroupWatch]:
    root = v2_root()
    assert root is not None
    w = CgroupWatch(mount_prefix=mount_prefix(root))
    w.load()
    try:
        yield w
    finally:
        w.close()


def test_the_kernel_reports_v2_cgroups_created_and_removed(watch: CgroupWatch) -> None:
    with v2_cgroup() as parent, cgroup(parent.path, "child") as child:
        parent_id, child_id = parent.id, child.id
    v1_names = []
    v1 = CGROUP_FS / "cpu"
    if v1.is_dir() and not (v1 / "cgroup.controllers").exists():  # hybrid: a v1 hierarchy
        with cgroup(v1, "keiko-v1") as other:
            v1_names.append(f"/{other.path.name}")
    events = {e.cgroup_id: e for e in watch.drain_events()}
    assert events[parent_id] == CgroupEvent(parent_id, f"/{parent.path.name}", removed=True)
    assert events[child_id] == CgroupEvent(
        child_id, f"/{parent.path.name}/{child.path.name}", removed=True
    )
    assert not [e for e in events.values() if e.path in v1_names]  # v2 hierarchy only
    assert watch.drain_events() == []  # drained


def test_a_cgroup_gone_before_the_collect_is_attributed(watch: CgroupWatch) -> None:
    probe = ProcProbe()
    probe.load()
    try:
        index = CgroupIndex(v2_root())
        agent = Agent([probe], Attributor(index), Limiter("c", 100, 60), Limiter("r", 100, 60))
        agent.cgroup_events = watch.drain_events
        with v2_cgroup() as cg:
            cgroup_id = cg.id
            done = cg.run([sys.executable, "-c", "pass"])
            assert done.returncode == 0, done.stderr
        assert not cg.path.exists()
        series = agent.collect().series
    finally:
        probe.close()
    execs = [
        dict(s.attributes)["cgroup.path"] for s in series if s.name == "keiko.ebpf.process.execs"
    ]
    assert f"/{cg.path.name}" in execs, execs
    assert not [p for p in execs if p.startswith("unknown:")], execs
    assert index.path(cgroup_id) == f"/{cg.path.name}"  # kept one more interval
    agent.collect()
    assert index.path(cgroup_id) is None  # then forgotten
