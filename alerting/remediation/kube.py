"""The kubernetes action through the official client: rollout restart (the pod template's
``kubectl.kubernetes.io/restartedAt`` annotation, as ``kubectl rollout restart`` does),
scale (the scale subresource; absolute or a capped delta) and cordon (a node's
``spec.unschedulable``). Blocking client calls run in a thread."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from datetime import UTC, datetime
from typing import Any

import kubernetes.client
import kubernetes.config
import urllib3.exceptions
from kubernetes.client.exceptions import ApiException

from alerting.delivery import Permanent, Retryable
from alerting.remediation.actions import RemediationRequest
from alerting.remediation.config import KubeAction, KubeOperation, KubeSettings

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
RESOURCES = {"Deployment": "deployments", "StatefulSet": "statefulsets"}
METHODS = {"Deployment": "deployment", "StatefulSet": "stateful_set"}


def api_client(settings: KubeSettings) -> kubernetes.client.ApiClient:
    """A client configured from ``settings`` (never the library's global configuration)."""
    conf = kubernetes.client.Configuration()
    if settings.api_server:
        conf.host = settings.api_server
    elif settings.in_cluster or (
        settings.in_cluster is None and "KUBERNETES_SERVICE_HOST" in os.environ
    ):
        kubernetes.config.load_incluster_config(client_configuration=conf)
    else:
        path = str(settings.kubeconfig) if settings.kubeconfig else None
        kubernetes.config.load_kube_config(config_file=path, client_configuration=conf)
    conf.retries = False  # the outbox retries, with backoff; urllib3 must not hide failures
    return kubernetes.client.ApiClient(conf)


class KubeClient:
    """One ApiClient shared by every kubernetes action, built on first use."""

    def __init__(self, settings: KubeSettings) -> None:
        self.settings = settings
        self._client: kubernetes.client.ApiClient | None = None
        self._lock = threading.Lock()

    def get(self) -> kubernetes.client.ApiClient:
        """The client; Permanent naming the setting when no configuration can be loaded."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = api_client(self.settings)
                except (kubernetes.config.ConfigException, OSError, TypeError) as e:
                    raise Permanent(
                        f"no Kubernetes configuration ({e}); set remediation.kube.kubeconfig, "
                        "in_cluster or api_server"
                    ) from None
            return self._client

    def close(self) -> None:
        """Close the connection pool (idempotent)."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class KubeExecutor:
    """Plans and makes one kubernetes action's API call."""

    def __init__(self, action: KubeAction, settings: KubeSettings | KubeClient) -> None:
        self.action = action
        self.client = settings if isinstance(settings, KubeClient) else KubeClient(settings)

    def plan(self, request: RemediationRequest) -> dict[str, Any]:
        """The PATCH (and the GET first for scale_by), with the names resolved."""
        a = self.action
        if a.operation == KubeOperation.CORDON:
            node = a.node or request.name_from_label(str(a.node_from_label), subdomain=True)
            return _call(
                "CoreV1Api.patch_node",
                f"/api/v1/nodes/{node}",
                STRATEGIC,
                {"spec": {"unschedulable": True}},
                node=node,
            )
        ns = a.namespace or request.name_from_label(str(a.namespace_from_label), subdomain=False)
        name = a.workload or request.name_from_label(str(a.workload_from_label), subdomain=True)
        path = f"/apis/apps/v1/namespaces/{ns}/{RESOURCES[a.kind]}/{name}"
        method = f"AppsV1Api.patch_namespaced_{METHODS[a.kind]}"
        if a.operation == KubeOperation.ROLLOUT_RESTART:
            return _call(method, path, STRATEGIC, restart_body(_now()), namespace=ns, name=name)
        if a.replicas is not None:
            body = {"spec": {"replicas": a.replicas}}
            return _call(method + "_scale", path + "/scale", MERGE, body, namespace=ns, name=name)
        call = _call(method + "_scale", path + "/scale", MERGE, None, namespace=ns, name=name)
        return {
            **call,
            "read_first": f"GET {path}/scale",
            "scale_by": a.scale_by,
            "max_replicas": a.max_replicas,
        }

    async def execute(self, request: RemediationRequest, call: dict[str, Any]) -> dict[str, Any]:
        """Make the planned call in a thread; 5xx/429/409/no connection are Retryable."""
        try:
            return await asyncio.to_thread(self._execute, call)
        except ApiException as e:
            reason = f"{e.status} {e.reason}: {_message(e)}"
            if e.status in (409, 429) or (e.status or 0) >= 500:
                raise Retryable(f"Kubernetes API answered {reason}") from None
            raise Permanent(f"Kubernetes API answered {reason}") from None
        except urllib3.exceptions.HTTPError as e:
            raise Retryable(f"Kubernetes API unreachable: {type(e).__name__}: {e}") from None

    def _execute(self, call: dict[str, Any]) -> dict[str, Any]:
        client = self.client.get()
        timeout = self.action.timeout
        options: dict[str, Any] = {"_request_timeout": timeout, "_preload_content": False}
        if self.action.operation == KubeOperation.CORDON:
            api = kubernetes.client.CoreV1Api(client)
            api.patch_node(call["node"], call["body"], _content_type=STRATEGIC, **options)
            return call
        apps = kubernetes.client.AppsV1Api(client)
        kind, name, ns = METHODS[self.action.kind], call["name"], call["namespace"]
        if self.action.operation == KubeOperation.ROLLOUT_RESTART:
            made = {**call, "body": restart_body(_now())}
            patch = getattr(apps, f"patch_namespaced_{kind}")
            patch(name, ns, made["body"], _content_type=STRATEGIC, **options)
            return made
        made = dict(call)
        if call["body"] is None:  # scale_by: read, add, cap
            read = getattr(apps, f"read_namespaced_{kind}_scale")
            current = int(json.loads(read(name, ns, **options).data)["spec"].get("replicas", 0))
            wanted = max(0, min(current + int(call["scale_by"]), int(call["max_replicas"])))
            made.update(replicas_before=current, body={"spec": {"replicas": wanted}})
            if wanted == current:
                return {**made, "unchanged": True}
        patch = getattr(apps, f"patch_namespaced_{kind}_scale")
        patch(name, ns, made["body"], _content_type=MERGE, **options)
        return made

    async def close(self) -> None:
        """Close the shared client's pool."""
        await asyncio.to_thread(self.client.close)


def restart_body(at: str) -> dict[str, Any]:
    """The patch ``kubectl rollout restart`` sends: a new pod-template annotation."""
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at}}}}}


def _call(api: str, path: str, content_type: str, body: Any, **target: str) -> dict[str, Any]:
    return {
        "api": api,
        "method": "PATCH",
        "path": path,
        "content_type": content_type,
        "body": body,
        **target,
    }


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body or "{}").get("message", ""))[:300]
    except (ValueError, AttributeError):
        return str(e.body or "")[:300]
