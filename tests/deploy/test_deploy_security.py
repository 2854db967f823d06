"""Least privilege, as documented in deploy/README.md: read-only RBAC in the base, the few
remediation verbs only in the remediation overlay; the node agent with exactly its BPF
capabilities and read-only host mounts; the other pods non-root on a read-only root."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from kube_objects import (
    KUBE,
    OVERLAYS,
    Obj,
    container,
    find,
    load,
    one,
    pod_labels,
    pod_spec,
    render,
    secret_env,
    selects,
    workloads,
)

READ_VERBS = {"get", "list", "watch"}
READ_RULES = [
    {"apiGroups": [""], "resources": ["pods", "nodes", "namespaces"], "verbs": READ_VERBS}
]
# alerting/remediation/kube.py: rollout restart and scale of Deployments/StatefulSets, cordon.
REMEDIATION_RULES = [
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": {"patch"}},
    {
        "apiGroups": ["apps"],
        "resources": ["deployments/scale", "statefulsets/scale"],
        "verbs": {"get", "patch"},
    },
    {"apiGroups": [""], "resources": ["nodes"], "verbs": {"patch"}},
]
AGENT_CAPABILITIES = {"BPF", "PERFMON", "SYS_RESOURCE", "SYS_PTRACE"}
AGENT_HOST_PATHS = {
    "/sys/kernel/tracing": "/sys/kernel/tracing",
    "/sys/fs/cgroup": "/sys/fs/cgroup",
    "/lib/modules": "/lib/modules",
    "/usr/src": "/usr/src",
}


def rules_of(objs: list[Obj]) -> dict[str, list[dict[str, Any]]]:
    """ClusterRole/Role name -> its rules with verbs as sets."""
    return {
        r["metadata"]["name"]: [{**rule, "verbs": set(rule["verbs"])} for rule in r["rules"]]
        for r in find(objs, "ClusterRole") + find(objs, "Role")
    }


def bound_subjects(objs: list[Obj], role: str) -> set[str]:
    return {
        s["name"]
        for b in find(objs, "ClusterRoleBinding") + find(objs, "RoleBinding")
        if b["roleRef"]["name"] == role
        for s in b["subjects"]
    }


@pytest.mark.parametrize("overlay", ["single-node", "clustered"])
def test_base_rbac_only_reads(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    assert rules_of(objs) == {"keiko-read": READ_RULES}
    assert bound_subjects(objs, "keiko-read") == {"keiko-agent", "keiko-analysis", "keiko-alerting"}


def test_remediation_overlay_adds_only_its_verbs(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["remediation"]
    assert rules_of(objs) == {"keiko-read": READ_RULES, "keiko-remediation": REMEDIATION_RULES}
    assert bound_subjects(objs, "keiko-remediation") == {"keiko-alerting"}, (
        "write verbs go to the alerting pods (remediation runs in alerting) alone"
    )
    dep = one(objs, "Deployment", "keiko-alerting")
    assert pod_spec(dep)["serviceAccountName"] == "keiko-alerting"
    others = [w for w in workloads(objs) if w is not dep]
    assert all(pod_spec(w).get("serviceAccountName") != "keiko-alerting" for w in others)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_wildcards_and_no_secrets_access(rendered: dict[str, list[Obj]], overlay: str) -> None:
    for rules in rules_of(rendered[overlay]).values():
        for rule in rules:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], rule
            assert "secrets" not in rule["resources"], rule


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_agent_daemonset_has_exactly_its_capabilities(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    ds = one(rendered[overlay], "DaemonSet", "keiko-agent")
    spec = pod_spec(ds)
    assert spec["hostPID"] is True
    assert not spec.get("hostNetwork"), "OTLP comes in through hostPort and the Service"
    sc = container(ds, "agent")["securityContext"]
    assert sc["privileged"] is False, "privileged only through examples/agent-privileged-patch"
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == AGENT_CAPABILITIES
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_capabilities_are_the_documented_ones() -> None:
    """deploy/README.md's table names every capability the DaemonSet adds, and no other."""
    readme = (KUBE.parent / "README.md").read_text()
    documented = set(re.findall(r"\| `CAP_([A-Z_]+)` \|", readme))
    assert documented == AGENT_CAPABILITIES


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_agent_host_mounts_are_read_only(rendered: dict[str, list[Obj]], overlay: str) -> None:
    ds = one(rendered[overlay], "DaemonSet", "keiko-agent")
    host = {v["name"]: v["hostPath"]["path"] for v in pod_spec(ds)["volumes"] if "hostPath" in v}
    assert sorted(host.values()) == sorted(AGENT_HOST_PATHS)
    mounts = {m["name"]: m for m in container(ds, "agent")["volumeMounts"]}
    for name, path in host.items():
        assert mounts[name]["mountPath"] == AGENT_HOST_PATHS[path]
        assert mounts[name].get("readOnly") is True, f"{path} must be mounted read-only"
    assert mounts["config"]["readOnly"] is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_agent_runs_on_every_node_within_limits(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objs = rendered[overlay]
    ds = one(objs, "DaemonSet", "keiko-agent")
    assert pod_spec(ds)["tolerations"] == [{"operator": "Exists"}]
    c = container(ds, "agent")
    for kind in ("requests", "limits"):
        assert set(c["resources"][kind]) == {"cpu", "memory"}
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    svc = one(objs, "Service", "keiko-agent")
    assert svc["spec"]["internalTrafficPolicy"] == "Local"
    assert {p["port"] for p in svc["spec"]["ports"]} >= {4317, 4318}
    probes = {k: c[k]["httpGet"]["path"] for k in ("livenessProbe", "readinessProbe")}
    assert probes == {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}


@pytest.mark.parametrize("name", ["analysis", "alerting"])
@pytest.mark.parametrize("overlay", ["clustered", "remediation"])
def test_analysis_and_alerting_pods_are_non_root_with_health_probes(
    rendered: dict[str, list[Obj]], overlay: str, name: str
) -> None:
    dep = one(rendered[overlay], "Deployment", f"keiko-{name}")
    pod_sc = pod_spec(dep)["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] != 0
    c = container(dep, name)
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert c[probe]["httpGet"] == {"path": path, "port": "api"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"api": 8470}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_notifier_secrets_come_from_the_secret(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objs = rendered[overlay]
    alerting = (
        one(objs, "DaemonSet", "keiko-agent")
        if overlay == "single-node"
        else one(objs, "Deployment", "keiko-alerting")
    )
    name = pod_spec(alerting)["containers"][0]["name"]
    refs = secret_env(container(alerting, name))
    example = load(KUBE / "examples" / "notifiers-secret.yaml")[0]
    assert set(refs) == set(example["stringData"])
    for env, ref in refs.items():
        assert ref == {"name": "keiko-notifiers", "key": env, "optional": True}
    for w in workloads(objs):  # and only the pod that notifies sees them
        if w is not alerting:
            assert not any(secret_env(c) for c in pod_spec(w)["containers"]), w["metadata"]


def pdb_of(objs: list[Obj], workload: Obj) -> Obj:
    """The one PodDisruptionBudget that selects the workload's pods."""
    [pdb] = [
        p
        for p in find(objs, "PodDisruptionBudget")
        if selects(p["spec"]["selector"], pod_labels(workload))
    ]
    return pdb


@pytest.mark.parametrize("overlay", ["clustered", "remediation"])
@pytest.mark.parametrize("name", ["keiko-alerting", "keiko-analysis"])
def test_replicas_survive_a_node_and_a_rollout(
    rendered: dict[str, list[Obj]], overlay: str, name: str
) -> None:
    """Two `keiko alert` replicas (they elect a leader in the store) and two `keiko analyze`
    replicas (they share the partitions by leases in the store): each rolled one at a time
    with a surge, never both evicted, preferably on two nodes."""
    objs = rendered[overlay]
    dep = one(objs, "Deployment", name)
    assert dep["spec"]["replicas"] == 2
    strategy = dep["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert pdb_of(objs, dep)["spec"] == {
        "minAvailable": 1,
        "selector": dep["spec"]["selector"],
    }
    [term] = pod_spec(dep)["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["podAffinityTerm"]["labelSelector"], pod_labels(dep))
    assert not [
        w
        for w in workloads(objs)
        if w is not dep and selects(term["podAffinityTerm"]["labelSelector"], pod_labels(w))
    ], f"the anti-affinity spreads the {name} replicas only"


@pytest.mark.parametrize("overlay", ["clustered", "remediation"])
def test_analysis_pdb_exists(rendered: dict[str, list[Obj]], overlay: str) -> None:
    """The analysis replicas have their own PodDisruptionBudget (not one that also counts
    other pods)."""
    objs = rendered[overlay]
    pdb = one(objs, "PodDisruptionBudget", "keiko-analysis")
    assert pdb is pdb_of(objs, one(objs, "Deployment", "keiko-analysis"))
    assert [w for w in workloads(objs) if selects(pdb["spec"]["selector"], pod_labels(w))] == [
        one(objs, "Deployment", "keiko-analysis")
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(rendered: dict[str, list[Obj]], overlay: str) -> None:
    for w in workloads(rendered[overlay]):
        for c in pod_spec(w)["containers"]:
            image = c["image"]
            assert "@sha256:" in image or re.search(r":\d+\.\d+\.\d+", image), image


def test_nats_is_three_servers_with_volumes(rendered: dict[str, list[Obj]]) -> None:
    objs = rendered["clustered"]
    sts = one(objs, "StatefulSet", "keiko-nats")
    assert sts["spec"]["replicas"] == 3
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert one(objs, "PodDisruptionBudget", "keiko-nats")["spec"]["maxUnavailable"] == 1
    assert pod_spec(sts)["securityContext"]["runAsNonRoot"] is True
    assert not find(rendered["single-node"], "StatefulSet"), "single-node has no NATS"


def test_nats_takes_connections_only_from_keiko(rendered: dict[str, list[Obj]]) -> None:
    policy = one(rendered["clustered"], "NetworkPolicy", "keiko-nats")
    for rule in policy["spec"]["ingress"]:
        for peer in rule["from"]:
            if "podSelector" in peer:
                assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "keiko"
                assert "namespaceSelector" not in peer, "keiko pods of this namespace only"
            else:  # the monitoring namespace, on the monitoring port only
                assert peer["namespaceSelector"]["matchLabels"] == {
                    "kubernetes.io/metadata.name": "monitoring"
                }
                assert [p["port"] for p in rule["ports"]] == [8222]


def test_privileged_patch_example_applies_and_is_consistent(tmp_path: Path) -> None:
    """examples/agent-privileged-patch.yaml, used as its comment says, renders a privileged
    agent that the API server accepts (privileged needs allowPrivilegeEscalation)."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    shutil.copy(KUBE / "examples" / "agent-privileged-patch.yaml", tmp_path / "patch.yaml")
    base = os.path.relpath(KUBE / "base", tmp_path)  # kustomize takes no absolute roots
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{base}]\npatches:\n  - path: patch.yaml\n"
    )
    ds = one(render(tmp_path), "DaemonSet", "keiko-agent")
    sc = container(ds, "agent")["securityContext"]
    assert sc["privileged"] is True and sc["allowPrivilegeEscalation"] is True
