"""What every action kind shares: the request it acts on and the executor interface.

An executor first *plans* (the exact call it would make, as JSON without secrets; this is
what dry-run audits and what a human approves), then *executes* that plan. Plans are
built from config and from validated label values only; alert text is data, never code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from alerting.delivery import Permanent
from alerting.model import OutboxItem
from alerting.remediation.config import (
    LABEL_NAME,
    ActionConfig,
    CommandAction,
    KubeAction,
    KubeSettings,
    WebhookAction,
    check_dns_name,
)

if TYPE_CHECKING:
    from alerting.remediation.kube import KubeClient


class Refused(Permanent):
    """The request cannot be turned into a safe call (a label value that is not a name)."""


@dataclass(slots=True)
class RemediationRequest:
    """One outbox item of kind ``remediation``: an action owed to one alert group."""

    request_id: str
    action: str
    group_key: str
    group_labels: dict[str, str]
    alerts: list[dict[str, Any]]
    route: str = ""
    created: float = 0.0
    fingerprints: list[str] = field(default_factory=list)

    @classmethod
    def from_item(cls, item: OutboxItem) -> RemediationRequest:
        """The request in ``item``'s body; Permanent when the body is not one."""
        body = item.body
        try:
            alerts = list(body.get("alerts", []))
            request = cls(
                request_id=str(body.get("request_id") or item.id),
                action=item.target,  # the outbox routes by target: it names the action
                group_key=str(body.get("group_key", "")),
                group_labels={str(k): str(v) for k, v in body.get("group_labels", {}).items()},
                alerts=alerts,
                route=str(body.get("route", "")),
                created=float(body.get("created", item.created)),
                fingerprints=[str(a.get("fingerprint", "")) for a in alerts],
            )
        except (AttributeError, TypeError, ValueError) as e:
            raise Permanent(f"outbox item {item.id}: not a remediation request ({e})") from None
        return request

    def to_json(self) -> dict[str, Any]:
        """The request as stored with a pending approval (and given to webhooks/commands)."""
        return {
            "request_id": self.request_id,
            "action": self.action,
            "group_key": self.group_key,
            "group_labels": self.group_labels,
            "alerts": self.alerts,
            "route": self.route,
            "created": self.created,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> RemediationRequest:
        """The inverse of :meth:`to_json`."""
        alerts = doc.get("alerts", [])
        return cls(
            request_id=doc["request_id"],
            action=doc["action"],
            group_key=doc.get("group_key", ""),
            group_labels=doc.get("group_labels", {}),
            alerts=alerts,
            route=doc.get("route", ""),
            created=doc.get("created", 0.0),
            fingerprints=[str(a.get("fingerprint", "")) for a in alerts],
        )

    def label(self, name: str) -> str | None:
        """The value of label ``name`` for the group: a group label, or the one value every
        firing alert that has it agrees on; Refused when they disagree."""
        if name in self.group_labels:
            return self.group_labels[name]
        firing = [a for a in self.alerts if a.get("status", "firing") == "firing"]
        values = {str(a.get("labels", {})[name]) for a in firing if name in a.get("labels", {})}
        if len(values) > 1:
            raise Refused(f"label {name}: the alerts disagree ({len(values)} values)")
        return values.pop() if values else None

    def name_from_label(self, name: str, *, subdomain: bool) -> str:
        """A Kubernetes name taken from label ``name``, validated (never interpolated)."""
        assert LABEL_NAME.match(name)
        value = self.label(name)
        if value is None:
            raise Refused(f"label {name}: no alert of the group has it")
        try:
            return check_dns_name(value, subdomain=subdomain)
        except ValueError as e:
            raise Refused(f"label {name}: {e}") from None


class Executor(Protocol):
    """One action's way of acting."""

    def plan(self, request: RemediationRequest) -> dict[str, Any]:
        """The exact call for ``request`` as JSON (no secrets); Refused if unsafe."""
        ...

    async def execute(self, request: RemediationRequest, call: dict[str, Any]) -> dict[str, Any]:
        """Make ``call``; return it as made. Raise Retryable or Permanent on failure."""
        ...

    async def close(self) -> None:
        """Release connections (idempotent)."""
        ...


def build_executor(action: ActionConfig, kube: KubeSettings | KubeClient) -> Executor:
    """The executor of ``action`` (imports stay local: each kind pulls its own client)."""
    if isinstance(action, WebhookAction):
        from alerting.remediation.webhook import WebhookExecutor

        return WebhookExecutor(action)
    if isinstance(action, KubeAction):
        from alerting.remediation.kube import KubeExecutor

        return KubeExecutor(action, kube)
    assert isinstance(action, CommandAction)
    from alerting.remediation.command import CommandExecutor

    return CommandExecutor(action)


def payload(request: RemediationRequest) -> dict[str, Any]:
    """What webhooks and commands are given: the request as data."""
    return {
        "request_id": request.request_id,
        "action": request.action,
        "group_key": request.group_key,
        "group_labels": request.group_labels,
        "alerts": request.alerts,
    }
