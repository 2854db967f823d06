"""Remediation hooks on a real embedded store: config refusals, the command action (argv
from config only, alerts as data on stdin), webhooks against a real local HTTP peer,
dry-run, rate limits, cooldowns that survive a restart, verification and the metrics."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fixtures.remediation import started
from prometheus_client import generate_latest
from pydantic import ValidationError

from alerting.delivery import Permanent, Retryable
from alerting.model import OutboxItem, fingerprint
from alerting.remediation import RemediationConfig, Remediator


def item(action: str, request_id: str, group: str = "cart", **labels: str) -> OutboxItem:
    """An outbox item as the engine appends it, for one firing alert."""
    alert_labels = {"alertname": "CartDown", "service": group, **labels}
    alert = {
        "status": "firing",
        "labels": alert_labels,
        "annotations": {"summary": "cart is down"},
        "fingerprint": fingerprint(alert_labels),
    }
    body = {
        "request_id": request_id,
        "action": action,
        "group_key": f'{{}}:{{service="{group}"}}',
        "group_labels": {"service": group},
        "alerts": [alert],
        "route": "root/0",
        "created": time.time(),
    }
    return OutboxItem(request_id, "remediation", action, body, time.time())


async def events(remediator: Remediator) -> list[dict[str, Any]]:
    records = await remediator.ctx.store.read("events", 1, 1000)
    found = [json.loads(r.payload) for r in records]
    return [e for e in found if e.get("type") == "remediation"]


async def statuses(remediator: Remediator) -> list[str]:
    return [e["status"] for e in await events(remediator)]


def write_script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "bin" / "remedy.sh"
    script.parent.mkdir(exist_ok=True)
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return script


def command_config(script: Path, out: Path, **action: Any) -> dict[str, Any]:
    return {
        "dry_run": False,
        "allowed_commands": [str(script)],
        "actions": [
            {
                "name": "restart-cart",
                "type": "command",
                "argv": [str(script), "--service", "cart"],
                "env": {"OUT": str(out)},
                "timeout": "10s",
                **action,
            }
        ],
    }


RECORDER = 'cat > "$OUT/stdin.json"\nprintf "%s\\n" "$@" > "$OUT/argv.txt"\n'


# -- config ---------------------------------------------------------------------------------


def test_a_command_not_on_the_allowlist_is_refused_at_load(tmp_path: Path) -> None:
    config = command_config(Path("/usr/bin/true"), tmp_path)
    config["allowed_commands"] = ["/usr/bin/false"]
    with pytest.raises(ValidationError) as refused:
        RemediationConfig.model_validate(config)
    text = str(refused.value)
    assert "actions[0].argv[0]" in text and "'/usr/bin/true'" in text
    assert "remediation.allowed_commands" in text  # the fix
    relative = command_config(Path("true"), tmp_path)
    with pytest.raises(ValidationError, match="not an absolute path"):
        RemediationConfig.model_validate(relative)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ({"operation": "scale", "namespace": "shop", "workload": "cart"}, "either replicas"),
        (
            {"operation": "scale", "namespace": "shop", "workload": "cart", "scale_by": 2},
            "scale_by goes with max_replicas",
        ),
        ({"operation": "rollout_restart", "namespace": "shop", "workload": "Cart!"}, "DNS-1123"),
        ({"operation": "rollout_restart", "namespace": "shop"}, "exactly one of workload"),
        (
            {"operation": "cordon", "node": "n1", "namespace": "shop"},
            "cordon does not take namespace",
        ),
        ({"operation": "cordon", "node_from_label": "a-b"}, "not a label name"),
        (
            {
                "operation": "scale",
                "namespace": "a",
                "workload": "b",
                "replicas": 2,
                "max_replicas": 3,
            },
            "scale_by goes with max_replicas",
        ),
    ],
)
def test_kubernetes_actions_are_checked_at_load(action: dict[str, Any], message: str) -> None:
    config = {"actions": [{"name": "k", "type": "kubernetes", **action}]}
    with pytest.raises(ValidationError, match=message):
        RemediationConfig.model_validate(config)


def test_defaults_are_dry_run_and_guarded() -> None:
    config = RemediationConfig.model_validate(
        {"actions": [{"name": "hook", "type": "webhook", "url": {"env": "HOOK_URL"}}]}
    )
    (hook,) = config.actions
    assert config.dry_run and hook.dry_run is None and not hook.approval
    assert (hook.rate_limit.max, hook.rate_limit.per, hook.cooldown) == (3, 3600.0, 900.0)
    assert hook.verify_after == 300.0 and config.bucket == "remediation"
    with pytest.raises(ValidationError, match="used twice"):
        RemediationConfig.model_validate({"actions": [hook.model_dump(), hook.model_dump()]})


# -- the command action ---------------------------------------------------------------------


def test_command_gets_alert_text_as_data_never_as_code(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    script = write_script(tmp_path, RECORDER)
    markers = [tmp_path / f"pwned{k}" for k in range(3)]
    hostile = {
        "pod": f"$(touch {markers[0]}); rm -rf /",
        "detail": f"`touch {markers[1]}`",
        "note": f"x; touch {markers[2]}",
    }

    async def main() -> None:
        async with started(tmp_path / "data", command_config(script, out)) as r:
            await r.targets()["restart-cart"].deliver(item("restart-cart", "r1", **hostile))
            (executed,) = await events(r)
        assert executed["status"] == "executed", executed
        assert executed["call"]["argv"] == [str(script), "--service", "cart"]
        assert executed["call"]["shell"] is False and executed["fingerprints"]

    asyncio.run(main())
    assert not any(m.exists() for m in markers)
    assert (out / "argv.txt").read_text().splitlines() == ["--service", "cart"]
    given = json.loads((out / "stdin.json").read_text())
    assert given["request_id"] == "r1" and given["action"] == "restart-cart"
    assert {k: given["alerts"][0]["labels"][k] for k in hostile} == hostile  # data, verbatim


def test_command_failure_is_permanent_with_exit_code_and_stderr(tmp_path: Path) -> None:
    script = write_script(tmp_path, 'echo "no such service: cart" >&2\nexit 3\n')

    async def main() -> None:
        async with started(tmp_path / "data", command_config(script, tmp_path)) as r:
            with pytest.raises(Permanent, match=r"exit code 3.*no such service: cart"):
                await r.targets()["restart-cart"].deliver(item("restart-cart", "r1"))
            (failed,) = await events(r)
            assert failed["status"] == "failed" and "exit code 3" in failed["reason"]
            # A redelivery of a failed request runs nothing again.
            await r.targets()["restart-cart"].deliver(item("restart-cart", "r1"))
            assert await statuses(r) == ["failed"]

    asyncio.run(main())


def test_command_is_killed_after_its_timeout(tmp_path: Path) -> None:
    script = write_script(tmp_path, "sleep 5 &\nsleep 5\n")  # a child holds the pipes too
    config = command_config(script, tmp_path, timeout="200ms")

    async def main() -> None:
        async with started(tmp_path / "data", config) as r:
            began = time.monotonic()
            with pytest.raises(Permanent, match=r"killed after the timeout of 0\.2s"):
                await r.targets()["restart-cart"].deliver(item("restart-cart", "r1"))
            assert time.monotonic() - began < 3
            assert await statuses(r) == ["failed"]

    asyncio.run(main())


def test_dry_run_audits_the_call_and_runs_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    script = write_script(tmp_path, RECORDER)
    config = command_config(script, out)
    del config["dry_run"]  # the default: nothing is executed

    async def main() -> None:
        async with started(tmp_path / "data", config) as r:
            await r.targets()["restart-cart"].deliver(item("restart-cart", "r1"))
            (event,) = await events(r)
        assert event["status"] == "dry_run" and event["dry_run"] is True
        assert event["call"]["argv"] == [str(script), "--service", "cart"]
        assert event["group_key"] == '{}:{service="cart"}'

    asyncio.run(main())
    assert list(out.iterdir()) == []


def test_a_run_outlives_the_outboxs_timeout_and_never_runs_twice(tmp_path: Path) -> None:
    """The outbox cancels a slow delivery and retries it: the retry waits for the same run."""
    runs = tmp_path / "runs"
    script = write_script(tmp_path, f"echo run >> {runs}\nsleep 0.6\n")
    config = command_config(script, tmp_path)

    async def main() -> None:
        data = tmp_path / "data"
        async with started(data, config) as r:
            target = r.targets()["restart-cart"]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(target.deliver(item("restart-cart", "r1")), 0.2)
            assert r.listing()[0]["status"] == "running"
            await target.deliver(item("restart-cart", "r1"))  # waits for the first run
            assert await statuses(r) == ["executed"]
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(target.deliver(item("restart-cart", "r2", "ads")), 0.2)
            await r.shutdown(time.monotonic())  # no time left: the run is abandoned
        async with started(data, config) as again:
            with pytest.raises(Permanent, match="interrupted by a restart"):
                await again.targets()["restart-cart"].deliver(item("restart-cart", "r2", "ads"))
            assert await statuses(again) == ["executed", "failed"]

    asyncio.run(main())
    assert runs.read_text().split() == ["run", "run"]  # r1 once, r2 once


# -- guards ---------------------------------------------------------------------------------


def test_rate_limit_skips_beyond_max_per_window(tmp_path: Path) -> None:
    script = write_script(tmp_path, "exit 0\n")
    config = command_config(script, tmp_path, rate_limit={"max": 2, "per": "1h"}, cooldown=0)

    async def main() -> None:
        async with started(tmp_path / "data", config) as r:
            target = r.targets()["restart-cart"]
            for k, group in enumerate(["cart", "front", "ads"]):
                await target.deliver(item("restart-cart", f"r{k}", group))
            found = await events(r)
        assert [e["status"] for e in found] == ["executed", "executed", "skipped"]
        assert "rate limit: 2 runs" in found[2]["reason"]

    asyncio.run(main())


def test_cooldown_per_group_survives_a_restart(tmp_path: Path) -> None:
    script = write_script(tmp_path, "exit 0\n")
    config = command_config(script, tmp_path, cooldown="1h")
    data = tmp_path / "data"

    async def main() -> None:
        async with started(data, config) as r:
            target = r.targets()["restart-cart"]
            await target.deliver(item("restart-cart", "r1", "cart"))
            await target.deliver(item("restart-cart", "r1", "cart"))  # a redelivery: no-op
            await target.deliver(item("restart-cart", "r2", "cart"))
            await target.deliver(item("restart-cart", "r3", "front"))
            assert await statuses(r) == ["executed", "skipped", "executed"]
        async with started(data, config) as again:
            await again.targets()["restart-cart"].deliver(item("restart-cart", "r4", "cart"))
            last = (await events(again))[-1]
            assert last["status"] == "skipped" and last["reason"].startswith("cooldown")
            listed = {x["request_id"]: x["status"] for x in again.listing()}
            assert listed == {"r1": "executed", "r2": "skipped", "r3": "executed", "r4": "skipped"}

    asyncio.run(main())


# -- verification and metrics ---------------------------------------------------------------


def test_verify_after_checks_whether_the_alerts_resolved(tmp_path: Path) -> None:
    script = write_script(tmp_path, "exit 0\n")
    config = command_config(script, tmp_path, verify_after="200ms", cooldown=0)
    asked: list[list[str]] = []

    def resolved(fingerprints: list[str]) -> bool | None:
        asked.append(fingerprints)
        return True

    async def main() -> None:
        async with started(tmp_path / "data", config, resolved) as r:
            sent = item("restart-cart", "r1")
            await r.targets()["restart-cart"].deliver(sent)
            assert await statuses(r) == ["executed"]
            deadline = time.monotonic() + 5
            while len(await events(r)) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            _, verified = await events(r)
            assert verified["status"] == "verified" and verified["resolved"] is True
            assert verified["after"] == "executed"
            assert asked == [[sent.body["alerts"][0]["fingerprint"]]]
            scrape = generate_latest(r.ctx.telemetry.registry).decode()
            verified_line = 'verified_total{action="restart-cart",resolved="true"} 1.0'
            assert f"keiko_remediation_{verified_line}" in scrape
            assert (
                'keiko_remediation_actions_total{action="restart-cart",status="executed"} 1.0'
                in scrape
            )
            assert "keiko_remediation_pending_approvals 0.0" in scrape
            registry = r.ctx.telemetry.registry
            await r.shutdown(time.monotonic() + 1)  # then once more on leaving: idempotent
        assert "keiko_remediation" not in generate_latest(registry).decode()  # unregistered

    asyncio.run(main())


# -- webhooks against a real local HTTP peer ------------------------------------------------


class Peer:
    """A local HTTP server that answers POSTs with queued statuses and records them."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.answers: list[int] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                peer.received.append((dict(self.headers), body))
                self.send_response(peer.answers.pop(0) if peer.answers else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        serve = self.server.serve_forever
        threading.Thread(target=serve, kwargs={"poll_interval": 0.05}, daemon=True).start()


@pytest.fixture
def peer() -> Iterator[Peer]:
    found = Peer()
    yield found
    found.server.shutdown()
    found.server.server_close()


def test_webhook_without_a_peer_is_retryable(tmp_path: Path, peer: Peer) -> None:
    url = peer.url
    peer.server.shutdown()
    peer.server.server_close()  # nothing listens there now
    config = {
        "dry_run": False,
        "actions": [{"name": "hook", "type": "webhook", "url": url, "timeout": "2s"}],
    }

    async def main() -> None:
        async with started(tmp_path / "data", config) as r:
            with pytest.raises(Retryable, match="ConnectError"):
                await r.targets()["hook"].deliver(item("hook", "r1"))
            (event,) = await events(r)
            assert event["status"] == "failed" and event["retry"] is True
            assert r.listing()[0]["status"] == "retrying"

    asyncio.run(main())


def test_webhook_posts_the_request_and_keeps_secrets_out_of_events(
    tmp_path: Path, peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_TOKEN", "Bearer s3cr3t-token")
    config = {
        "dry_run": False,
        "actions": [
            {
                "name": "page-runbook",
                "type": "webhook",
                "url": {"env": "HOOK_URL"},
                "headers": {"Authorization": {"env": "HOOK_TOKEN"}},
                "cooldown": 0,
            }
        ],
    }
    monkeypatch.setenv("HOOK_URL", peer.url + "?key=url-s3cr3t")

    async def main() -> None:
        async with started(tmp_path / "data", config) as r:
            target = r.targets()["page-runbook"]
            peer.answers = [503]
            with pytest.raises(Retryable, match="503"):
                await target.deliver(item("page-runbook", "r1"))
            await target.deliver(item("page-runbook", "r1"))  # the outbox's retry
            peer.answers = [404]
            with pytest.raises(Permanent, match="404"):
                await target.deliver(item("page-runbook", "r2", "front"))
            found = await events(r)
        assert [(e["status"], e.get("retry")) for e in found] == [
            ("failed", True),
            ("executed", None),
            ("failed", None),
        ]
        assert "s3cr3t" not in json.dumps(found)
        assert found[1]["call"]["headers"] == ["Authorization"]

    asyncio.run(main())
    headers, body = peer.received[1]
    assert headers["Authorization"] == "Bearer s3cr3t-token"
    assert set(body) == {"request_id", "action", "group_labels", "alerts"}
    assert body["request_id"] == "r1" and body["group_labels"] == {"service": "cart"}
    assert body["alerts"][0]["labels"]["alertname"] == "CartDown"
