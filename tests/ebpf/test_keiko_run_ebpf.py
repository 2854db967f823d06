"""`keiko run` as the node agent: a real subprocess loads the real probes, and what a
workload does in its own cgroup shows up on /metrics and in the store (OTLP metrics in
the `metrics` stream, TCP edges in the `edges` stream)."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from fixtures.cgroups import v2_cgroup
from fixtures.keiko import KeikoProcess

pytestmark = pytest.mark.requires_bpf

CONNECTS = 50
CLIENT = """
import socket, sys
for _ in range({n}):
    socket.create_connection(("127.0.0.1", int(sys.argv[1]))).close()
"""


def test_keiko_run_exports_probe_metrics_and_edges(
    keiko_process: Callable[..., KeikoProcess],
) -> None:
    kp = keiko_process({"probes": {"ebpf": {"interval": "1s"}}})
    with kp.client() as api:
        deadline = time.monotonic() + 30
        while 'keiko_ebpf_probe_up{probe="tcplife"} 1.0' not in api.get("/metrics").text:
            assert time.monotonic() < deadline, "tcplife never came up:\n" + kp.log_text()[-3000:]
            time.sleep(0.3)

        server = socket.create_server(("127.0.0.1", 0), backlog=CONNECTS)
        port = server.getsockname()[1]
        # A short-lived job: its cgroup is gone before the agent collects. The agent learnt
        # the cgroup's path from the kernel (cgroup_mkdir/rmdir), so it is still named.
        with v2_cgroup() as cg:
            done = cg.run([sys.executable, "-c", CLIENT.format(n=CONNECTS), str(port)])
            assert done.returncode == 0, done.stderr
            for _ in range(CONNECTS):
                server.accept()[0].close()
            server.close()
        cgroup_name = cg.path.name
        assert not cg.path.exists()
        lines = wait_for_connects(api, f'remote="127.0.0.1:{port}"')
        assert sum(float(ln.rsplit(" ", 1)[1]) for ln in lines) >= CONNECTS
        assert cgroup_name in "".join(lines), lines  # attributed to the job's own cgroup
        assert "unknown:" not in "".join(lines), lines

        records = api.get("/api/v1/streams/metrics/records", params={"limit": 50}).json()
        resources = [
            r["payload"]["resourceMetrics"]
            for r in records["records"]
            if r["encoding"] == "otlp_json"
        ]
        names = {
            m["name"]
            for rms in resources
            for rm in rms
            for sm in rm["scopeMetrics"]
            for m in sm["metrics"]
        }
        assert {"keiko.ebpf.tcp.connects", "keiko.ebpf.runq.latency"} <= names

        records = api.get("/api/v1/streams/edges/records", params={"limit": 50}).json()["records"]
        assert all(r["encoding"] == "json" for r in records)
        edges = [e for r in records for e in r["payload"]["edges"] if e["server"]["port"] == port]
        assert sum(e["connects"] for e in edges) >= CONNECTS
        assert all(cgroup_name in json.dumps(e["client"]) for e in edges)


def wait_for_connects(api: Any, remote: str, timeout: float = 15.0) -> list[str]:
    """The keiko_ebpf_tcp_connects_total lines for ``remote`` once they appear."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [
            ln
            for ln in api.get("/metrics").text.splitlines()
            if ln.startswith("keiko_ebpf_tcp_connects_total") and remote in ln
        ]
        if lines:
            return lines
        assert time.monotonic() < deadline, f"no connects to {remote} on /metrics"
        time.sleep(0.5)
