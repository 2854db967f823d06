"""Pod names and namespaces of this node's pods, from the Kubernetes API.

One request, ``GET /api/v1/pods?fieldSelector=spec.nodeName=<node>``, with the pod's
service-account token, repeated every ``refresh`` seconds (and on a miss, rate-limited).
Blocking (urllib): it is called from the agent's worker thread. An API outage keeps the
last list and is logged once until it recovers.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ebpf.config import KubernetesConfig

log = logging.getLogger(__name__)
TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What the agent labels series with: name, namespace, container id -> name."""

    uid: str
    name: str
    namespace: str
    containers: dict[str, str] = field(default_factory=dict)


def in_cluster(env: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """True inside a Kubernetes pod (the kubelet sets KUBERNETES_SERVICE_HOST)."""
    return bool(env.get("KUBERNETES_SERVICE_HOST"))


def wanted(config: KubernetesConfig) -> bool:
    """Whether to ask the API for pod metadata (``enabled: auto`` means: in a pod)."""
    return in_cluster() if config.enabled == "auto" else bool(config.enabled)


def _container_id(status: dict[str, Any]) -> str:
    # "containerd://<64hex>", "cri-o://<64hex>", "docker://<64hex>"
    return str(status.get("containerID", "")).rpartition("://")[2]


def parse_pods(body: dict[str, Any]) -> dict[str, PodInfo]:
    """A PodList -> pods by UID."""
    pods = {}
    for item in body.get("items") or []:
        meta = item.get("metadata") or {}
        status = item.get("status") or {}
        statuses = [
            *(status.get("containerStatuses") or []),
            *(status.get("initContainerStatuses") or []),
            *(status.get("ephemeralContainerStatuses") or []),
        ]
        containers = {_container_id(s): s.get("name", "") for s in statuses if _container_id(s)}
        uid = meta.get("uid", "")
        if uid:
            pods[uid] = PodInfo(uid, meta.get("name", ""), meta.get("namespace", ""), containers)
    return pods


class KubeClient:
    """Lists the pods of one node."""

    def __init__(self, config: KubernetesConfig) -> None:
        self.config = config
        self.base = config.api_server.rstrip("/") or self._in_cluster_url()
        self.node = config.node_name or os.environ.get("NODE_NAME", "") or socket.gethostname()
        self._ssl: ssl.SSLContext | None = None

    def _tls(self) -> ssl.SSLContext | None:
        """The TLS context of an https API (None for http), made on first use so that a bad
        ca_file fails the request (logged, retried) rather than the agent's start."""
        if self._ssl is None and self.base.startswith("https:"):
            ca = self.config.ca_file
            # A configured CA that is missing is an error, never a silent fallback to the
            # system CAs (only ca_file: null asks for those).
            try:
                self._ssl = ssl.create_default_context(cafile=None if ca is None else str(ca))
            except OSError as exc:  # ssl's own message does not name the file
                raise OSError(f"cannot load the CA file {ca}: {exc}") from exc
        return self._ssl

    @staticmethod
    def _in_cluster_url() -> str:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if ":" in host:  # IPv6
            host = f"[{host}]"
        return f"https://{host}:{port}"

    def list_pods(self) -> dict[str, PodInfo]:
        """The pods scheduled on this node, by UID. Raises OSError/ValueError on failure."""
        query = urllib.parse.urlencode({"fieldSelector": f"spec.nodeName={self.node}"})
        request = urllib.request.Request(f"{self.base}/api/v1/pods?{query}")
        request.add_header("Accept", "application/json")
        token = self._token()
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=self._tls()) as response:
            body = json.loads(response.read())
        if not isinstance(body, dict):
            raise ValueError("the API answered with something that is not a PodList")
        return parse_pods(body)

    def _token(self) -> str:
        try:
            return Path(self.config.token_file).read_text().strip()
        except OSError:
            return ""


class PodCache:
    """Pods by UID, refreshed every ``refresh`` s, or sooner on a miss (at most every 5 s)."""

    MISS_REFRESH_S = 5.0

    def __init__(self, client: KubeClient, refresh: float) -> None:
        self.client = client
        self.refresh = refresh
        self._pods: dict[str, PodInfo] = {}
        self._fetched_at = -float("inf")
        self._tried_at = -float("inf")
        self._failing = False
        self._lock = threading.Lock()
        self.fetches = 0

    def lookup(self, uid: str) -> PodInfo | None:
        """The pod with this UID, or None when the API does not know it (or is down)."""
        now = time.monotonic()
        pod = self._pods.get(uid)
        stale = now - self._fetched_at >= self.refresh
        if (pod is None or stale) and now - self._tried_at >= self.MISS_REFRESH_S:
            self._fetch(now)
            pod = self._pods.get(uid)
        return pod

    def _fetch(self, now: float) -> None:
        with self._lock:
            if now - self._tried_at < self.MISS_REFRESH_S:  # another thread just did
                return
            self._tried_at = now
            try:
                self._pods = self.client.list_pods()
            except (OSError, ValueError) as exc:
                if not self._failing:
                    log.warning(
                        "Kubernetes API %s: cannot list the pods of node %s: %s; series keep "
                        "pod UIDs without names until it answers (check the service account's "
                        "RBAC: get/list pods)",
                        self.client.base,
                        self.client.node,
                        exc,
                    )
                self._failing = True
                return
            if self._failing:
                log.warning("Kubernetes API %s answers again", self.client.base)
            self._failing = False
            self._fetched_at = now
            self.fetches += 1
