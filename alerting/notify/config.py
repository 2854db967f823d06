"""Config of receivers (Alertmanager's receiver key names) and of the channels' options.

Defaults follow Alertmanager's: ``send_resolved`` true for webhook and PagerDuty, false
for Slack and e-mail; apprise URLs default to true. Secrets (URLs with tokens, routing
keys, passwords) are :class:`~alerting.secrets.Secret`: inline, ``{file: PATH}`` or
``{env: NAME}``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from alerting.notify.render import check_template
from alerting.secrets import Secret
from keiko.store.config import Strict
from keiko.units import Duration, parse_endpoint


class Templates(Strict):
    """Title and body templates (Python ``string.Template``: ``$name`` / ``${name}``)."""

    title: str | None = Field(
        default=None, description="Title/subject template; unset: keiko's default."
    )
    body: str | None = Field(default=None, description="Body template; unset: keiko's default.")

    @field_validator("title", "body")
    @classmethod
    def _known(cls, text: str | None) -> str | None:
        return None if text is None else check_template(text)


class WebhookConfig(Strict):
    """POSTs Alertmanager's webhook JSON (version 4) plus keiko's ``evidence`` list."""

    url: Secret = Field(description="Where to POST (a secret: it often carries a token).")
    send_resolved: bool = Field(default=True, description="Also tell resolved groups.")
    max_alerts: int = Field(
        default=0,
        ge=0,
        description="Send at most this many alerts (0: all); the rest are "
        "counted in truncatedAlerts.",
    )


class SlackConfig(Strict):
    """POSTs a Slack incoming-webhook message (text + blocks)."""

    api_url: Secret = Field(description="The Slack incoming-webhook URL (a secret).")
    channel: str | None = Field(default=None, description="Override the webhook's channel.")
    send_resolved: bool = Field(default=False, description="Also tell resolved groups.")


class PagerDutyConfig(Strict):
    """Sends PagerDuty Events API v2 events (trigger / resolve, dedup key = group key)."""

    routing_key: Secret = Field(description="The integration's routing key (a secret).")
    url: str = Field(
        default="https://events.pagerduty.com/v2/enqueue",
        description="The Events API v2 endpoint.",
    )
    send_resolved: bool = Field(default=True, description="Resolve the incident on resolve.")
    severity: Literal["critical", "error", "warning", "info"] = Field(
        default="error", description="The PagerDuty severity of triggered events."
    )


class EmailConfig(Strict):
    """Sends e-mail through apprise (``mailto://`` / ``mailtos://``) via an SMTP smarthost."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    to: str = Field(description="Recipient address(es), comma-separated.")
    from_: str = Field(alias="from", description="Sender address.")
    smarthost: str = Field(description="SMTP server as host:port, e.g. smtp.example.org:587.")
    auth_username: str | None = Field(default=None, description="SMTP user, if it needs one.")
    auth_password: Secret | None = Field(default=None, description="SMTP password (a secret).")
    require_tls: bool = Field(
        default=True,
        description="Use TLS (STARTTLS, or implicit TLS on port 465); false sends in clear "
        "text (only for a local relay).",
    )
    send_resolved: bool = Field(default=False, description="Also tell resolved groups.")

    @field_validator("smarthost")
    @classmethod
    def _endpoint(cls, text: str) -> str:
        return parse_endpoint(text)


class AppriseConfig(Strict):
    """Any other channel apprise knows (Teams, Discord, ntfy, Telegram, ...) by its URL."""

    url: Secret = Field(description="The apprise URL, e.g. ntfys://ntfy.sh/topic (a secret).")
    send_resolved: bool = Field(default=True, description="Also tell resolved groups.")


class ReceiverConfig(Strict):
    """A named receiver: every channel config in it gets each of its notifications (none:
    Alertmanager's "null receiver", which drops them)."""

    name: str = Field(min_length=1, description="The receiver's name (routes refer to it).")
    webhook_configs: list[WebhookConfig] = Field(default_factory=list, description="Webhooks.")
    slack_configs: list[SlackConfig] = Field(default_factory=list, description="Slack.")
    pagerduty_configs: list[PagerDutyConfig] = Field(
        default_factory=list, description="PagerDuty Events API v2."
    )
    email_configs: list[EmailConfig] = Field(
        default_factory=list, description="E-mail (via apprise)."
    )
    apprise_configs: list[AppriseConfig] = Field(
        default_factory=list, description="Other apprise URLs."
    )
    templates: Templates | None = Field(
        default=None, description="Title/body templates of this receiver (over the global)."
    )


class NotifyOptions(Strict):
    """What every channel shares."""

    timeout: Duration = Field(default=10.0, description="HTTP timeout of one request.")
    external_url: str = Field(
        default="", description="keiko's URL as people reach it (externalURL, links)."
    )
    dashboards_url: str = Field(
        default="", description="A Grafana dashboard URL added to every notification's links."
    )
    source: str = Field(default="keiko", description="PagerDuty payload.source.")
    templates: Templates = Field(
        default_factory=Templates, description="Global title/body templates."
    )
