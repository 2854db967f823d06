"""Config of remediation hooks (the ``remediation:`` part of alerting's config).

Every action is guarded: a global ``dry_run`` (on by default, so nothing runs until an
operator turns it off), per-action rate limits and cooldowns, optional human approval,
and a check afterwards whether the alert resolved. Kubernetes targets and commands come
from config only; a value taken from an alert label is validated as a DNS-1123 name and
never interpolated into anything.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from alerting.secrets import Secret
from keiko.records import check_stream_name
from keiko.store.config import Strict
from keiko.units import Duration

ACTION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_dns_name(value: str, *, subdomain: bool) -> str:
    """``value`` if it is a DNS-1123 label (namespaces) or subdomain (objects, nodes)."""
    rule = DNS1123_SUBDOMAIN if subdomain else DNS1123_LABEL
    if not rule.match(value):
        kind = "subdomain (a-z, 0-9, '-', '.'; at most 253)" if subdomain else "label"
        raise ValueError(f"{value!r} is not a DNS-1123 {kind} name (lowercase a-z, 0-9, '-')")
    return value


class RateLimit(Strict):
    """At most ``max`` runs of one action per ``per`` (a sliding window). A dry run and a
    request sent for approval count as runs, so a dry run shows what the limit would do."""

    max: int = Field(default=3, ge=1, description="Runs allowed in the window.")
    per: Duration = Field(default=3600.0, description="The window, e.g. 1h.")


class Guardrails(Strict):
    """What every action kind shares: its name and the guards around it."""

    name: str = Field(
        description="The action's name, as routes name it (`remediation: [NAME]`); "
        "1-64 characters A-Z, a-z, 0-9, '_', '.', '-'."
    )
    dry_run: bool | None = Field(
        default=None,
        description="Log and audit the exact call instead of making it; unset = the global "
        "`remediation.dry_run`.",
    )
    rate_limit: RateLimit = Field(
        default_factory=RateLimit,
        description="At most `max` runs per `per` of this action, over all groups; more are "
        "skipped (audited).",
    )
    cooldown: Duration = Field(
        default=900.0,
        description="After a run for one alert group, skip the same action for the same "
        "group for this long (e.g. 15m).",
    )
    approval: bool = Field(
        default=False,
        description="Wait for a human to approve (POST /api/v1/remediations/ID/approve) "
        "before running.",
    )
    verify_after: Duration = Field(
        default=300.0,
        description="This long after a run, check whether the alerts resolved and audit "
        "it; 0 turns the check off.",
    )

    @model_validator(mode="after")
    def _name(self) -> Guardrails:
        if not ACTION_NAME.match(self.name):
            raise ValueError(
                f"name {self.name!r}: use 1-64 characters A-Z, a-z, 0-9, '_', '.' or '-'"
            )
        return self


class WebhookAction(Guardrails):
    """POST the request as JSON to a URL (2xx done; 5xx, 429, no connection: retried)."""

    type: Literal["webhook"] = Field(description="`webhook`.")
    url: Secret = Field(description="Where to POST: a string, {file: PATH} or {env: NAME}.")
    headers: dict[str, Secret] = Field(
        default_factory=dict, description="Extra headers (e.g. Authorization), as secrets."
    )
    timeout: Duration = Field(default=10.0, description="Give up on one POST after this.")


class KubeOperation(StrEnum):
    """What a kubernetes action does."""

    ROLLOUT_RESTART = "rollout_restart"
    SCALE = "scale"
    CORDON = "cordon"


class KubeAction(Guardrails):
    """A Kubernetes API call through the official client: restart, scale or cordon.

    The object is fixed in config (``namespace``, ``workload``, ``node``) or named by an alert
    label (``*_from_label``) whose value must be a DNS-1123 name, else the run is refused.
    """

    type: Literal["kubernetes"] = Field(description="`kubernetes`.")
    operation: KubeOperation = Field(description="rollout_restart, scale or cordon.")
    kind: Literal["Deployment", "StatefulSet"] = Field(
        default="Deployment", description="The workload kind (rollout_restart, scale)."
    )
    namespace: str | None = Field(default=None, description="The workload's namespace.")
    namespace_from_label: str | None = Field(
        default=None, description="Take the namespace from this alert label instead."
    )
    workload: str | None = Field(
        default=None,
        description="The Deployment's or StatefulSet's name (`name` is the action's own).",
    )
    workload_from_label: str | None = Field(
        default=None, description="Take the workload's name from this alert label instead."
    )
    replicas: int | None = Field(
        default=None, ge=0, description="scale: set this many replicas (absolute)."
    )
    scale_by: int | None = Field(
        default=None, description="scale: add this many replicas to the current count."
    )
    max_replicas: int | None = Field(
        default=None, ge=0, description="scale with scale_by: never go above this."
    )
    node: str | None = Field(default=None, description="cordon: the node's name.")
    node_from_label: str | None = Field(
        default=None, description="cordon: take the node's name from this alert label."
    )
    timeout: Duration = Field(default=30.0, description="Give up on one API call after this.")

    @model_validator(mode="after")
    def _target(self) -> KubeAction:
        if self.operation == KubeOperation.CORDON:
            _one_of(self, "node", "node_from_label", subdomain=True)
            _none_of(self, "cordon", "namespace", "namespace_from_label", "workload")
            _none_of(self, "cordon", "workload_from_label", "replicas", "scale_by", "max_replicas")
            return self
        _one_of(self, "namespace", "namespace_from_label", subdomain=False)
        _one_of(self, "workload", "workload_from_label", subdomain=True)
        _none_of(self, self.operation.value, "node", "node_from_label")
        if self.operation == KubeOperation.SCALE:
            if (self.replicas is None) == (self.scale_by is None):
                raise ValueError("scale: give either replicas (absolute) or scale_by (a delta)")
            if (self.scale_by is None) != (self.max_replicas is None):
                raise ValueError("scale_by goes with max_replicas (the cap), e.g. max_replicas: 10")
        else:
            _none_of(self, "rollout_restart", "replicas", "scale_by", "max_replicas")
        return self


def _one_of(action: KubeAction, fixed: str, label: str, *, subdomain: bool) -> None:
    value, from_label = getattr(action, fixed), getattr(action, label)
    if (value is None) == (from_label is None):
        raise ValueError(f"{action.operation.value}: give exactly one of {fixed} or {label}")
    if value is not None:
        try:
            check_dns_name(value, subdomain=subdomain)
        except ValueError as e:
            raise ValueError(f"{fixed}: {e}") from None
    elif not LABEL_NAME.match(from_label):
        raise ValueError(f"{label}: {from_label!r} is not a label name")


def _none_of(action: KubeAction, operation: str, *keys: str) -> None:
    given = [k for k in keys if getattr(action, k) is not None]
    if given:
        raise ValueError(f"{operation} does not take {', '.join(given)}: remove it")


class CommandAction(Guardrails):
    """Run an allowlisted program with argv from config; the request is JSON on stdin."""

    type: Literal["command"] = Field(description="`command`.")
    argv: list[str] = Field(
        min_length=1,
        description="The program (an absolute path listed in remediation.allowed_commands) "
        "and its arguments. Never built from alert text: the alerts arrive on stdin.",
    )
    timeout: Duration = Field(default=60.0, description="Kill the program after this.")
    env: dict[str, Secret] = Field(
        default_factory=dict,
        description="The program's environment (nothing of keiko's is passed on; PATH is "
        "/usr/bin:/bin unless set here).",
    )


ActionConfig = Annotated[WebhookAction | KubeAction | CommandAction, Field(discriminator="type")]


class KubeSettings(Strict):
    """How kubernetes actions reach the API server (the official client's configuration)."""

    kubeconfig: Path | None = Field(
        default=None, description="A kubeconfig file; unset = $KUBECONFIG or ~/.kube/config."
    )
    in_cluster: bool | None = Field(
        default=None,
        description="Use the pod's service account; unset = when $KUBERNETES_SERVICE_HOST is set.",
    )
    api_server: str | None = Field(
        default=None,
        description="Talk to this URL without credentials (tests, a local proxy such as "
        "`kubectl proxy`); overrides the two above.",
    )


class RemediationConfig(Strict):
    """Remediation hooks: actions that routes name, and the guards around them."""

    dry_run: bool = Field(
        default=True,
        description="Nothing is executed while this is true (each action may override with "
        "its own dry_run): every run is logged and audited with the exact call it would make.",
    )
    actions: list[ActionConfig] = Field(
        default_factory=list,
        description="The actions, each with `name` and `type`: webhook (url, headers, "
        "timeout), kubernetes (operation rollout_restart|scale|cordon, kind, namespace or "
        "namespace_from_label, workload or workload_from_label, replicas or scale_by with "
        "max_replicas, node or node_from_label, timeout) or command (argv, env, timeout); "
        "and the guards dry_run, rate_limit {max, per}, cooldown, approval, verify_after.",
    )
    allowed_commands: list[Path] = Field(
        default_factory=list,
        description="Absolute paths of the programs command actions may run (argv[0]).",
    )
    audit_stream: str = Field(
        default="events", description="The stream every attempt and outcome is appended to."
    )
    kube: KubeSettings = Field(
        default_factory=KubeSettings, description="How to reach the Kubernetes API server."
    )
    bucket: str = Field(
        default="remediation",
        description="The key-value bucket of requests, approvals, rate limits and cooldowns.",
    )
    history: int = Field(
        default=500, ge=1, description="Requests kept for the API (the oldest decided go first)."
    )

    @field_validator("audit_stream")
    @classmethod
    def _stream(cls, value: str) -> str:
        return check_stream_name(value)

    @model_validator(mode="after")
    def _check(self) -> RemediationConfig:
        for path in self.allowed_commands:
            if not path.is_absolute():
                raise ValueError(
                    f"allowed_commands: {str(path)!r} is not an absolute path; give the full "
                    "path, e.g. /usr/local/bin/restart-cart"
                )
        seen: set[str] = set()
        for i, action in enumerate(self.actions):
            if action.name in seen:
                raise ValueError(f"actions[{i}].name: {action.name!r} is used twice; rename one")
            seen.add(action.name)
            if isinstance(action, CommandAction):
                self._allowed(i, action)
        return self

    def _allowed(self, i: int, action: CommandAction) -> None:
        program = action.argv[0]
        if not Path(program).is_absolute() or Path(program) not in self.allowed_commands:
            raise ValueError(
                f"actions[{i}].argv[0]: {program!r} (action {action.name!r}) is not in "
                "remediation.allowed_commands; add its absolute path there or use an allowed "
                "program"
            )
