"""Kubernetes remediation through the official ``kubernetes`` client.

No cluster can run here: ``fixtures.kube.FakeKube``, a local test double of the Kubernetes
API server (an http.server on a free loopback port), stands in for the API server. The
client is pointed at it with ``remediation.kube.api_server`` (Configuration(host=...)).
The tests assert the exact requests the client makes (method, path, content type, patch
body) for rollout restart, scale (Deployment and StatefulSet) and cordon, and that a dry
run makes none.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fixtures.kube import Call, FakeKube
from fixtures.remediation import started

from alerting.delivery import Permanent, Retryable
from alerting.model import OutboxItem, fingerprint
from keiko.config.load import ConfigError

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


@pytest.fixture
def kube() -> Iterator[FakeKube]:
    fake = FakeKube().start()
    yield fake
    fake.stop()


def config(kube: FakeKube, dry_run: bool = False, **action: Any) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "kube": {"api_server": kube.url},
        "actions": [{"name": "fix", "type": "kubernetes", "cooldown": 0, **action}],
    }


def item(request_id: str = "r1", **labels: str) -> OutboxItem:
    alert_labels = {"alertname": "PodCrashLooping", **labels}
    alert = {"status": "firing", "labels": alert_labels, "fingerprint": fingerprint(alert_labels)}
    body = {
        "request_id": request_id,
        "action": "fix",
        "group_key": "{}:{alertname=PodCrashLooping}",
        "group_labels": {"alertname": "PodCrashLooping"},
        "alerts": [alert],
        "created": time.time(),
    }
    return OutboxItem(request_id, "remediation", "fix", body, time.time())


def deliver(tmp_path: Path, cfg: dict[str, Any], sent: OutboxItem) -> list[dict[str, Any]]:
    """Deliver ``sent`` to the action "fix"; the remediation events that followed."""

    async def main() -> list[dict[str, Any]]:
        async with started(tmp_path / "data", cfg) as r:
            try:
                await r.targets()["fix"].deliver(sent)
            finally:
                records = await r.ctx.store.read("events", 1, 100)
        return [json.loads(x.payload) for x in records]

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("kind", "resource"), [("Deployment", "deployments"), ("StatefulSet", "statefulsets")]
)
def test_rollout_restart_patches_the_pod_template(
    tmp_path: Path, kube: FakeKube, kind: str, resource: str
) -> None:
    cfg = config(kube, operation="rollout_restart", kind=kind, namespace="shop", workload="cart")
    before = datetime.now(UTC).replace(microsecond=0)
    (event,) = deliver(tmp_path, cfg, item())
    (call,) = kube.calls
    assert (call.method, call.path) == ("PATCH", f"/apis/apps/v1/namespaces/shop/{resource}/cart")
    assert call.content_type == STRATEGIC
    annotations = call.body["spec"]["template"]["metadata"]["annotations"]
    assert list(call.body) == ["spec"] and list(annotations) == [
        "kubectl.kubernetes.io/restartedAt"
    ]
    stamp = datetime.fromisoformat(annotations["kubectl.kubernetes.io/restartedAt"])
    assert before <= stamp <= datetime.now(UTC)
    assert event["status"] == "executed" and event["call"]["body"] == call.body
    assert event["call"]["path"] == call.path


def test_scale_deployment_to_an_absolute_count(tmp_path: Path, kube: FakeKube) -> None:
    cfg = config(kube, operation="scale", namespace="shop", workload="cart", replicas=5)
    (event,) = deliver(tmp_path, cfg, item())
    assert kube.calls == [
        Call(
            "PATCH",
            "/apis/apps/v1/namespaces/shop/deployments/cart/scale",
            MERGE,
            {"spec": {"replicas": 5}},
        )
    ]
    assert event["status"] == "executed" and kube.replicas[("shop", "cart")] == 5


def test_scale_statefulset_by_a_delta_up_to_the_cap(tmp_path: Path, kube: FakeKube) -> None:
    kube.replicas[("data", "redis")] = 3
    cfg = config(
        kube,
        operation="scale",
        kind="StatefulSet",
        namespace_from_label="namespace",
        workload_from_label="statefulset",
        scale_by=2,
        max_replicas=4,
    )
    (event,) = deliver(tmp_path, cfg, item(namespace="data", statefulset="redis"))
    path = "/apis/apps/v1/namespaces/data/statefulsets/redis/scale"
    assert kube.calls == [
        Call("GET", path, "", None),
        Call("PATCH", path, MERGE, {"spec": {"replicas": 4}}),  # 3 + 2, capped at 4
    ]
    assert event["call"]["replicas_before"] == 3 and event["call"]["body"]["spec"]["replicas"] == 4


def test_cordon_takes_the_node_from_a_validated_label(tmp_path: Path, kube: FakeKube) -> None:
    cfg = config(kube, operation="cordon", node_from_label="node")
    (event,) = deliver(tmp_path, cfg, item(node="worker-3.eu-west"))
    assert kube.calls == [
        Call(
            "PATCH", "/api/v1/nodes/worker-3.eu-west", STRATEGIC, {"spec": {"unschedulable": True}}
        )
    ]
    assert event["status"] == "executed"


@pytest.mark.parametrize("value", ["cart; rm -rf /", "$(reboot)", "Cart", "../../nodes/x", ""])
def test_a_label_value_that_is_not_a_name_is_refused(
    tmp_path: Path, kube: FakeKube, value: str
) -> None:
    cfg = config(kube, operation="rollout_restart", namespace="shop", workload_from_label="pod")
    with pytest.raises(Permanent, match=r"label pod: .* is not a DNS-1123"):
        deliver(tmp_path, cfg, item(pod=value))
    assert kube.calls == []


def test_alerts_that_disagree_on_the_label_are_refused(tmp_path: Path, kube: FakeKube) -> None:
    cfg = config(kube, operation="cordon", node_from_label="node")
    sent = item(node="worker-1")
    labels = {"alertname": "PodCrashLooping", "node": "worker-2"}
    sent.body["alerts"].append(
        {"status": "firing", "labels": labels, "fingerprint": fingerprint(labels)}
    )
    with pytest.raises(Permanent, match="the alerts disagree"):
        deliver(tmp_path, cfg, sent)
    assert kube.calls == []
    sent.body["alerts"][1]["status"] = "resolved"  # only firing alerts name the target
    (event,) = deliver(tmp_path / "again", cfg, sent)
    assert event["status"] == "executed" and kube.calls[0].path == "/api/v1/nodes/worker-1"


def test_dry_run_makes_no_api_call(tmp_path: Path, kube: FakeKube) -> None:
    actions: list[dict[str, Any]] = [
        {"operation": "rollout_restart", "namespace": "shop", "workload": "cart"},
        {"operation": "scale", "namespace": "shop", "workload": "cart", "replicas": 2},
        {
            "operation": "scale",
            "kind": "StatefulSet",
            "namespace": "shop",
            "workload": "db",
            "scale_by": 1,
            "max_replicas": 3,
        },
        {"operation": "cordon", "node": "worker-1"},
    ]
    paths = []
    for k, action in enumerate(actions):
        (event,) = deliver(tmp_path / str(k), config(kube, dry_run=True, **action), item())
        assert event["status"] == "dry_run"
        paths.append(event["call"]["path"])
    assert kube.calls == []
    assert paths == [
        "/apis/apps/v1/namespaces/shop/deployments/cart",
        "/apis/apps/v1/namespaces/shop/deployments/cart/scale",
        "/apis/apps/v1/namespaces/shop/statefulsets/db/scale",
        "/api/v1/nodes/worker-1",
    ]


def test_api_server_errors_are_retried_or_permanent(tmp_path: Path, kube: FakeKube) -> None:
    cfg = config(kube, operation="cordon", node="worker-1")

    async def main() -> list[str]:
        async with started(tmp_path / "data", cfg) as r:
            target = r.targets()["fix"]
            kube.fail_next = [503]
            with pytest.raises(Retryable, match="503"):
                await target.deliver(item("r1"))
            await target.deliver(item("r1"))  # the outbox's retry succeeds
            kube.fail_next = [403]
            with pytest.raises(Permanent, match="403"):
                await target.deliver(item("r2"))
            records = await r.ctx.store.read("events", 1, 100)
        return [json.loads(x.payload)["status"] for x in records]

    assert asyncio.run(main()) == ["failed", "executed", "failed"]
    assert len(kube.calls) == 3


def test_a_live_action_without_kube_config_fails_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    cfg = {
        "dry_run": False,
        "kube": {"kubeconfig": str(tmp_path / "missing.yaml"), "in_cluster": False},
        "actions": [{"name": "fix", "type": "kubernetes", "operation": "cordon", "node": "n1"}],
    }

    async def main() -> None:
        async with started(tmp_path / "data", cfg):
            pass

    with pytest.raises(ConfigError, match=r"remediation\.kube"):
        asyncio.run(main())
    cfg["dry_run"] = True  # a dry run needs no cluster

    asyncio.run(main())
