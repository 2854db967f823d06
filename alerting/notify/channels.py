"""The notification channels: webhook (Alertmanager JSON v4), Slack, PagerDuty (HTTP via
httpx) and e-mail / any apprise URL (via apprise). Each sends one notification or raises
:class:`~alerting.delivery.Retryable` / :class:`~alerting.delivery.Permanent`."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import apprise

from alerting.delivery import Permanent, Retryable
from alerting.model import Notification
from alerting.notify.config import (
    AppriseConfig,
    EmailConfig,
    NotifyOptions,
    PagerDutyConfig,
    SlackConfig,
    WebhookConfig,
)
from alerting.notify.http import HttpClient
from alerting.notify.render import Rendered
from keiko.units import split_endpoint

SLACK_HEADER_MAX = 150  # Slack's limit of a header block's text
SLACK_SECTION_MAX = 3000  # ... of a section block's text
PD_SUMMARY_MAX = 1024
PD_DEDUP_KEY_MAX = 255


class Channel(Protocol):
    """One channel config of a receiver."""

    what: str  # e.g. "slack_configs[0] of receiver ops" (for messages; never the URL)
    send_resolved: bool

    async def send(self, n: Notification, rendered: Rendered) -> None:
        """Send once; Retryable or Permanent on failure."""
        ...


class WebhookChannel:
    """Alertmanager's webhook JSON v4 plus keiko's ``evidence``."""

    def __init__(
        self, config: WebhookConfig, what: str, options: NotifyOptions, http: HttpClient
    ) -> None:
        self.config, self.what, self.options, self.http = config, what, options, http
        self.send_resolved = config.send_resolved

    async def send(self, n: Notification, rendered: Rendered) -> None:
        """POST the webhook document."""
        await self.http.post_json(self.config.url.resolve(), self.document(n), self.what)

    def document(self, n: Notification) -> dict[str, Any]:
        """Alertmanager's webhook payload (version 4)."""
        cap = self.config.max_alerts
        alerts = n.alerts[:cap] if cap else n.alerts
        return {
            "version": "4",
            "groupKey": n.group_key,
            "truncatedAlerts": n.truncated_alerts + len(n.alerts) - len(alerts),
            "status": n.status,
            "receiver": n.receiver,
            "groupLabels": n.group_labels,
            "commonLabels": n.common("labels"),
            "commonAnnotations": n.common("annotations"),
            "externalURL": self.options.external_url,
            "alerts": alerts,
            "evidence": n.evidence,
            # keiko's: the same notification told again (a crash between the receiver's
            # answer and keiko's record of it) has the same id, for receivers to drop.
            "notificationId": n.id,
        }


class SlackChannel:
    """A Slack incoming-webhook message: text (the fallback) and blocks."""

    def __init__(
        self, config: SlackConfig, what: str, options: NotifyOptions, http: HttpClient
    ) -> None:
        self.config, self.what, self.options, self.http = config, what, options, http
        self.send_resolved = config.send_resolved

    async def send(self, n: Notification, rendered: Rendered) -> None:
        """POST the message."""
        url = self.config.api_url.resolve()
        await self.http.post_json(url, self.document(rendered), self.what)

    def document(self, r: Rendered) -> dict[str, Any]:
        """The message: header, body (evidence included), links."""
        blocks: list[dict[str, Any]] = [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": _cut(r.title, SLACK_HEADER_MAX)},
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _cut(r.body, SLACK_SECTION_MAX)},
            },
        ]
        if r.links:
            text = " | ".join(f"<{url}|{title}>" for title, url in r.links)
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": text}]})
        doc: dict[str, Any] = {"text": r.title, "blocks": blocks}
        if self.config.channel:
            doc["channel"] = self.config.channel
        return doc


