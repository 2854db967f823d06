"""examples/keda-scaledobject.yaml: the part Kubernetes reads checked against its schema.

KEDA's CRD schema is not available offline; what KEDA hands to the HPA it creates
(``advanced.horizontalPodAutoscalerConfig.behavior``) is checked as an autoscaling/v2
HorizontalPodAutoscaler's behavior with Kubernetes' own schemas, and the trigger against
what keiko exports. The query itself runs through a real Prometheus scraping a running
keiko in tests/analytics/test_scaling_component.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import yaml

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy/kubernetes/examples/keda-scaledobject.yaml"


def test_behavior_is_a_valid_hpa_behavior_that_keeps_no_released_pods() -> None:
    [obj] = list(yaml.safe_load_all(EXAMPLE.read_text()))
    assert obj["apiVersion"] == "keda.sh/v1alpha1" and obj["kind"] == "ScaledObject"
    spec = obj["spec"]
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "keda-hpa-checkout", "namespace": "shop"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout"},
            "minReplicas": spec["minReplicaCount"],
            "maxReplicas": spec["maxReplicaCount"],
            "behavior": behavior,
        },
    }
    kubernetes_validate.validate(hpa, kubernetes_validate.utils.latest_version(), strict=True)
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 0


def test_trigger_wants_exactly_the_advice_and_holds_without_it() -> None:
    [obj] = list(yaml.safe_load_all(EXAMPLE.read_text()))
    [trigger] = obj["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    assert meta["threshold"] == "1"  # desired = ceil(advice / 1)
    assert meta["ignoreNullValues"] == "false"  # KEDA's default reads no advice as 0
    # one element whatever the number of exporting replicas; the workload as keiko names it
    assert re.fullmatch(
        r'max\(keiko_scaling_desired_replicas\{workload="[^/"]+/[^"]+"\}\)', meta["query"]
    )
