"""The `alerting.router` component: the Alertmanager-compatible API, keiko's own alert
sources, the alert engine, the outbox with its receivers, and remediation.

Data flow (each arrow through the store): API / keiko events -> ``alerts`` stream ->
engine (state, groups, escalation) -> ``outbox`` stream -> receivers and actions; every
change an event on ``events``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.routing import Route as HttpRoute

from alerting.api.v2 import AlertsApi, Backend
from alerting.config import DEFAULT_RECEIVER, AlertingConfig
from alerting.engine.correlate import INCIDENT_LABEL
from alerting.engine.groups import Level
from alerting.engine.stage import AlertEngine, Parts
from alerting.inhibit import Inhibitor
from alerting.leader import Elector
from alerting.notify.alertmanager import receivers_from_alertmanager
from alerting.notify.build import receiver_targets
from alerting.notify.config import ReceiverConfig
from alerting.outbox.worker import Outbox
from alerting.remediation.runner import Remediator
from alerting.routing.config import InhibitRuleConfig, RouteConfig, TimeIntervalConfig
from alerting.routing.load import load_alertmanager
from alerting.routing.timeintervals import TimeIntervals
from alerting.routing.tree import Route, build_tree
from alerting.silencekeeper import SilenceKeeper
from alerting.sources import SourceStage
from keiko.api.errors import error_response
from keiko.components import ComponentSpec, Context
from keiko.stream.config import CheckpointConfig
from keiko.stream.export import gauge, worker_metrics

log = logging.getLogger(__name__)
SILENCE_REFRESH_S = 2.0


@dataclass
class Routing:
    """The Alertmanager part of the config, from the file or inline."""

    route: RouteConfig
    receivers: list[ReceiverConfig]
    inhibit_rules: list[InhibitRuleConfig]
    time_intervals: list[TimeIntervalConfig]


def routing_of(config: AlertingConfig) -> Routing:
    """Inline config, or the Alertmanager file; the default route when none is given."""
    if config.alertmanager_config is not None:
        am = load_alertmanager(config.alertmanager_config)
        for key in am.ignored:
            log.warning("alerting: %s: %r is ignored by keiko", config.alertmanager_config, key)
        receivers = receivers_from_alertmanager(am.receivers)
        return Routing(am.route, receivers, am.inhibit_rules, am.time_intervals)
    route = config.route or RouteConfig(
        receiver=DEFAULT_RECEIVER, group_by=[INCIDENT_LABEL, "alertname"]
    )
    receivers = list(config.receivers)
    if route.receiver == DEFAULT_RECEIVER and DEFAULT_RECEIVER not in {r.name for r in receivers}:
        receivers.append(ReceiverConfig(name=DEFAULT_RECEIVER))
    return Routing(route, receivers, list(config.inhibit_rules), list(config.time_intervals))


def check_references(config: AlertingConfig, tree: Route, receivers: set[str]) -> None:
    """Escalation policies and remediation actions that routes name must exist."""
    policies = {p.name: p for p in config.escalation_policies}
    actions = {a.name for a in config.remediation.actions}
    for p in config.escalation_policies:
        for k, level in enumerate(p.levels):
            for r in level.receivers:
                if r not in receivers:
                    raise ValueError(
                        f"escalation_policies[{p.name}].levels[{k}]: unknown receiver {r!r}; "
                        f"known: {', '.join(sorted(receivers))}"
                    )
    for route in tree.walk():
        if route.escalation and route.escalation not in policies:
            raise ValueError(
                f"route {route.id}: escalation {route.escalation!r} is not in escalation_policies"
            )
        for a in route.remediation:
            if a not in actions:
                raise ValueError(
                    f"route {route.id}: remediation action {a!r} is not in remediation.actions"
                )


class AlertingComponent:
    """Everything alerting runs in one process, started and stopped together."""

    name = "alerting"

    def __init__(self, config: AlertingConfig, ctx: Context) -> None:
        self.config, self.ctx = config, ctx
        routing = routing_of(config)
        names = {r.name for r in routing.receivers}
        tree = build_tree(routing.route, names, {t.name for t in routing.time_intervals})
        check_references(config, tree, names)
        policies = {
            p.name: [Level(lv.after, tuple(lv.receivers)) for lv in p.levels]
            for p in config.escalation_policies
        }
        self.keeper = SilenceKeeper(
            ctx.store, config.silences_bucket, threading.Lock(), config.retention
        )
        parts = Parts(
            tree=tree,
            inhibitor=Inhibitor(routing.inhibit_rules),
            intervals=TimeIntervals(routing.time_intervals),
            silences=self.keeper,
            policies=policies,
            resolve_timeout=config.resolve_timeout,
            max_alerts=config.max_alerts,
            max_alerts_per_notification=config.max_alerts_per_notification,
            retention=config.retention,
        )
        self.engine = AlertEngine(parts, ctx, config.checkpoint, config.fetch_batch)
        sources_checkpoint = CheckpointConfig(bucket=config.checkpoint.bucket, interval=10.0)
        self.sources = SourceStage(config.sources, ctx, sources_checkpoint)
        self.remediator = Remediator(config.remediation, ctx, self._resolved)
        targets = {
            **receiver_targets(routing.receivers, config.notify),
            **self.remediator.targets(),
        }
        self.outbox = Outbox(config.outbox, ctx, targets)
        self.routing = routing
        self.elector = Elector(
            ctx.store,
            config.checkpoint.bucket,
            config.leader_lease,
            {"api": ctx.config.api.endpoint},
            self._lead,
        )
        backend = Backend(
            engine=self.engine,
            standby=self._standby,
            keeper=self.keeper,
            receivers=sorted(names),
            max_request_bytes=config.max_request_bytes,
            config_text=self._config_text,
            started=time.time(),
        )
        ctx.routes.extend(AlertsApi(backend).routes())
        ctx.routes.extend(leader_only(self.remediator.routes(), self._standby))
        self._refresh_task: asyncio.Task[None] | None = None
        self.export = AlertingExport(self)

    def _resolved(self, fingerprints: list[str]) -> bool | None:
        now = time.time()
        with self.engine.lock:
            alerts = [self.engine.book.alerts.get(fp) for fp in fingerprints]
        if any(a is None for a in alerts):
            return None  # forgotten after retention: unknown
        return all(a is not None and a.resolved(now) for a in alerts)

    def _config_text(self) -> str:
        """The routing config as YAML; receivers by name and channel kinds only (secrets)."""
        r = self.routing
        doc: dict[str, Any] = {
            "route": r.route.model_dump(mode="json", exclude_defaults=True, by_alias=True),
            "receivers": [
                {"name": rc.name, **{k: len(v) for k, v in rc if k.endswith("_configs") and v}}
                for rc in r.receivers
            ],
            "inhibit_rules": [
                i.model_dump(mode="json", exclude_defaults=True) for i in r.inhibit_rules
            ],
            "time_intervals": [t.model_dump(mode="json") for t in r.time_intervals],
        }
        return yaml.safe_dump(doc, sort_keys=False)

    def _standby(self) -> str | None:
        """None on the leader; on a standby, why it does not answer (names the leader)."""
        if self.elector.is_leader:
            return None
        leader = self.elector.leader or {}
        where = (leader.get("info") or {}).get("api", "?")
        return (
            f"this replica is a standby; the leader is {leader.get('holder', 'not known yet')} "
            f"(API {where}); alerts, acknowledgements and silences are taken here too"
        )

    async def start(self) -> None:
        """Load silences, then lead (start routing and notifying) or wait as a standby."""
        loaded = await self.keeper.load()
        log.info(
            "alerting: %d receivers, %d routes, %d inhibit rules, %d silences loaded",
            len(self.routing.receivers),
            sum(1 for _ in self.engine.parts.tree.walk()),
            len(self.routing.inhibit_rules),
            loaded,
        )
        self.ctx.telemetry.registry.register(self.export)
        self._refresh_task = asyncio.create_task(self._refresh(), name="alerting-silences")
        await self.elector.start()

    async def _lead(self) -> None:
        """This replica holds the lease: route, notify, remediate."""
        await self.remediator.start()
        await self.engine.start()
        await self.sources.start()
        await self.outbox.start()

    async def _refresh(self) -> None:
        """Pick up silences other replicas stored."""
        while True:
            await asyncio.sleep(SILENCE_REFRESH_S)
            try:
                await self.keeper.refresh()
            except Exception as exc:  # the store is down: the next round retries
                log.debug("alerting: silences not refreshed: %s", exc)

    async def shutdown(self, deadline: float) -> None:
        """Stop intake first (sources, engine), then deliveries, then hand the lease over.
        Idempotent."""
        if self._refresh_task is not None:
            self._refresh_task.cancel()
        await self.sources.shutdown(deadline)
        await self.engine.shutdown(deadline)
        await self.outbox.shutdown(deadline)
        await self.remediator.shutdown(deadline)
        await self.elector.shutdown()
        with contextlib.suppress(KeyError):
            self.ctx.telemetry.registry.unregister(self.export)


def leader_only(routes: list[BaseRoute], standby: Callable[[], str | None]) -> list[BaseRoute]:
    """``routes`` answering 503 (naming the leader) on a standby replica."""
    guarded: list[BaseRoute] = []
    for route in routes:
        assert isinstance(route, HttpRoute)
        endpoint = route.endpoint

        async def guard(request: Request, endpoint: Any = endpoint) -> Response:
            why = standby()
            if why is not None:
                return error_response(503, "standby", why, {"Retry-After": "5"})
            response: Response = await endpoint(request)
            return response

        methods = list(route.methods or [])
        guarded.append(HttpRoute(route.path, guard, methods=methods, name=route.name))
    return guarded


class AlertingExport(Collector):
    """keiko_alerts_*: alerts by state, groups, silences, notifications owed."""

    def __init__(self, component: AlertingComponent) -> None:
        self.c = component

    def collect(self) -> Iterator[Metric]:
        """Read at scrape time."""
        engine, now = self.c.engine, time.time()
        with engine.lock:
            states: dict[str, int] = {"active": 0, "suppressed": 0}
            for a in engine.book.alerts.values():
                if not a.resolved(now):
                    states[engine.status(a, now)["state"]] += 1
            groups = len(engine.dispatcher.groups)
            silences: dict[str, int] = {"active": 0, "pending": 0, "expired": 0}
            for silence in self.c.keeper.silences.list():
                silences[silence.state(now)] += 1
            acked = len(engine.book.acks)
        family = GaugeMetricFamily("keiko_alerts", "Firing alerts by state.", labels=["state"])
        for state, n in sorted(states.items()):
            family.add_metric([state], n)
        yield family
        yield gauge("keiko_alerts_acknowledged", "Alerts acknowledged and not resolved.", acked)
        yield gauge("keiko_alert_groups", "Aggregation groups held.", groups)
        family = GaugeMetricFamily("keiko_silences", "Silences by state.", labels=["state"])
        for state, n in sorted(silences.items()):
            family.add_metric([state], n)
        yield family
        stats = engine.stats
        counter = CounterMetricFamily(
            "keiko_alerts_received",
            "Alert updates by what happened: received, firing, resolved, acknowledged, refused, "
            "invalid_requests.",
            labels=["event"],
        )
        for what, n in sorted(stats.alerts.items()):
            counter.add_metric([what], n)
        yield counter
        counter = CounterMetricFamily(
            "keiko_notifications_queued", "Notifications put in the outbox.", labels=["receiver"]
        )
        for receiver, n in sorted(stats.notifications.items()):
            counter.add_metric([receiver], n)
        yield counter
        counter = CounterMetricFamily(
            "keiko_remediations_requested",
            "Remediation requests put in the outbox.",
            labels=["action"],
        )
        for action, n in sorted(stats.remediations.items()):
            counter.add_metric([action], n)
        yield counter
        yield gauge(
            "keiko_outbox_unsent",
            "Items decided but not yet in the outbox stream.",
            len(engine.pending),
        )
        yield from worker_metrics("keiko_alerting", engine.stream, stats, engine.stream_end)


def build(config: AlertingConfig, ctx: Context) -> AlertingComponent:
    """The factory of `alerting.router`."""
    return AlertingComponent(config, ctx)


SPEC = ComponentSpec(
    section="alerting",
    name="router",
    config_model=AlertingConfig,
    factory=build,
    description="Alertmanager-compatible alert intake (API v2) and keiko's own alerts, "
    "routing (grouping, inhibition, silences, time intervals), escalation, incident "
    "correlation, notifications through a persistent outbox (apprise, webhook, Slack, "
    "PagerDuty, e-mail) and guarded remediation.",
)
