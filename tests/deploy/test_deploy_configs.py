"""The keiko configs the ConfigMaps carry pass `keiko config check` and start what each role
should; they agree with the pods (secrets, store volume, NATS addresses and limits); and the
probes' paths answer on a real `keiko run` with the single-node config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fixtures.keiko import KeikoFactory
from kube_objects import KUBE, OVERLAYS, Obj, container, mounted_config, one, pod_spec

from keiko.commands.run import ROLES as COMMAND_ROLES
from keiko.units import parse_bytes

NATS_HEADER_ROOM = 512  # keiko/store/nats.py: room for headers within max_payload

AGENT = {"receivers.otlp", "probes.ebpf"}
ANALYSIS = {"analytics.anomaly", "analytics.incidents", "analytics.spanmetrics"}
ALERTING = {"alerting.slo", "alerting.router"}
# (overlay, workload kind, name) -> the keiko command its pods run and the components its
# config starts. single-node keeps `run`: its embedded store is one process's directory.
ROLES = {
    ("single-node", "DaemonSet", "keiko-agent"): ("run", AGENT | ANALYSIS | ALERTING),
    ("clustered", "DaemonSet", "keiko-agent"): ("agent", AGENT),
    ("clustered", "Deployment", "keiko-analysis"): ("analyze", ANALYSIS),
    ("clustered", "Deployment", "keiko-alerting"): ("alert", ALERTING),
    ("remediation", "DaemonSet", "keiko-agent"): ("agent", AGENT),
    ("remediation", "Deployment", "keiko-analysis"): ("analyze", ANALYSIS),
    ("remediation", "Deployment", "keiko-alerting"): ("alert", ALERTING),
}


def config_check(
    path: Path, pod_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`keiko config check PATH` with the pod's environment (keiko reads every KEIKO_*
    variable as a config override, so the pod's variables take part)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEIKO_")}
    return subprocess.run(
        [sys.executable, "-m", "keiko.cli", "config", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**env, **(pod_env or {})},
    )


def pod_env(c: Obj) -> dict[str, str]:
    """The container's variables; those from the downward API or a Secret get a stand-in."""
    return {e["name"]: str(e.get("value", "stand-in")) for e in c.get("env", [])}


