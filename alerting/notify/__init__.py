"""Notification channels: receivers in Alertmanager's shape (webhook, Slack, PagerDuty,
e-mail and any apprise URL), their templates, and the outbox targets built from them."""

from alerting.notify.alertmanager import receivers_from_alertmanager
from alerting.notify.build import ReceiverTarget, receiver_targets
from alerting.notify.config import (
    AppriseConfig,
    EmailConfig,
    NotifyOptions,
    PagerDutyConfig,
    ReceiverConfig,
    SlackConfig,
    Templates,
    WebhookConfig,
)
from alerting.notify.render import VARIABLES, Rendered, render

__all__ = [
    "VARIABLES",
    "AppriseConfig",
    "EmailConfig",
    "NotifyOptions",
    "PagerDutyConfig",
    "ReceiverConfig",
    "ReceiverTarget",
    "Rendered",
    "SlackConfig",
    "Templates",
    "WebhookConfig",
    "receiver_targets",
    "receivers_from_alertmanager",
    "render",
]
