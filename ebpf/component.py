"""The eBPF node agent under `keiko run` (`probes.ebpf`): load, collect, write, export.

start() returns at once; a task loads the probes on a worker thread (each compile takes
a fraction of a second) and then collects every ``interval``: the attributed series go to
the ``metrics`` stream as one OTLP ExportMetricsServiceRequest, TCP edges to the
``edges`` stream as one JSON record, and the running totals to Prometheus. Where BPF is
unusable the agent says why once and runs the cgroupfs/procfs fallback instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from typing import Any

from prometheus_client import Histogram

from ebpf.agent import Agent, Batch
from ebpf.attribution import Attributor, CgroupIndex, v2_root
from ebpf.cardinality import Limiter
from ebpf.cgroup_watch import CgroupWatch, mount_prefix
from ebpf.config import EbpfConfig
from ebpf.diagnose import diagnose
from ebpf.encode import encode
from ebpf.export import PromExport
from ebpf.fallback import CgroupFallback
from ebpf.kube import KubeClient, PodCache, wanted
from ebpf.memory import release_compiler_memory
from ebpf.probe import Probe, ProbeError
from ebpf.registry import build_probes
from keiko.components import ComponentSpec, Context
from keiko.errors import KeikoError
from keiko.records import Kind, NewRecord, Stream

log = logging.getLogger(__name__)
EDGES_STREAM = "edges"


class EbpfAgent:
    """The `probes.ebpf` component."""

    name = "ebpf"

    def __init__(self, config: EbpfConfig, ctx: Context) -> None:
        self.config = config
        self.ctx = ctx
        self.probes = build_probes(config.probes.enabled(), config.maps.model_dump())  # fails fast
        self.up: dict[str, bool] = dict.fromkeys((p.name for p in self.probes), False)
        self.mode = "starting"  # "bpf" or "fallback" once loaded
        self.v2 = v2_root()
        self.watch: CgroupWatch | None = None
        pods = None
        if wanted(config.kubernetes):
            pods = PodCache(KubeClient(config.kubernetes), config.kubernetes.refresh)
        card = config.cardinality
        self.agent = Agent(
            [],
            Attributor(CgroupIndex(self.v2), pods),
            Limiter("cgroup", card.max_cgroups, card.idle_expiry),
            Limiter("remote", card.max_remote_endpoints, card.idle_expiry),
        )
        node = config.kubernetes.node_name or os.environ.get("NODE_NAME", "")
        self.resource = {"host.name": socket.gethostname(), "service.name": "keiko-ebpf"}
        if node:
            self.resource["k8s.node.name"] = node
        self.prom = PromExport(lambda: dict(self.up), self._folded, card.idle_expiry)
        registry = ctx.telemetry.registry
        self.duration = Histogram(
            "keiko_ebpf_collect_duration_seconds",
            "Time to read, attribute and bound one collect of every probe.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=None,
        )
        registry.register(self.prom)
        registry.register(self.duration)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.collects = 0

    def _folded(self) -> dict[str, int]:
        a = self.agent
        return {a.cgroups.label: a.cgroups.folded_total, a.remotes.label: a.remotes.folded_total}

    async def start(self) -> None:
        """Start the load-then-collect task; returns at once."""
        self._task = asyncio.create_task(self._run(), name="ebpf-agent")

    async def _run(self) -> None:
        self.agent.probes = await asyncio.to_thread(self._load)
        next_at = time.monotonic() + self.config.interval
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), max(0.0, next_at - time.monotonic()))
            if self._stop.is_set():
                return
            next_at = max(next_at + self.config.interval, time.monotonic())
            try:
                await self._collect_once()
            except Exception:  # never crash after start; the next interval tries again
                log.exception("eBPF agent: collect failed")

    def _load(self) -> list[Probe]:
        """Load what can be loaded; the fallback when BPF is unusable or nothing loaded."""
        problems = diagnose()
        loaded: list[Probe] = []
        if problems:
            self.up = {}
        else:
            self._watch_cgroups()  # first: attached before any probe reports up
            loaded = [p for p in self.probes if not self._closed and self._load_one(p)]
        if loaded:
            self.mode = "bpf"
            log.info("eBPF agent: %d probes loaded: %s", len(loaded), ", ".join(self.up))
            return loaded
        self._close_watch()  # no probe: no cgroup ids to resolve
        why = "; ".join(str(p) for p in problems) or "no probe could be loaded"
        if not self.config.fallback.enabled:
            log.warning("eBPF unusable on this node: %s. No node metrics (fallback off).", why)
            self.mode = "off"
            return []
        log.warning(
            "eBPF unusable on this node: %s. Collecting CPU, memory and disk per cgroup from "
            "cgroupfs and network per interface from /proc instead (run `keiko ebpf check`).",
            why,
        )
        self.mode = "fallback"
        return [CgroupFallback(self.config.cardinality.max_cgroups)]

    def _watch_cgroups(self) -> None:
        """Learn cgroup paths as the kernel creates them (short-lived ones included)."""
        if self.v2 is None or self._closed:
            return
        watch = CgroupWatch(self.config.cardinality.max_cgroups, mount_prefix(self.v2))
        try:
            watch.load()
        except ProbeError as exc:
            log.warning(
                "eBPF agent: cgroups removed within an interval stay unattributed: %s (fix: %s)",
                exc.why,
                exc.fix,
            )
            return
        self.watch = watch
        self.agent.cgroup_events = watch.drain_events

    def _load_one(self, probe: Probe) -> bool:
        try:
            probe.load()
        except ProbeError as exc:
            log.warning("eBPF probe %s not loaded: %s (fix: %s)", probe.name, exc.why, exc.fix)
        except Exception as exc:  # a probe bug must not stop the others
            log.warning("eBPF probe %s not loaded: %s", probe.name, exc, exc_info=True)
        else:
            self.up[probe.name] = True
            return True
        finally:
            # After each compile, not once at the end: the peak RSS is then one compile's
            # worth, not six (the pages come back from disk for the next compile).
            release_compiler_memory()
        self.up[probe.name] = False
        return False

    async def _collect_once(self) -> None:
        batch = await asyncio.to_thread(self.agent.collect)
        for name in batch.failed:
            self.up[name] = False
        for probe in self.agent.probes:
            if probe.name not in batch.failed and probe.name in self.up:
                self.up[probe.name] = True
        self.duration.observe(batch.duration_s)
        self.prom.update(batch.series)
        await self._write(batch)
        self.collects += 1

    async def _write(self, batch: Batch) -> None:
        records: list[tuple[str, NewRecord]] = []
        if batch.series:
            request = encode(batch.series, self.resource, batch.start_ns, batch.end_ns)
            payload = request.SerializeToString()
            records.append(
                (Stream.METRICS, NewRecord(Kind.OTLP_METRICS, payload, len(batch.series)))
            )
        if batch.edges:
            body = {
                "time_unix_nano": batch.end_ns,
                "start_time_unix_nano": batch.start_ns,
                "resource": self.resource,
                "edges": batch.edges,
            }
            payload = json.dumps(body, separators=(",", ":")).encode()
            records.append((EDGES_STREAM, NewRecord(Kind.EDGES_JSON, payload, len(batch.edges))))
        for stream, record in records:
            signal = "metrics" if stream == Stream.METRICS else "edges"
            self._count(self.ctx.telemetry.received, signal, record.count)
            try:
                await self.ctx.store.append(stream, [record])
            except KeikoError as exc:  # full or unavailable: this interval's deltas are lost
                self._count(self.ctx.telemetry.dropped, signal, record.count, exc.reason)
                log.warning("eBPF agent: %s not stored: %s", signal, exc)
                continue
            self._count(self.ctx.telemetry.accepted, signal, record.count)

    def _count(self, counter: Any, signal: str, n: int, *reason: str) -> None:
        counter.labels("ebpf", signal, self.mode, *reason).inc(n)

    async def shutdown(self, deadline: float) -> None:
        """Stop collecting, detach every probe. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                log.warning("eBPF agent: still collecting at the shutdown deadline")
            except Exception:
                log.exception("eBPF agent: the collect task failed")
        await asyncio.to_thread(self._close_all)
        registry = self.ctx.telemetry.registry
        for collector in (self.prom, self.duration):
            with contextlib.suppress(KeyError):
                registry.unregister(collector)

    def _close_all(self) -> None:
        for probe in {id(p): p for p in [*self.probes, *self.agent.probes]}.values():
            try:
                probe.close()
            except Exception:
                log.exception("eBPF probe %s: close failed", probe.name)
        self._close_watch()
        self.up = dict.fromkeys(self.up, False)

    def _close_watch(self) -> None:
        watch, self.watch = self.watch, None
        if watch is not None:
            self.agent.cgroup_events = None
            watch.close()


def build(config: EbpfConfig, ctx: Context) -> EbpfAgent:
    """The factory of `probes.ebpf`."""
    return EbpfAgent(config, ctx)


SPEC = ComponentSpec(
    section="probes",
    name="ebpf",
    config_model=EbpfConfig,
    factory=build,
    description="eBPF node agent: bcc programs on kernel tracepoints (run-queue latency, TCP "
    "connections and retransmits, disk latency, failed syscalls, process lifecycle) per "
    "container and pod; cgroupfs/procfs fallback where BPF is unusable.",
)
