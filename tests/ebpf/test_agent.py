"""The eBPF agent end to end, in process: real probes in the kernel, a real embedded store.

A child process in a cgroup the test creates sleeps and wakes; one interval later the store
holds OTLP metrics attributed to that cgroup and Prometheus exposes them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from agent_harness import busy_child_in, running, v2_cgroup
from prometheus_client import generate_latest

from ebpf.registry import discover

pytestmark = pytest.mark.requires_bpf


def only(*names: str) -> dict[str, bool]:
    return {name: name in names for name in discover()[0]}


def points(requests: list, name: str) -> list:  # type: ignore[type-arg]
    found = []
    for req in requests:
        for rm in req.resource_metrics:
            for sm in rm.scope_metrics:
                found += [m for m in sm.metrics if m.name == name]
    return found


async def wait_for(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await cond():
        assert loop.time() < end, "timed out"
        await asyncio.sleep(0.1)


def test_runqlat_attributed_to_the_child_cgroup(tmp_path: Path) -> None:
    async def scenario() -> None:
        with v2_cgroup("keiko-test-agent") as cg:
            async with running(tmp_path, probes=only("runqlat")) as r:
                await wait_for(lambda: _true(r.agent.mode != "starting"))
                assert r.agent.mode == "bpf"
                with busy_child_in(cg, seconds=1.5):
                    await asyncio.sleep(1.6)

                async def have_child() -> bool:
                    found = points(await r.metrics(), "keiko.ebpf.runq.latency")
                    return any(
                        _attr(dp, "cgroup.path") == f"/{cg.name}"
                        for m in found
                        for dp in m.histogram.data_points
                    )

                await wait_for(have_child, timeout=3)
                requests = await r.metrics()
                rm = requests[-1].resource_metrics[0]
                assert {kv.key for kv in rm.resource.attributes} >= {"host.name", "service.name"}
                hist = [
                    dp
                    for m in points(requests, "keiko.ebpf.runq.latency")
                    for dp in m.histogram.data_points
                    if _attr(dp, "cgroup.path") == f"/{cg.name}"
                ]
                assert sum(dp.count for dp in hist) > 100  # ~2000 wakeups in 1.5 s
                assert all(len(dp.bucket_counts) == len(dp.explicit_bounds) + 1 for dp in hist)
                switches = points(requests, "keiko.ebpf.sched.switches")
                assert switches and switches[0].sum.is_monotonic
                text = generate_latest(r.telemetry.registry).decode()
                assert f'keiko_ebpf_runq_latency_seconds_count{{cgroup="/{cg.name}"' in text
                assert 'keiko_ebpf_probe_up{probe="runqlat"} 1.0' in text
                assert "keiko_ebpf_collect_duration_seconds_count" in text
                probes = list(r.agent.agent.probes)
            assert all(getattr(p, "bpf", None) is None for p in probes)  # detached
            await r.agent.shutdown(0)  # a second shutdown is a no-op

    asyncio.run(scenario())


async def _true(value: bool) -> bool:
    return value


def _attr(dp, key: str) -> str:  # type: ignore[no-untyped-def]
    return next((kv.value.string_value for kv in dp.attributes if kv.key == key), "")
