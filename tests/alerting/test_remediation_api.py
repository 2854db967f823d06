"""Approvals through the remediation API (Starlette routes over httpx's ASGI transport) on
a real embedded store: pending -> approve -> run, reject, and the 400/404/409 answers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fixtures.remediation import started
from prometheus_client import generate_latest
from starlette.applications import Starlette

from alerting.model import OutboxItem, fingerprint
from alerting.remediation import Remediator
from keiko.api.errors import EXCEPTION_HANDLERS

PATH = "/api/v1/remediations"


@asynccontextmanager
async def client(remediator: Remediator) -> AsyncIterator[httpx.AsyncClient]:
    """The routes as keiko mounts them (with its error handlers)."""
    app = Starlette(routes=remediator.routes(), exception_handlers=EXCEPTION_HANDLERS)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://keiko") as c:
        yield c


def approval_config(tmp_path: Path, dry_run: bool = False) -> dict[str, Any]:
    script = tmp_path / "remedy.sh"
    script.write_text('#!/bin/sh\ncat > "$OUT/stdin.json"\n')
    script.chmod(0o755)
    return {
        "dry_run": dry_run,
        "allowed_commands": [str(script)],
        "actions": [
            {
                "name": "restart-cart",
                "type": "command",
                "argv": [str(script)],
                "env": {"OUT": str(tmp_path)},
                "approval": True,
                "cooldown": 0,
                "verify_after": 0,
            }
        ],
    }


def item(request_id: str) -> OutboxItem:
    labels = {"alertname": "CartDown", "service": "cart"}
    body = {
        "request_id": request_id,
        "action": "restart-cart",
        "group_key": '{}:{service="cart"}',
        "group_labels": {"service": "cart"},
        "alerts": [{"status": "firing", "labels": labels, "fingerprint": fingerprint(labels)}],
        "created": time.time(),
    }
    return OutboxItem(request_id, "remediation", "restart-cart", body, time.time())


async def statuses(remediator: Remediator) -> list[tuple[str, str]]:
    records = await remediator.ctx.store.read("events", 1, 100)
    return [(e["request_id"], e["status"]) for e in (json.loads(r.payload) for r in records)]


def test_approve_runs_the_action_and_records_who(tmp_path: Path) -> None:
    async def main() -> None:
        async with started(tmp_path / "data", approval_config(tmp_path)) as r:
            await r.targets()["restart-cart"].deliver(item("r1"))
            assert not (tmp_path / "stdin.json").exists()  # waiting, not run
            scrape = generate_latest(r.ctx.telemetry.registry).decode()
            assert "keiko_remediation_pending_approvals 1.0" in scrape
            async with client(r) as c:
                listed = (await c.get(PATH)).json()
                assert [p["request_id"] for p in listed["pending"]] == ["r1"]
                assert listed["remediations"][0]["status"] == "awaiting_approval"
                assert "request" not in listed["pending"][0]  # alerts stay internal
                answer = await c.post(
                    f"{PATH}/r1/approve", json={"by": "ana", "comment": "cart is stuck"}
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["status"] == "executed"
                assert answer.json()["decided_by"] == "ana"
                again = await c.post(f"{PATH}/r1/approve", json={"by": "bo"})
                assert again.status_code == 409
                assert again.json()["error"] == "conflict"
                assert "executed" in again.json()["detail"]
                assert (await c.get(PATH)).json()["pending"] == []
            records = await r.ctx.store.read("events", 1, 100)
            approved = json.loads(records[1].payload)
            assert approved["status"] == "approved" and approved["by"] == "ana"
            assert approved["comment"] == "cart is stuck"
            assert await statuses(r) == [
                ("r1", "awaiting_approval"),
                ("r1", "approved"),
                ("r1", "executed"),
            ]

    asyncio.run(main())
    assert json.loads((tmp_path / "stdin.json").read_text())["request_id"] == "r1"


def test_reject_runs_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        async with started(tmp_path / "data", approval_config(tmp_path)) as r:
            await r.targets()["restart-cart"].deliver(item("r1"))
            async with client(r) as c:
                answer = await c.post(f"{PATH}/r1/reject", json={"by": "ana"})
                assert answer.status_code == 200 and answer.json()["status"] == "rejected"
                late = await c.post(f"{PATH}/r1/approve", json={"by": "bo"})
                assert late.status_code == 409
                rejected = (await c.get(PATH, params={"status": "rejected"})).json()
                assert [x["request_id"] for x in rejected["remediations"]] == ["r1"]
            assert await statuses(r) == [("r1", "awaiting_approval"), ("r1", "rejected")]

    asyncio.run(main())
    assert not (tmp_path / "stdin.json").exists()


def test_approval_in_dry_run_only_audits(tmp_path: Path) -> None:
    async def main() -> None:
        async with started(tmp_path / "data", approval_config(tmp_path, dry_run=True)) as r:
            await r.targets()["restart-cart"].deliver(item("r1"))
            async with client(r) as c:
                answer = await c.post(f"{PATH}/r1/approve", json={"by": "ana"})
            assert answer.json()["status"] == "dry_run"
            assert [s for _, s in await statuses(r)] == ["awaiting_approval", "approved", "dry_run"]

    asyncio.run(main())
    assert not (tmp_path / "stdin.json").exists()


def test_a_pending_approval_survives_a_restart(tmp_path: Path) -> None:
    config = approval_config(tmp_path)

    async def main() -> None:
        async with started(tmp_path / "data", config) as r:
            await r.targets()["restart-cart"].deliver(item("r1"))
        async with started(tmp_path / "data", config) as r, client(r) as c:
            answer = await c.post(f"{PATH}/r1/approve", json={"by": "ana"})
            assert answer.json()["status"] == "executed"

    asyncio.run(main())
    assert (tmp_path / "stdin.json").exists()


def test_errors_are_json_with_404_409_and_400(tmp_path: Path) -> None:
    async def main() -> None:
        async with started(tmp_path / "data", approval_config(tmp_path)) as r:
            await r.targets()["restart-cart"].deliver(item("r1"))
            async with client(r) as c:
                missing = await c.post(f"{PATH}/nosuch/approve", json={"by": "ana"})
                assert missing.status_code == 404
                assert missing.json() == {
                    "error": "not_found",
                    "detail": "no remediation request 'nosuch'",
                }
                for bad in (b"not json", b"[]", b"{}", b'{"by": ""}', b'{"by": "a", "x": 1}'):
                    answer = await c.post(f"{PATH}/r1/approve", content=bad)
                    assert answer.status_code == 400, bad
                    assert answer.json()["error"] == "bad_request" and answer.json()["detail"]
                no_by = await c.post(f"{PATH}/r1/reject", json={"comment": "x"})
                assert "by: Field required" in no_by.json()["detail"]
                bad_status = await c.get(PATH, params={"status": "nope"})
                assert bad_status.status_code == 400
                assert bad_status.json()["error"] == "bad_parameter"
                get_only = await c.get(f"{PATH}/r1/approve")
                assert get_only.status_code == 405
                # None of those decided anything.
                assert (await c.get(PATH)).json()["pending"][0]["request_id"] == "r1"
                rejected = await c.post(f"{PATH}/r1/reject", json={"by": "ana"})
                assert rejected.status_code == 200
                assert (await c.post(f"{PATH}/r1/reject", json={"by": "ana"})).status_code == 409

    asyncio.run(main())