def env_secrets(node: Any) -> set[str]:
    """Every `{env: NAME}` secret in a config tree."""
    if isinstance(node, dict):
        found = {node["env"]} if set(node) == {"env"} else set()
        return found.union(*(env_secrets(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(env_secrets(v) for v in node))
    return set()


@pytest.mark.parametrize("role", ROLES, ids=lambda r: "-".join(r[::2]))
def test_configmap_config_passes_config_check(
    rendered: dict[str, list[Obj]], role: tuple[str, str, str], tmp_path: Path
) -> None:
    overlay, kind, name = role
    objs = rendered[overlay]
    workload = one(objs, kind, name)
    text, _ = mounted_config(objs, workload)
    path = tmp_path / "keiko.yaml"
    path.write_text(text)
    done = config_check(path, pod_env(pod_spec(workload)["containers"][0]))
    assert done.returncode == 0, done.stdout + done.stderr
    [line] = [ln for ln in done.stdout.splitlines() if ln.strip().startswith("components:")]
    assert set(line.split(":", 1)[1].strip().split(", ")) == ROLES[role][1]
    assert re.search(r"listen: api on http://0\.0\.0\.0:8470", done.stdout)


@pytest.mark.parametrize("role", ROLES, ids=lambda r: "-".join(r[::2]))
def test_pods_run_their_role_of_keiko(
    rendered: dict[str, list[Obj]], role: tuple[str, str, str]
) -> None:
    """Each workload runs its role command (`keiko agent|analyze|alert`, see
    keiko/commands/run.py) on the mounted config, and that role keeps every component its
    config starts: none is switched off unseen by `keiko config check`."""
    overlay, kind, name = role
    command, components = ROLES[role]
    workload = one(rendered[overlay], kind, name)
    [c] = pod_spec(workload)["containers"]
    assert c["args"] == [command, "--config", "/etc/keiko/keiko.yaml"]
    mount = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}["config"]
    assert mount == "/etc/keiko"
    if command != "run":
        kept = COMMAND_ROLES[command][0]
        assert {comp.split(".")[0] for comp in components} <= set(kept), (command, kept)


def test_every_role_command_is_deployed() -> None:
    """clustered runs each role of `keiko run` in pods of its own."""
    deployed = {cmd for (overlay, _, _), (cmd, _) in ROLES.items() if overlay == "clustered"}
    assert deployed == set(COMMAND_ROLES)


def test_config_check_refuses_a_broken_configmap_config(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key is refused with exit 2."""
    config = yaml.safe_load((KUBE / "base" / "config" / "keiko.yaml").read_text())
    config["store"]["nats"]["server"] = config["store"]["nats"].pop("servers")
    path = tmp_path / "keiko.yaml"
    path.write_text(yaml.safe_dump(config))
    done = config_check(path)
    assert done.returncode == 2 and "store.nats.server" in done.stdout + done.stderr


@pytest.mark.parametrize("role", ROLES, ids=lambda r: "-".join(r[::2]))
def test_every_env_secret_is_given_to_the_pod(
    rendered: dict[str, list[Obj]], role: tuple[str, str, str]
) -> None:
    overlay, kind, name = role
    objs = rendered[overlay]
    workload = one(objs, kind, name)
    text, _ = mounted_config(objs, workload)
    c = pod_spec(workload)["containers"][0]
    given = {e["name"] for e in c.get("env", [])}
    assert env_secrets(yaml.safe_load(text)) <= given


def test_single_node_store_is_on_the_volume(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["single-node"]
    ds = one(objs, "DaemonSet", "keiko-agent")
    config = yaml.safe_load(mounted_config(objs, ds)[0])
    assert config["store"]["backend"] == "embedded"
    mounts = {m["mountPath"]: m["name"] for m in container(ds, "agent")["volumeMounts"]}
    volume = mounts[config["store"]["embedded"]["path"]]
    [claim] = [v for v in pod_spec(ds)["volumes"] if v["name"] == volume]
    assert claim["persistentVolumeClaim"]["claimName"] == "keiko-data"


@pytest.mark.parametrize("overlay", ["clustered", "remediation"])
def test_nats_store_matches_the_statefulset(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    sts = one(objs, "StatefulSet", "keiko-nats")
    nats_conf = mounted_nats_conf(objs, sts)
    for kind, name in (
        ("DaemonSet", "keiko-agent"),
        ("Deployment", "keiko-analysis"),
        ("Deployment", "keiko-alerting"),
    ):
        config = yaml.safe_load(mounted_config(objs, one(objs, kind, name))[0])
        store = config["store"]
        assert store["backend"] == "nats"
        assert store["nats"]["servers"] == ["nats://keiko-nats:4222"]
        one(objs, "Service", "keiko-nats")  # the client Service exists
        assert store["nats"]["replicas"] <= sts["spec"]["replicas"]
    agent = yaml.safe_load(mounted_config(objs, one(objs, "DaemonSet", "keiko-agent"))[0])
    max_request = parse_bytes(agent["receivers"]["otlp"]["max_request_bytes"])
    max_payload = conf_number(nats_conf, "max_payload")
    assert max_request + NATS_HEADER_ROOM <= max_payload
    routes = re.findall(r"nats://(keiko-nats-\d)\.keiko-nats-headless:6222", nats_conf)
    assert routes == [f"keiko-nats-{i}" for i in range(sts["spec"]["replicas"])]
    assert sts["spec"]["serviceName"] == "keiko-nats-headless"
    file_store = conf_number(nats_conf, "max_file_store")
    volume = sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert file_store < parse_bytes(volume.replace("Gi", "GiB"))


def conf_number(nats_conf: str, key: str) -> int:
    """The number ``key`` is set to in nats.conf (written as plain bytes there)."""
    found = re.search(rf"^\s*{key}: (\d+)$", nats_conf, re.M)
    assert found, f"nats.conf sets no {key} in bytes"
    return int(found.group(1))


def mounted_nats_conf(objs: list[Obj], sts: Obj) -> str:
    volumes = {v["name"]: v for v in pod_spec(sts)["volumes"]}
    name = volumes["config"]["configMap"]["name"]
    [cm] = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    return str(cm["data"]["nats.conf"])


def test_nats_conf_is_valid_for_nats_server(rendered: dict[str, list[Obj]], tmp_path: Path) -> None:
    """Debian's nats-server (2.9) parses the config (`-t`: test it and exit)."""
    server = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(server).exists():
        pytest.skip("nats-server is not installed (Debian package nats-server)")
    objs = rendered["clustered"]
    conf = tmp_path / "nats.conf"
    conf.write_text(mounted_nats_conf(objs, one(objs, "StatefulSet", "keiko-nats")))
    env = {"POD_NAME": "keiko-nats-0", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [server, "-t", "-c", str(conf)], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == 0, done.stderr
    conf.write_text(conf.read_text().replace("jetstream {", "jetstream {{"))
    broken = subprocess.run(
        [server, "-t", "-c", str(conf)], capture_output=True, text=True, env=env, timeout=30
    )
    assert broken.returncode != 0, "nats-server -t would not have caught a broken file"


def test_remediation_config_is_the_clustered_one_plus_actions() -> None:
    """The remediation overlay's alerting config differs from the clustered one only in the
    remediation actions and the routes that name them."""
    clustered = yaml.safe_load((KUBE / "overlays/clustered/config/alerting.yaml").read_text())
    remediation = yaml.safe_load((KUBE / "overlays/remediation/config/alerting.yaml").read_text())
    router = remediation["alerting"]["router"]
    actions = {a["name"] for a in router.pop("remediation")["actions"]}
    named = {n for r in router["route"].pop("routes") for n in r["remediation"]}
    assert named == actions
    assert remediation == clustered
    text = (KUBE / "overlays/remediation/config/alerting.yaml").read_text()
    assert re.search(r"^ {6}dry_run: true$", text, re.M), "remediation ships in dry-run"


@pytest.mark.slow
def test_probe_paths_answer_on_the_single_node_config(
    keiko_process: KeikoFactory, rendered: dict[str, list[Obj]]
) -> None:
    """`keiko run` with the single-node ConfigMap's config (addresses, store path and the
    probes moved for a test machine) serves the paths the manifests probe and scrape."""
    objs = rendered["single-node"]
    config = yaml.safe_load(mounted_config(objs, one(objs, "DaemonSet", "keiko-agent"))[0])
    for moved in ("store", "api", "receivers"):
        config.pop(moved)
    config["probes"]["ebpf"]["enabled"] = False  # bcc compiling six programs is another test's
    env = pod_env(container(one(objs, "DaemonSet", "keiko-agent"), "agent"))
    kp = keiko_process(config, env=env)
    with kp.client() as client:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert client.get(path).status_code == httpx.codes.OK, path
        assert client.get("/api/v2/status").status_code == httpx.codes.OK  # Alertmanager API


def test_overlays_listed_are_the_ones_on_disk() -> None:
    on_disk = sorted(p.name for p in (KUBE / "overlays").iterdir() if p.is_dir())
    assert on_disk == sorted(OVERLAYS)


@pytest.mark.parametrize("overlay", ["clustered", "remediation"])
def test_partitions_are_the_same_in_every_role(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    """Agents, analyzers and alerters must agree on store.nats.partitions (the store refuses
    a count other than the one recorded at first start), and there are enough partitions for
    every analysis replica to hold one."""
    objs = rendered[overlay]
    counts: dict[str, int] = {}
    for kind, name in (
        ("DaemonSet", "keiko-agent"),
        ("Deployment", "keiko-analysis"),
        ("Deployment", "keiko-alerting"),
    ):
        workload = one(objs, kind, name)
        config = yaml.safe_load(mounted_config(objs, workload)[0])
        counts[name] = config["store"]["nats"].get("partitions", 1)
        for c in pod_spec(workload)["containers"]:  # no per-pod override of the config's count
            assert not [e for e in c.get("env", []) if e["name"].startswith("KEIKO_STORE__")]
    assert set(counts.values()) == {8}, counts
    analysis = one(objs, "Deployment", "keiko-analysis")
    assert analysis["spec"]["replicas"] <= counts["keiko-analysis"]