class PagerDutyChannel:
    """PagerDuty Events API v2: trigger on firing, resolve on resolved; dedup key = the
    group key, so PagerDuty folds a group's repeats into one incident."""

    def __init__(
        self, config: PagerDutyConfig, what: str, options: NotifyOptions, http: HttpClient
    ) -> None:
        self.config, self.what, self.options, self.http = config, what, options, http
        self.send_resolved = config.send_resolved

    async def send(self, n: Notification, rendered: Rendered) -> None:
        """POST the event."""
        await self.http.post_json(self.config.url, self.document(n, rendered), self.what)

    def document(self, n: Notification, r: Rendered) -> dict[str, Any]:
        """The Events API v2 event."""
        resolved = n.status == "resolved"
        doc: dict[str, Any] = {
            "routing_key": self.config.routing_key.resolve(),
            "event_action": "resolve" if resolved else "trigger",
            "dedup_key": dedup_key(n.group_key),
            "payload": {
                "summary": _cut(r.title, PD_SUMMARY_MAX),
                "source": self.options.source,
                "severity": self.config.severity,
                "custom_details": {
                    "status": n.status,
                    "num_alerts": len(n.alerts) + n.truncated_alerts,
                    "group_labels": n.group_labels,
                    "common_labels": n.common("labels"),
                    "details": r.body,
                    "evidence": n.evidence,
                },
            },
            "links": [{"href": url, "text": title} for title, url in r.links],
            "client": "keiko",
        }
        if self.options.external_url:
            doc["client_url"] = self.options.external_url
        return doc


def dedup_key(group_key: str) -> str:
    """The group key, or its SHA-256 when PagerDuty's 255-character limit would cut it."""
    if len(group_key) <= PD_DEDUP_KEY_MAX:
        return group_key
    return hashlib.sha256(group_key.encode()).hexdigest()


class AppriseChannel:
    """Any apprise URL (e-mail builds a ``mailto(s)://`` one). apprise is synchronous and
    answers only True/False, so it runs on a thread and False is taken as Retryable: a
    bad URL is caught when it is added (Permanent), so what remains is most often an
    outage, and a real one must not drop the notification (the outbox gives up at max_age)."""

    def __init__(self, url: Callable[[], str], what: str, send_resolved: bool) -> None:
        self._url = url  # resolved per send: secrets from files/env may rotate
        self.what, self.send_resolved = what, send_resolved

    async def send(self, n: Notification, rendered: Rendered) -> None:
        """Notify through apprise on a worker thread."""
        await asyncio.to_thread(self._notify, self._url(), rendered)

    def _notify(self, url: str, r: Rendered) -> None:
        # Memory storage: apprise keeps no files of its own on keiko's disk.
        asset = apprise.AppriseAsset(storage_mode=apprise.PersistentStoreMode.MEMORY)
        sender = apprise.Apprise(asset=asset)
        if not sender.add(url):
            raise Permanent(
                f"{self.what}: apprise does not accept the URL; check its scheme and "
                "parameters (see apprise's wiki)"
            )
        notify_type = (
            apprise.NotifyType.SUCCESS
            if r.variables["status"] == "resolved"
            else apprise.NotifyType.FAILURE
        )
        began = time.monotonic()
        if not sender.notify(title=r.title, body=r.body, notify_type=notify_type):
            raise Retryable(
                f"{self.what}: apprise could not deliver (after {time.monotonic() - began:.1f}s; "
                "apprise's log says why)"
            )


def email_url(config: EmailConfig, user: str | None, password: str | None) -> str:
    """The apprise URL of an e-mail config: ``mailtos://`` with STARTTLS (implicit TLS on
    465) when TLS is required, ``mailto://...&mode=insecure`` otherwise."""
    host, port = split_endpoint(config.smarthost)
    auth = ""
    if user:
        auth = quote(user, safe="")
        if password:
            auth += ":" + quote(password, safe="")
        auth += "@"
    mode = ("ssl" if port == 465 else "starttls") if config.require_tls else "insecure"
    scheme = "mailtos" if config.require_tls else "mailto"
    query = urlencode({"from": config.from_, "to": config.to, "smtp": host, "mode": mode})
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{auth}{netloc}:{port}/?{query}"


def email_channel(config: EmailConfig, what: str) -> AppriseChannel:
    """An apprise channel for ``config``; the password is resolved when sending."""

    def url() -> str:
        password = config.auth_password.resolve() if config.auth_password else None
        return email_url(config, config.auth_username, password)

    return AppriseChannel(url, what, config.send_resolved)


def apprise_channel(config: AppriseConfig, what: str) -> AppriseChannel:
    """An apprise channel for any apprise URL (resolved when sending)."""
    return AppriseChannel(config.url.resolve, what, config.send_resolved)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
