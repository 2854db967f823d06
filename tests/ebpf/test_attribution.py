"""Attribution: cgroup paths of every container runtime, the v2 id -> path walk on real
cgroup directories, pod names from a Kubernetes API test double, cardinality bounds."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from agent_harness import v2_cgroup
from fixtures.certs import make_certs

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


def _serve_api(tmp_path: Path, tls: ssl.SSLContext | None) -> Iterator[dict[str, Any]]:
    """A TEST DOUBLE of the Kubernetes API server (none can run here): it answers only
    GET /api/v1/pods?fieldSelector=spec.nodeName=<node> with a PodList, over HTTPS when
    given a server TLS context, and records the requests it got (path, Authorization)."""
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
    if tls is not None:
        # The handshake runs in accept(); a client that rejects the certificate makes
        # accept() raise, which socketserver drops without a handler thread.
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    # A short poll interval: shutdown() waits up to one interval.
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    scheme = "https" if tls is not None else "http"
    state["config"] = KubernetesConfig(
        enabled=True,
        api_server=f"{scheme}://127.0.0.1:{server.server_address[1]}",
        token_file=token,
        ca_file=None,
        node_name="node-1",
    )
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def api_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The Kubernetes API test double over plain HTTP."""
    yield from _serve_api(tmp_path, None)


@pytest.fixture
def tls_api_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The Kubernetes API test double over HTTPS, with a certificate for 127.0.0.1 signed by
    a test CA (``state["certs"]``; ``certs.other_ca`` did not sign it)."""
    certs = make_certs(tmp_path / "certs")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(certs.server_cert, certs.server_key)
    for state in _serve_api(tmp_path, tls):
        state["certs"] = certs
        yield state


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


def _with_ca(config: KubernetesConfig, ca: Path) -> KubernetesConfig:
    return config.model_copy(update={"ca_file": ca})


def test_kube_lists_the_pods_over_https_trusting_only_its_ca_file(
    tls_api_server: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    certs = tls_api_server["certs"]
    # OpenSSL's default trust store (which this machine points at its own bundle) holds the
    # wrong CA: only the configured ca_file can make the handshake succeed.
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.other_ca))
    monkeypatch.setenv("SSL_CERT_DIR", str(certs.directory / "none"))
    pods = KubeClient(_with_ca(tls_api_server["config"], certs.ca)).list_pods()
    assert pods[UID].name == "checkout-7d9f" and pods[UID].namespace == "shop"
    assert tls_api_server["seen"] == [
        ("/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1", "Bearer s3cret")
    ]


def test_kube_refuses_a_server_its_ca_file_did_not_sign(
    tls_api_server: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    certs = tls_api_server["certs"]
    # The default trust store holds the right CA: the configured (wrong) ca_file must win.
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))
    client = KubeClient(_with_ca(tls_api_server["config"], certs.other_ca))
    with pytest.raises(OSError, match="CERTIFICATE_VERIFY_FAILED"):
        client.list_pods()
    assert tls_api_server["seen"] == []  # the token never left the client

    good = KubeClient(_with_ca(tls_api_server["config"], certs.ca))
    cache = PodCache(good, refresh=0.0)
    assert cache.lookup(UID) is not None
    cache.client = client  # the API's certificate no longer matches the CA
    cache._tried_at = -1e9  # let the next lookup try again
    pod = cache.lookup(UID)
    assert pod is not None and pod.name == "checkout-7d9f"  # the last list still answers
    assert "cannot list the pods of node node-1" in caplog.text
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_kube_does_not_fall_back_to_system_cas_when_its_ca_file_is_missing(
    tls_api_server: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    certs = tls_api_server["certs"]
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca))  # the system CAs would accept it
    missing = certs.directory / "no-ca.crt"
    cache = PodCache(KubeClient(_with_ca(tls_api_server["config"], missing)), refresh=0.0)
    assert cache.lookup(UID) is None  # logged, not raised: the agent keeps running
    assert tls_api_server["seen"] == []
    assert f"cannot load the CA file {missing}: [Errno 2]" in caplog.text
