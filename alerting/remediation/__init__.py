"""Guarded remediation hooks: actions (webhook, Kubernetes, command) that routes name,
run through the outbox behind dry-run, rate limits, cooldowns and optional approval, each
attempt audited as an event. See :class:`Remediator` and :class:`RemediationConfig`."""

from alerting.remediation.config import RemediationConfig
from alerting.remediation.runner import Remediator

__all__ = ["RemediationConfig", "Remediator"]
