"""The clustered overlay's pieces run for real on this machine: three nats-servers from the
rendered nats.conf (addresses moved to loopback, nothing else changed), the node agent, the
two analysis replicas and the two alerting replicas, each with its container's command
(`keiko agent|analyze|alert`) and its ConfigMap's config (replicas: 3, partitions: 8 as
shipped). A trace sent to the agent is read back through the analysis config's store; the
analysis replicas split the partitions between them; one alerting replica leads, the other
takes alerts as a standby."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fixtures.keiko import KeikoFactory, KeikoProcess, post_traces, trace_request
from fixtures.nats import HOST, free_port
from kube_objects import Obj, mounted_config, one, pod_spec

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
pytestmark = pytest.mark.slow


def moved(conf: str, old: str, new: str) -> str:
    """``conf`` with ``old`` replaced; fails when the shipped file no longer has it."""
    assert old in conf, f"nats.conf no longer has {old!r}: update this test"
    return conf.replace(old, new)


@pytest.fixture
def nats_cluster(rendered: dict[str, list[Obj]], tmp_path: Path) -> Iterator[list[dict[str, Any]]]:
    """Three nats-servers from the clustered overlay's nats.conf; their ports and dirs."""
    if not Path(NATS_SERVER).exists():
        pytest.skip("nats-server is not installed (Debian package nats-server)")
    objs = rendered["clustered"]
    sts = one(objs, "StatefulSet", "keiko-nats")
    name = {v["name"]: v for v in pod_spec(sts)["volumes"]}["config"]["configMap"]["name"]
    [cm] = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    shipped = str(cm["data"]["nats.conf"])
    servers = [
        {
            "client": free_port(),
            "http": free_port(),
            "route": free_port(),
            "dir": tmp_path / f"n{i}",
        }
        for i in range(sts["spec"]["replicas"])
    ]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i, s in enumerate(servers):
            conf = moved(shipped, "listen: 0.0.0.0:4222", f"listen: {HOST}:{s['client']}")
            conf = moved(conf, "http: 0.0.0.0:8222", f"http: {HOST}:{s['http']}")
            conf = moved(conf, "store_dir: /data", f'store_dir: "{s["dir"]}"')
            conf = moved(conf, "listen: 0.0.0.0:6222", f"listen: {HOST}:{s['route']}")
            for j, other in enumerate(servers):
                conf = moved(
                    conf,
                    f"nats://keiko-nats-{j}.keiko-nats-headless:6222",
                    f"nats://{HOST}:{other['route']}",
                )
            s["dir"].mkdir()
            path = s["dir"] / "nats.conf"
            path.write_text(conf)
            env = {"POD_NAME": f"keiko-nats-{i}", "PATH": "/usr/bin:/bin"}
            with (s["dir"] / "nats.log").open("wb") as log:  # the child keeps its own copy
                procs.append(subprocess.Popen([NATS_SERVER, "-c", str(path)], stderr=log, env=env))
        for s in servers:
            wait_healthy(s["http"])
        yield servers
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def wait_healthy(port: int, timeout: float = 30.0) -> None:
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    raise AssertionError(f"nats-server on {port} not healthy after {timeout}s: {last}")


def role_config(objs: list[Obj], workload: Obj, servers: list[dict[str, Any]]) -> dict[str, Any]:
    """The workload's keiko config with the NATS and listen addresses moved to this machine
    (the test fixture gives the listeners free loopback ports)."""
    config: dict[str, Any] = yaml.safe_load(mounted_config(objs, workload)[0])
    config["store"]["nats"]["servers"] = [f"nats://{HOST}:{s['client']}" for s in servers]
    config["api"].pop("endpoint")
    for transport in ("grpc", "http"):
        config["receivers"]["otlp"].get(transport, {}).pop("endpoint", None)
    if config["probes"]["ebpf"].get("enabled", True):
        config["probes"]["ebpf"]["enabled"] = False  # loading the probes is tests/ebpf's job
    return config


def start_pod(
    keiko_process: KeikoFactory,
    objs: list[Obj],
    workload: Obj,
    servers: list[dict[str, Any]],
    name: str,
) -> KeikoProcess:
    """The workload's container as a process: its command, its config, its variables (the
    downward API's and the Secret's with stand-ins)."""
    [c] = pod_spec(workload)["containers"]
    env = {e["name"]: "stand-in" for e in c.get("env", [])}
    kp = keiko_process(role_config(objs, workload, servers), env=env, name=name, start=False)
    kp.command = c["args"][0]
    return kp.start()


