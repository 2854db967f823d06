"""Attribution: cgroup paths of every container runtime, the v2 id -> path walk on real
cgroup directories, pod names from a Kubernetes API test double, cardinality bounds."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from agent_harness import v2_cgroup

from ebpf.attribution import CgroupIndex, Owner, parse_path, v2_root
from ebpf.cardinality import Limiter
from ebpf.config import KubernetesConfig
from ebpf.kube import KubeClient, PodCache

CID = "3f2a9c1e4b5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f"
UID = "0e5b2c1a-7d3f-4a8e-9b6c-2f1d0e9a8b7c"


@pytest.mark.parametrize(
    ("path", "owner"),
    [
        # containerd, systemd cgroup driver (kubeadm default)
        (
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
            f"{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope",
            Owner(CID, UID, "containerd"),
        ),
        # containerd, cgroupfs driver
        (f"/kubepods/burstable/pod{UID}/{CID}", Owner(CID, UID, "")),
        (f"/kubepods/pod{UID}/{CID}", Owner(CID, UID, "")),  # Guaranteed QoS
        # CRI-O (systemd driver); conmon's own scope belongs to the pod, not a container
        (
            f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
            f"{UID.replace('-', '_')}.slice/crio-{CID}.scope",
            Owner(CID, UID, "cri-o"),
        ),
        (
            f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-conmon-{CID}.scope",
            Owner("", UID, ""),
        ),
        # the pod's slice itself (pause/sandbox accounting)
        (f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice", Owner("", UID, "")),
        # Docker, systemd and cgroupfs drivers
        (f"/system.slice/docker-{CID}.scope", Owner(CID, "", "docker")),
        (f"/docker/{CID}", Owner(CID, "", "docker")),
        # kind / nested: a node container holding kubepods
        (
            f"/system.slice/docker-{'a' * 64}.scope/kubelet.slice/kubelet-kubepods.slice/"
            f"kubelet-kubepods-pod{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope",
            Owner(CID, UID, "containerd"),
        ),
        # not containers
        ("/", Owner()),
        ("/system.slice/sshd.service", Owner()),
        ("/user.slice/user-1000.slice/session-3.scope", Owner()),
    ],
)
def test_parse_path(path: str, owner: Owner) -> None:
    assert parse_path(path) == owner


def test_v2_root_detects_hybrid_and_pure(tmp_path: Path) -> None:
    assert v2_root(tmp_path) is None
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("")
    assert v2_root(tmp_path) == tmp_path / "unified"  # hybrid
    (tmp_path / "cgroup.controllers").write_text("cpu io memory")
    assert v2_root(tmp_path) == tmp_path  # pure v2


@pytest.mark.requires_bpf  # root: it creates cgroups
def test_index_maps_a_new_cgroup_inode_to_its_path() -> None:
    index = CgroupIndex(v2_root(), min_refresh=0.0)
    assert index.path(1) == "/" or index.path((v2_root() or Path()).stat().st_ino) == "/"
    with v2_cgroup("keiko-test-attr") as cg:
        child = cg / "inner"
        child.mkdir()
        try:
            assert index.path(child.stat().st_ino) == f"/{cg.name}/inner"  # a miss walks again
            assert index.path(cg.stat().st_ino) == f"/{cg.name}"
        finally:
            child.rmdir()
    assert index.path(123456789012) is None


def test_index_rate_limits_walks(tmp_path: Path) -> None:
    index = CgroupIndex(tmp_path, min_refresh=60.0)
    assert index.path(1) is None and index.path(2) is None
    assert index.walks == 1


def test_limiter_folds_beyond_the_bound_and_frees_idle_slots() -> None:
    lim = Limiter("cgroup", 2, idle_expiry=10.0)
    assert lim.admit("m", "/a", now=0) and lim.admit("m", "/b", now=0)
    assert not lim.admit("m", "/c", now=1)
    assert lim.admit("m", "/a", now=1)  # admitted keys stay admitted
    assert lim.admit("other.metric", "/c", now=1)  # the bound is per metric family
    assert lim.folded == {"m": 1}
    assert lim.expire(now=10.5) == 1  # /b idle since 0
    assert lim.admit("m", "/c", now=11)


# --- Kubernetes API ---------------------------------------------------------------------


POD_LIST = {
    "kind": "PodList",
    "items": [
        {
            "metadata": {"uid": UID, "name": "checkout-7d9f", "namespace": "shop"},
            "status": {
                "containerStatuses": [{"name": "app", "containerID": f"containerd://{CID}"}]
            },
        }
    ],
}


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A TEST DOUBLE of the Kubernetes API server (there is none here): it answers only
    GET /api/v1/pods?fieldSelector=spec.nodeName=<node> with a PodList, and records
    the requests it got (path, Authorization header)."""
    seen: list[tuple[str, str]] = []
    state: dict[str, Any] = {"seen": seen, "status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, self.headers.get("Authorization", "")))
            body = json.dumps(POD_LIST).encode()
            self.send_response(state["status"])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    state["config"] = KubernetesConfig(
        enabled=True,
        api_server=f"http://127.0.0.1:{server.server_address[1]}",
        token_file=token,
        ca_file=None,
        node_name="node-1",
    )
    yield state
    server.shutdown()
    server.server_close()


def test_kube_lists_the_pods_of_this_node(api_server: dict[str, Any]) -> None:
    pods = KubeClient(api_server["config"]).list_pods()
    assert pods[UID].name == "checkout-7d9f" and pods[UID].namespace == "shop"
    assert pods[UID].containers == {CID: "app"}
    path, auth = api_server["seen"][0]
    assert path == "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1"
    assert auth == "Bearer s3cret"


def test_pod_cache_keeps_the_last_list_when_the_api_fails(
    api_server: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    cache = PodCache(KubeClient(api_server["config"]), refresh=0.0)
    assert cache.lookup(UID) is not None and cache.fetches == 1
    assert cache.lookup("no-such-uid") is None  # a miss within 5 s does not refetch
    assert len(api_server["seen"]) == 1
    api_server["status"] = 500
    cache._tried_at = -1e9  # let the next lookup try again
    pod = cache.lookup(UID)
    assert pod is not None and pod.name == "checkout-7d9f"  # the stale list still answers
    assert "cannot list the pods of node node-1" in caplog.text


def test_attributor_names_the_pod(api_server: dict[str, Any]) -> None:
    from ebpf.attribution import Attributor

    cache = PodCache(KubeClient(api_server["config"]), refresh=60.0)
    attr = Attributor(CgroupIndex(None), cache)
    path = f"/kubepods/burstable/pod{UID}/{CID}"
    got = attr.by_path(path).attributes()
    assert got == {
        "cgroup.path": path,
        "container.id": CID,
        "k8s.pod.uid": UID,
        "k8s.pod.name": "checkout-7d9f",
        "k8s.namespace.name": "shop",
        "k8s.container.name": "app",
    }
