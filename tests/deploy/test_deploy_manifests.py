"""Every manifest under deploy/kubernetes, and every overlay as kustomize renders it, is valid
against the Kubernetes API schemas (kubernetes-validate, strict: unknown fields refused), and
what the objects refer to exists in the same render."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kube_objects import (
    KUBE,
    OVERLAYS,
    Obj,
    find,
    load,
    one,
    pod_labels,
    pod_spec,
    render,
    selects,
    workloads,
)

# The oldest Kubernetes the manifests are for (internalTrafficPolicy is GA since 1.26) and
# the newest whose schemas kubernetes-validate ships.
VERSIONS = ("1.26.0", kubernetes_validate.utils.latest_version())
# Kinds from CRDs, not in the core schemas: checked by hand below.
CRD_KINDS = {"ServiceMonitor"}
# The Secret of notifier URLs is created by the user (examples/notifiers-secret.yaml).
USER_SECRETS = {"keiko-notifiers"}


def kustomizations() -> list[Path]:
    return sorted(KUBE.rglob("kustomization.yaml"))


def resource_files() -> list[Path]:
    """Manifest files named as resources by a kustomization, and the complete examples."""
    files: set[Path] = set()
    for k in kustomizations():
        for entry in yaml.safe_load(k.read_text()).get("resources", []):
            path = (k.parent / entry).resolve()
            if path.is_file():
                files.add(path)
    files.add(KUBE / "examples" / "notifiers-secret.yaml")
    return sorted(files)


def referenced_files() -> set[Path]:
    """Every file a kustomization names: resources, patches and generator inputs."""
    named: set[Path] = set()
    for k in kustomizations():
        doc = yaml.safe_load(k.read_text())
        entries = list(doc.get("resources", []))
        entries += [p["path"] for p in doc.get("patches", []) if "path" in p]
        for gen in doc.get("configMapGenerator", []) + doc.get("secretGenerator", []):
            entries += [f.split("=", 1)[-1] for f in gen.get("files", [])]
        named |= {(k.parent / e).resolve() for e in entries}
    return named


def validate(obj: Obj, version: str) -> None:
    if obj["kind"] in CRD_KINDS:
        check_servicemonitor_shape(obj)
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.path)
        raise AssertionError(
            f"{obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version} "
            f"at {where}: {e.message}"
        ) from None


def check_servicemonitor_shape(obj: Obj) -> None:
    """The fields of monitoring.coreos.com/v1 ServiceMonitor keiko uses, by hand (the CRD's
    schema is not among the core schemas)."""
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    spec = obj["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}, spec
    assert isinstance(spec["selector"], dict) and spec["selector"]
    for endpoint in spec["endpoints"]:
        allowed = {"port", "path", "interval", "scrapeTimeout", "relabelings", "scheme"}
        assert set(endpoint) <= allowed, endpoint
        assert isinstance(endpoint["port"], str), "endpoints[].port is a Service port name"
        for r in endpoint.get("relabelings", []):
            assert set(r) <= {"sourceLabels", "targetLabel", "action", "regex", "replacement"}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", resource_files(), ids=lambda p: str(p.relative_to(KUBE)))
def test_every_manifest_file_is_valid(path: Path, version: str) -> None:
    docs = load(path)
    assert docs, f"{path} holds no object"
    for obj in docs:
        validate(obj, version)


def test_every_file_under_deploy_kubernetes_is_used_or_an_example() -> None:
    """Nothing lies around unchecked: each YAML file is a kustomization, named by one, or an
    example (examples/ is documented in deploy/README.md)."""
    named = referenced_files() | set(kustomizations())
    loose = [
        p.relative_to(KUBE)
        for p in KUBE.rglob("*")
        if p.is_file() and p.resolve() not in named and "examples" not in p.parts
    ]
    assert not loose, f"files no kustomization uses: {loose}"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_overlay_is_valid(
    rendered: dict[str, list[Obj]], overlay: str, version: str
) -> None:
    objs = rendered[overlay]
    assert objs
    for obj in objs:
        validate(obj, version)
    names = [(o["kind"], o["metadata"]["name"]) for o in objs]
    assert len(names) == len(set(names)), "an object is rendered twice"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_objects_are_namespaced_in_keiko(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for obj in rendered[overlay]:
        if obj["kind"] not in cluster_scoped:
            assert obj["metadata"].get("namespace") == "keiko", obj["metadata"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "keiko"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_what_pods_refer_to_exists(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objs = rendered[overlay]
    have = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for w in workloads(objs):
        spec, what = pod_spec(w), f"{w['kind']}/{w['metadata']['name']}"
        if "serviceAccountName" in spec:
            assert ("ServiceAccount", spec["serviceAccountName"]) in have, what
        claims = {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
        for v in spec.get("volumes", []):
            if "configMap" in v:
                assert ("ConfigMap", v["configMap"]["name"]) in have, (what, v)
            if "persistentVolumeClaim" in v:
                assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in have
        for c in spec["containers"]:
            mounts = {m["name"] for m in c.get("volumeMounts", [])}
            volumes = {v["name"] for v in spec.get("volumes", [])} | claims
            assert mounts <= volumes, (what, mounts - volumes)
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ("Secret", ref["name"]) not in have:
                    assert ref["name"] in USER_SECRETS and ref.get("optional") is True, env


def _ports_by_name(w: Obj) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for c in pod_spec(w)["containers"] for p in c["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_select_pods_with_their_target_ports(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objs = rendered[overlay]
    for svc in find(objs, "Service"):
        matched = [w for w in workloads(objs) if selects(svc["spec"]["selector"], pod_labels(w))]
        assert matched, f"Service {svc['metadata']['name']} selects no pods"
        for w in matched:
            ports = _ports_by_name(w)
            for p in svc["spec"]["ports"]:
                assert p["targetPort"] in ports, (svc["metadata"]["name"], p)
                assert ports[p["targetPort"]] == p["port"], "keep the port numbers equal"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pdbs_and_network_policies_select_pods(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    objs = rendered[overlay]
    for kind, key in (("PodDisruptionBudget", "selector"), ("NetworkPolicy", "podSelector")):
        for obj in find(objs, kind):
            selector = obj["spec"][key]
            assert any(selects(selector, pod_labels(w)) for w in workloads(objs)), obj
    labelled = [w for w in workloads(objs) if w["kind"] != "DaemonSet"]
    for w in labelled:  # every pod that takes connections has a policy
        policies = [
            p
            for p in find(objs, "NetworkPolicy")
            if selects(p["spec"]["podSelector"], pod_labels(w))
        ]
        assert policies, f"no NetworkPolicy for {w['metadata']['name']}"


def check_scrapes_each_keiko_pod_once(objs: list[Obj]) -> None:
    """The ServiceMonitor's Services reach every agent, analysis and alerting pod once, NATS
    never."""
    [sm] = find(objs, "ServiceMonitor")
    spec = sm["spec"]
    assert spec["namespaceSelector"]["matchNames"] == ["keiko"]
    scraped = [
        s for s in find(objs, "Service") if selects(spec["selector"], s["metadata"]["labels"])
    ]
    assert scraped
    seen: list[str] = []
    for svc in scraped:
        names = {p["name"] for p in svc["spec"]["ports"]}
        assert {e["port"] for e in spec["endpoints"]} <= names, svc["metadata"]["name"]
        seen += [
            w["metadata"]["name"]
            for w in workloads(objs)
            if selects(svc["spec"]["selector"], pod_labels(w))
        ]
    keiko_pods = [
        w["metadata"]["name"]
        for w in workloads(objs)
        if pod_labels(w)["app.kubernetes.io/component"] in ("agent", "analysis", "alerting")
    ]
    assert sorted(seen) == sorted(keiko_pods), "every keiko pod once, and NATS not at all"
    assert all(e["path"] == "/metrics" for e in spec["endpoints"])


@pytest.mark.parametrize("overlay", ["clustered", "remediation"])
def test_servicemonitor_scrapes_each_keiko_pod_once(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    check_scrapes_each_keiko_pod_once(rendered[overlay])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_alertmanager_api_service_reaches_the_pods_that_alert(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    """keiko-alerting.keiko.svc:8470, what Prometheus' alerting config names, selects the
    pods that run alerting: the agent on single-node, the `keiko alert` replicas otherwise."""
    objs = rendered[overlay]
    svc = one(objs, "Service", "keiko-alerting")
    assert [(p["name"], p["port"]) for p in svc["spec"]["ports"]] == [("api", 8470)]
    selected = [
        w["metadata"]["name"]
        for w in workloads(objs)
        if selects(svc["spec"]["selector"], pod_labels(w))
    ]
    kind, name, command = (
        ("DaemonSet", "keiko-agent", "run")
        if overlay == "single-node"
        else ("Deployment", "keiko-alerting", "alert")
    )
    assert selected == [name]
    assert pod_spec(one(objs, kind, name))["containers"][0]["args"][0] == command


def test_servicemonitor_component_fits_the_single_node_overlay(
    rendered: dict[str, list[Obj]], tmp_path: Path
) -> None:
    """single-node leaves the ServiceMonitor out (one-node clusters rarely run the
    Prometheus Operator); added as components/servicemonitor says, it scrapes the one pod."""
    assert not find(rendered["single-node"], "ServiceMonitor")
    overlay = os.path.relpath(KUBE / "overlays" / "single-node", tmp_path)
    component = os.path.relpath(KUBE / "components" / "servicemonitor", tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        f"resources: [{overlay}]\ncomponents: [{component}]\n"
    )
    objs = render(tmp_path)
    check_scrapes_each_keiko_pod_once(objs)
    assert one(objs, "ServiceMonitor", "keiko")["metadata"]["namespace"] == "keiko"


def test_servicemonitor_shape_check_refuses_a_wrong_field() -> None:
    bad: dict[str, Any] = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "endpoints": [{"targetPort": 8470}]},
    }
    with pytest.raises(AssertionError):
        check_servicemonitor_shape(bad)


def test_strict_validation_refuses_an_unknown_field() -> None:
    """The validator is strict: a typo in a manifest would not pass."""
    [svc] = load(KUBE / "base" / "agent-service.yaml")
    svc["spec"]["internalTraficPolicy"] = "Local"
    with pytest.raises(AssertionError, match="internalTraficPolicy"):
        validate(svc, VERSIONS[-1])