def test_agent_and_analysis_share_the_nats_cluster(
    rendered: dict[str, list[Obj]],
    nats_cluster: list[dict[str, Any]],
    keiko_process: KeikoFactory,
) -> None:
    objs = rendered["clustered"]
    ds = one(objs, "DaemonSet", "keiko-agent")
    dep = one(objs, "Deployment", "keiko-analysis")
    agent = start_pod(keiko_process, objs, ds, nats_cluster, "agent")
    analyzers = [
        start_pod(keiko_process, objs, dep, nats_cluster, f"analysis-{i}")
        for i in range(dep["spec"]["replicas"])
    ]
    assert len(analyzers) == 2
    analysis = analyzers[0]
    for kp in (agent, *analyzers):
        with kp.client() as client:
            assert client.get("/readyz").status_code == 200

    body, trace_ids = trace_request(trace_count=3)
    post_traces(agent, body)
    deadline = time.monotonic() + 20
    while True:
        stored = analysis.run_cli("store", "trace-ids").stdout.split()
        if set(trace_ids) <= set(stored) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert set(trace_ids) <= set(stored), "the analysis store does not see the agent's trace"

    # Every stream keiko made is replicated to all three servers and fits their file store.
    url = f"http://{HOST}:{nats_cluster[0]['http']}/jsz?streams=true&config=true"
    with urllib.request.urlopen(url, timeout=5) as r:
        jsz = json.load(r)
    assert 0 < jsz["reserved_storage"] <= jsz["config"]["max_storage"]
    streams = {
        s["name"]: s["config"]["num_replicas"]
        for account in jsz["account_details"]
        for s in account.get("stream_detail", [])
    }
    assert "KEIKO_TRACES" in streams, streams
    assert set(streams.values()) == {len(nats_cluster)}, streams

    # The analysis replicas split the partitions: each its fair share, together all, none
    # twice. The first holds all 8 until the second joins, then hands one over per round.
    count = role_config(objs, dep, nats_cluster)["store"]["nats"]["partitions"]
    assert count == 8
    deadline = time.monotonic() + 45  # a hand-over per third of partition_lease (15s)
    while True:
        held = [held_partitions(kp) for kp in analyzers]
        if balanced(held, count) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert balanced(held, count), held
    # incidents (on events) has one partition: one replica serves it, the other is a standby.
    statuses = []
    for kp in analyzers:
        with kp.client() as client:
            statuses.append(client.get("/api/v1/incidents").status_code)
    assert sorted(statuses) == [200, 503], statuses


ANOMALY_RECORDS = re.compile(r'^keiko_anomaly_records_total\{[^}]*partition="(\d+)"', re.M)


def held_partitions(kp: KeikoProcess) -> list[int]:
    """The partitions of the anomaly stage ``kp`` holds now: the ``partition`` labels of its
    ``keiko_anomaly_records_total`` (a partition's metrics go with it)."""
    with kp.client() as client:
        text = client.get("/metrics").text
    return sorted(int(p) for p in ANOMALY_RECORDS.findall(text))


def balanced(held: list[list[int]], count: int) -> bool:
    """Every process holds its fair share (so some), each partition is held once, all are
    held."""
    together = [p for h in held for p in h]
    fair = -(-count // len(held))
    return all(0 < len(h) <= fair for h in held) and sorted(together) == list(range(count))


def test_alerting_replicas_elect_one_leader(
    rendered: dict[str, list[Obj]],
    nats_cluster: list[dict[str, Any]],
    keiko_process: KeikoFactory,
) -> None:
    """As many `keiko alert` processes as the Deployment has replicas, on the shipped config:
    one leads (answers GET /api/v2/alerts), the other is a standby (503) that still takes
    Prometheus' POST, which reaches the leader through the store."""
    objs = rendered["clustered"]
    dep = one(objs, "Deployment", "keiko-alerting")
    replicas = [
        start_pod(keiko_process, objs, dep, nats_cluster, f"alerting-{i}")
        for i in range(dep["spec"]["replicas"])
    ]
    assert len(replicas) == 2
    by_status: dict[int, list[KeikoProcess]] = {}
    for kp in replicas:
        with kp.client() as client:
            assert client.get("/readyz").status_code == 200  # standbys are ready too
            by_status.setdefault(client.get("/api/v2/alerts").status_code, []).append(kp)
    assert sorted(by_status) == [200, 503] and len(by_status[200]) == 1, by_status
    [leader], [standby] = by_status[200], by_status[503]
    alert = [{"labels": {"alertname": "DeployCheck", "service": "checkout"}}]
    with standby.client() as client:
        assert client.post("/api/v2/alerts", json=alert).status_code == 200
    deadline = time.monotonic() + 20
    with leader.client() as client:
        while True:
            names = [a["labels"]["alertname"] for a in client.get("/api/v2/alerts").json()]
            if "DeployCheck" in names or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert "DeployCheck" in names, "the leader never saw the alert the standby took"
