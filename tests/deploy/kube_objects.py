"""Helpers of the deployment tests: render overlays offline, find objects, read pod specs and
the keiko config files the ConfigMaps carry."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBE = REPO / "deploy" / "kubernetes"
OVERLAYS = ("single-node", "clustered", "remediation")
WORKLOADS = ("DaemonSet", "Deployment", "StatefulSet")

Obj = dict[str, Any]


def render(directory: Path) -> list[Obj]:
    """The objects ``kubectl kustomize DIRECTORY`` renders; skips when kubectl is missing."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip(
            "kubectl is not installed (Debian bookworm has no kubectl with kustomize v5; "
            "its kubernetes-client is 1.20): the rendered overlays are not checked"
        )
    done = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize {directory} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def load(path: Path) -> list[Obj]:
    """The YAML documents of one manifest file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    """Objects of ``kind`` (named ``name``, or whose name starts with it for ConfigMaps,
    which kustomize suffixes with a hash)."""
    found = [o for o in objs if o["kind"] == kind]
    if name is None:
        return found
    return [o for o in found if o["metadata"]["name"] in (name,) or _hashed(o, name)]


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    """The one object of ``kind`` named ``name``."""
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def _hashed(obj: Obj, name: str) -> bool:
    actual = obj["metadata"]["name"]
    return obj["kind"] in ("ConfigMap", "Secret") and actual.rsplit("-", 1)[0] == name


def pod_spec(obj: Obj) -> Obj:
    """The pod template's spec of a workload."""
    spec: Obj = obj["spec"]["template"]["spec"]
    return spec


def pod_labels(obj: Obj) -> dict[str, str]:
    """The pod template's labels of a workload."""
    labels: dict[str, str] = obj["spec"]["template"]["metadata"]["labels"]
    return labels


def workloads(objs: list[Obj]) -> Iterator[Obj]:
    """Every DaemonSet, Deployment and StatefulSet."""
    return (o for o in objs if o["kind"] in WORKLOADS)


def container(obj: Obj, name: str) -> Obj:
    """The container ``name`` of a workload."""
    for c in pod_spec(obj)["containers"]:
        if c["name"] == name:
            return dict(c)
    raise AssertionError(f"{obj['kind']}/{obj['metadata']['name']} has no container {name}")


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels/matchExpressions, or a plain map) matches."""
    plain = {k: v for k, v in selector.items() if k not in ("matchLabels", "matchExpressions")}
    wanted = {**plain, **selector.get("matchLabels", {})}
    if any(labels.get(k) != v for k, v in wanted.items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value, op = labels.get(expr["key"]), expr["operator"]
        if op == "In" and value not in expr["values"]:
            return False
        if op == "NotIn" and value in expr["values"]:
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
    return True


def mounted_config(objs: list[Obj], workload: Obj) -> tuple[str, Obj]:
    """(file text, the ConfigMap) of the keiko config the workload's pods run with."""
    volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
    cm_name = volumes["config"]["configMap"]["name"]
    [cm] = [o for o in find(objs, "ConfigMap") if o["metadata"]["name"] == cm_name]
    return str(cm["data"]["keiko.yaml"]), cm


def secret_env(container_spec: Obj) -> dict[str, Obj]:
    """Env name -> secretKeyRef of a container."""
    return {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container_spec.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
