"""Alertmanager's API v2 (alerts, groups, silences, status, receivers) and keiko's alert
actions (acknowledge, resolve), over the alert engine.

``POST /api/v2/alerts`` validates the whole request, appends it to the ``alerts`` stream
and answers once the store has it durably: an accepted alert survives ``kill -9``. The
engine reads it from there within a fetch (tens of milliseconds), so a ``GET`` right
after a ``POST`` may not show it yet.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from alerting.api.postable import AlertsError, validate_alerts
from alerting.engine.stage import OPS_KIND, AlertEngine
from alerting.matchers import Matcher, MatcherError, all_match, parse_matcher
from alerting.model import ALERTS_KIND, ALERTS_STREAM, Alert, rfc3339
from alerting.silencekeeper import SilenceKeeper
from alerting.silences import SilenceError, filter_matches, silence_from_api
from keiko.api.errors import error_response
from keiko.records import NewRecord

VERSION = "keiko-0.1 (Alertmanager API v2)"


@dataclass
class Backend:
    """What the API reads and writes."""

    engine: AlertEngine
    standby: Callable[[], str | None]  # None on the leader, else why reads are not served here
    keeper: SilenceKeeper
    receivers: list[str]
    max_request_bytes: int
    config_text: Callable[[], str]  # the routing config as YAML, secrets left out
    started: float


def _bad(detail: str) -> JSONResponse:
    return error_response(400, "bad_request", detail)


def _flag(request: Request, name: str, default: bool = True) -> bool:
    value = request.query_params.get(name)
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise AlertsError(f"{name}: must be true or false, not {value[:40]!r}")
    return value.lower() == "true"


def _filters(request: Request) -> list[Matcher]:
    try:
        return [parse_matcher(text) for text in request.query_params.getlist("filter")]
    except MatcherError as exc:
        raise AlertsError(f"filter: {exc}") from None


class AlertsApi:
    """The handlers; ``routes()`` lists them for keiko's HTTP API."""

    def __init__(self, backend: Backend) -> None:
        self.b = backend

    def routes(self) -> list[BaseRoute]:
        """Every route, Alertmanager's paths first."""
        return [
            Route("/api/v2/alerts", self.post_alerts, methods=["POST"]),
            Route("/api/v2/alerts", self.get_alerts, methods=["GET"]),
            Route("/api/v2/alerts/groups", self.get_groups, methods=["GET"]),
            Route("/api/v2/silences", self.get_silences, methods=["GET"]),
            Route("/api/v2/silences", self.post_silence, methods=["POST"]),
            Route("/api/v2/silence/{id}", self.get_silence, methods=["GET"]),
            Route("/api/v2/silence/{id}", self.delete_silence, methods=["DELETE"]),
            Route("/api/v2/status", self.status, methods=["GET"]),
            Route("/api/v2/receivers", self.get_receivers, methods=["GET"]),
            Route("/api/v1/alerts/{fingerprint}/ack", self.ack, methods=["POST"]),
            Route("/api/v1/alerts/{fingerprint}/resolve", self.resolve, methods=["POST"]),
        ]

    # -- alerts -------------------------------------------------------------------------------

    async def post_alerts(self, request: Request) -> Response:
        """Validate, store durably, answer 200 (Alertmanager's empty success)."""
        limit = self.b.max_request_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return error_response(413, "too_large", f"body over {limit} bytes")
        body = await request.body()
        if len(body) > limit:
            return error_response(413, "too_large", f"body over {limit} bytes")
        try:
            count = validate_alerts(body)
        except AlertsError as exc:
            self.b.engine.stats.alerts["invalid_requests"] += 1
            return _bad(str(exc))
        if count:
            record = NewRecord(ALERTS_KIND, body, count, "api")
            await self.b.engine.ctx.store.append(ALERTS_STREAM, [record])
        return Response(status_code=200)

    def _standby(self) -> Response | None:
        why = self.b.standby()
        if why is None:
            return None
        return error_response(503, "standby", why, {"Retry-After": "5"})

    async def get_alerts(self, request: Request) -> Response:
        """GettableAlerts, filtered as Alertmanager filters them (the leader's state)."""
        if (standby := self._standby()) is not None:
            return standby
        try:
            filters = _filters(request)
            want = {k: _flag(request, k) for k in ("active", "silenced", "inhibited")}
            receiver = request.query_params.get("receiver")
            rx = re.compile(receiver) if receiver else None
        except (AlertsError, re.error) as exc:
            return _bad(str(exc))
        now = time.time()
        engine = self.b.engine
        out = []
        with engine.lock:
            alerts = [a for a in engine.book.alerts.values() if not a.resolved(now)]
            for a in alerts:
                if filters and not all_match(filters, a.labels):
                    continue
                status = engine.status(a, now)
                receivers = sorted({r.receiver for r in engine.routes(a)})
                if rx and not any(rx.fullmatch(r) for r in receivers):
                    continue
                if not self._wanted(status, want):
                    continue
                out.append(self._gettable(a, status, receivers, now))
        return JSONResponse(out)

    @staticmethod
    def _wanted(status: dict[str, Any], want: dict[str, bool]) -> bool:
        if status["silencedBy"] and not want["silenced"]:
            return False
        if status["inhibitedBy"] and not want["inhibited"]:
            return False
        return bool(status["silencedBy"] or status["inhibitedBy"] or want["active"])

    def _gettable(
        self, a: Alert, status: dict[str, Any], receivers: list[str], now: float
    ) -> dict[str, Any]:
        doc = a.am_json(now)
        del doc["status"]
        doc["updatedAt"] = rfc3339(a.updated_at)
        doc["receivers"] = [{"name": r} for r in receivers]
        doc["status"] = status
        ack = self.b.engine.book.acks.get(a.fp)
        if ack:  # keiko's addition
            doc["acknowledged"] = {**ack, "time": rfc3339(ack["time"])}
        return doc

    async def get_groups(self, request: Request) -> Response:
        """AlertGroups: labels, receiver, alerts (the leader's state)."""
        if (standby := self._standby()) is not None:
            return standby
        try:
            filters = _filters(request)
        except AlertsError as exc:
            return _bad(str(exc))
        now = time.time()
        engine = self.b.engine
        out = []
        with engine.lock:
            for g in engine.dispatcher.groups.values():
                alerts = [
                    self._gettable(a, engine.status(a, now), [g.route.receiver], now)
                    for a in g.alerts.values()
                    if not filters or all_match(filters, a.labels)
                ]
                if alerts:
                    out.append(
                        {
                            "labels": g.labels,
                            "receiver": {"name": g.route.receiver},
                            "alerts": alerts,
                        }
                    )
        return JSONResponse(out)

    async def _operate(self, request: Request, op: str) -> Response:
        fp = request.path_params["fingerprint"]
        if self.b.standby() is None:  # a standby cannot tell; the leader ignores unknown ones
            with self.b.engine.lock:
                alert = self.b.engine.book.alerts.get(fp)
            if alert is None:
                return error_response(404, "not_found", f"no alert with fingerprint {fp[:64]!r}")
        try:
            doc = json.loads(await request.body() or b"{}")
            if not isinstance(doc, dict):
                raise ValueError("the body must be a JSON object")
            by, comment = doc.get("by", ""), doc.get("comment", "")
            if not isinstance(by, str) or not isinstance(comment, str):
                raise ValueError("by and comment must be strings")
            if op == "ack" and not by.strip():
                raise ValueError("by: say who acknowledges")
        except ValueError as exc:
            return _bad(str(exc))
        payload = json.dumps({"op": op, "fp": fp, "by": by[:256], "comment": comment[:4096]})
        await self.b.engine.ctx.store.append(
            ALERTS_STREAM, [NewRecord(OPS_KIND, payload.encode(), 1, "api")]
        )
        return JSONResponse({"fingerprint": fp, "accepted": op}, status_code=202)

    async def ack(self, request: Request) -> Response:
        """Acknowledge a firing alert: escalation and repeats stop for it."""
        return await self._operate(request, "ack")

    async def resolve(self, request: Request) -> Response:
        """Resolve an alert now (its receivers are told at the group's next flush)."""
        return await self._operate(request, "resolve")

    # -- silences -----------------------------------------------------------------------------

    async def get_silences(self, request: Request) -> Response:
        """GettableSilences, filtered by matchers (as stored: every replica answers)."""
        try:
            filters = _filters(request)
        except AlertsError as exc:
            return _bad(str(exc))
        await self.b.keeper.refresh()
        now = time.time()
        with self.b.keeper.lock:
            found = [s for s in self.b.keeper.silences.list() if filter_matches(s, filters)]
            return JSONResponse([s.to_api(now) for s in found])

    async def post_silence(self, request: Request) -> Response:
        """Create or update a silence: ``{"silenceID": id}``."""
        try:
            silence = silence_from_api(json.loads(await request.body()), time.time())
        except (ValueError, SilenceError) as exc:
            return _bad(str(exc))
        try:
            sid = await self.b.keeper.upsert(silence)
        except KeyError as exc:
            return error_response(404, "not_found", str(exc.args[0]))
        except SilenceError as exc:
            return _bad(str(exc))
        return JSONResponse({"silenceID": sid})

    async def get_silence(self, request: Request) -> Response:
        """One silence."""
        await self.b.keeper.refresh()
        with self.b.keeper.lock:
            s = self.b.keeper.silences.get(request.path_params["id"])
            if s is None:
                return error_response(404, "not_found", "no such silence")
            return JSONResponse(s.to_api(time.time()))

    async def delete_silence(self, request: Request) -> Response:
        """Expire a silence."""
        try:
            await self.b.keeper.expire(request.path_params["id"])
        except KeyError:
            return error_response(404, "not_found", "no such silence")
        except SilenceError as exc:
            return _bad(str(exc))
        return Response(status_code=200)

    # -- status -------------------------------------------------------------------------------

    async def status(self, request: Request) -> Response:
        """AlertmanagerStatus: one ready peer (keiko), the config, uptime."""
        return JSONResponse(
            {
                "cluster": {"name": "keiko", "status": "ready", "peers": []},
                "versionInfo": {
                    "version": VERSION,
                    "branch": "",
                    "revision": "",
                    "buildUser": "",
                    "buildDate": "",
                    "goVersion": "",
                },
                "config": {"original": self.b.config_text()},
                "uptime": rfc3339(self.b.started),
            }
        )

    async def get_receivers(self, request: Request) -> Response:
        """Receiver names."""
        return JSONResponse([{"name": r} for r in self.b.receivers])
