"""Targets of the outbox from receiver configs: one per receiver, sending each notification
to every channel config of the receiver.

Partial success: when one of several channels fails retryably after others took the
notification, the outbox retries the whole item. So that the retry does not send again
to the channels that took it, each channel's success is recorded under the key
``<item id>.<config index>`` (index in the order :func:`channels_of` lists them:
webhook, slack, pagerduty, email, apprise) in the outbox's ledger — the dedup bucket,
so it survives a restart (the outbox hands it over through :meth:`ReceiverTarget.use_ledger`;
without one a bounded in-memory ledger is used). A channel that fails permanently is
recorded the same way (it will never take it), and its error is reported with the others.
Reordering a receiver's configs while items are pending may re-send or skip one of them.
"""

from __future__ import annotations

from collections import OrderedDict

from alerting.delivery import Permanent, Retryable, Target
from alerting.model import Notification, OutboxItem
from alerting.notify.channels import (
    Channel,
    PagerDutyChannel,
    SlackChannel,
    WebhookChannel,
    apprise_channel,
    email_channel,
)
from alerting.notify.config import NotifyOptions, ReceiverConfig
from alerting.notify.http import HttpClient
from alerting.notify.render import Rendered, render
from alerting.outbox.dedup import Ledger

MEMORY_LEDGER_MAX = 10_000


class MemoryLedger:
    """A bounded in-process ledger (the oldest keys are forgotten first)."""

    def __init__(self, size: int = MEMORY_LEDGER_MAX) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    async def seen(self, key: str) -> bool:
        """Whether ``key`` was marked."""
        return key in self._keys

    async def mark(self, key: str) -> None:
        """Remember ``key``."""
        self._keys[key] = None
        while len(self._keys) > self.size:
            self._keys.popitem(last=False)


def channels_of(
    receiver: ReceiverConfig, options: NotifyOptions, http: HttpClient
) -> list[Channel]:
    """The receiver's channels, in a fixed order (their index is part of ledger keys)."""
    name = receiver.name
    found: list[Channel] = []
    found += [
        WebhookChannel(c, f"webhook_configs[{i}] of receiver {name}", options, http)
        for i, c in enumerate(receiver.webhook_configs)
    ]
    found += [
        SlackChannel(c, f"slack_configs[{i}] of receiver {name}", options, http)
        for i, c in enumerate(receiver.slack_configs)
    ]
    found += [
        PagerDutyChannel(c, f"pagerduty_configs[{i}] of receiver {name}", options, http)
        for i, c in enumerate(receiver.pagerduty_configs)
    ]
    found += [
        email_channel(c, f"email_configs[{i}] of receiver {name}")
        for i, c in enumerate(receiver.email_configs)
    ]
    found += [
        apprise_channel(c, f"apprise_configs[{i}] of receiver {name}")
        for i, c in enumerate(receiver.apprise_configs)
    ]
    return found


class ReceiverTarget:
    """The outbox target of one receiver (kind ``notification`` items)."""

    def __init__(self, receiver: ReceiverConfig, options: NotifyOptions) -> None:
        self.name = receiver.name
        self.receiver, self.options = receiver, options
        self.http = HttpClient(options.timeout)
        self.channels = channels_of(receiver, options, self.http)
        self.ledger: Ledger = MemoryLedger()

    async def close(self) -> None:
        """Close the HTTP connections (the outbox calls it at shutdown)."""
        await self.http.close()

    def use_ledger(self, ledger: Ledger) -> None:
        """Record per-channel successes in ``ledger`` (called by the outbox at start)."""
        self.ledger = ledger

    async def deliver(self, item: OutboxItem) -> None:
        """Send the item's notification to every channel that has not taken it yet."""
        n = self._notification(item)
        rendered = self.render(n)
        retryable: list[Retryable] = []
        permanent: list[Permanent] = []
        for index, channel in enumerate(self.channels):
            if n.status == "resolved" and not channel.send_resolved:
                continue
            key = f"{item.id}.{index}"
            if await self.ledger.seen(key):
                continue
            try:
                await channel.send(n, rendered)
            except Retryable as exc:
                retryable.append(exc)
                continue
            except Permanent as exc:
                permanent.append(exc)  # recorded as settled: it will never take it
            await self.ledger.mark(key)
        messages = "; ".join(str(e) for e in (*retryable, *permanent))
        if retryable:
            waits = [e.retry_after for e in retryable if e.retry_after is not None]
            raise Retryable(messages, max(waits) if waits else None)
        if permanent:
            raise Permanent(messages)

    def render(self, n: Notification) -> Rendered:
        """Title and body with the receiver's templates over the global ones."""
        own, common = self.receiver.templates, self.options.templates
        return render(
            n,
            title=(own.title if own else None) or common.title,
            body=(own.body if own else None) or common.body,
            external_url=self.options.external_url,
            dashboards_url=self.options.dashboards_url,
        )

    def _notification(self, item: OutboxItem) -> Notification:
        if item.kind != "notification":
            raise Permanent(f"receiver {self.name} takes notifications, not {item.kind} items")
        try:
            return Notification.from_json(item.body)
        except (TypeError, KeyError) as exc:
            raise Permanent(f"item {item.id} is not a notification: {exc}") from None


def receiver_targets(receivers: list[ReceiverConfig], options: NotifyOptions) -> dict[str, Target]:
    """One outbox target per receiver, by name; ValueError on a duplicate name."""
    targets: dict[str, Target] = {}
    for receiver in receivers:
        if receiver.name in targets:
            raise ValueError(
                f"receiver {receiver.name!r} is defined twice: give each receiver its own name"
            )
        targets[receiver.name] = ReceiverTarget(receiver, options)
    return targets
