"""The outbox on a real embedded store (and once on a real nats-server) with real HTTP
receivers (webhooks on a local server): a receiver that is down then back gets everything
once and in order while another target keeps delivering; a 400 is permanent; a restart
between delivery and commit does not deliver twice; give-up after max_age; unknown
targets; secrets stay out of events and logs; dedup keys are garbage-collected; NATS
redeliveries of held-up records are not delivered twice."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fixtures.nats import NatsServer, nats_store_config
from fixtures.notify_peers import HttpSink, SmtpSink
from prometheus_client import generate_latest

import keiko.store.nats_consumer
from alerting.model import OUTBOX_KIND, OUTBOX_STREAM, Notification, OutboxItem
from alerting.notify import NotifyOptions, ReceiverConfig, receiver_targets
from alerting.outbox import Outbox, OutboxConfig
from alerting.outbox.dedup import DedupBucket
from alerting.outbox.lane import Lane
from keiko.components import Context
from keiko.config.load import validate
from keiko.records import NewRecord, Stream
from keiko.store import open_store
from keiko.store.base import Store
from keiko.telemetry import Telemetry

FAST = {
    "retry_base": 0.05,
    "retry_max": 0.2,
    "breaker_failures": 3,
    "breaker_cooldown": 0.3,
    "timeout": 2.0,
    "fetch_batch": 10,
}
TOKEN = "s3cr3t-hook-token-4711"


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    s = HttpSink().start()
    yield s
    s.stop()


@pytest.fixture
def sink2() -> Iterator[HttpSink]:
    s = HttpSink().start()
    yield s
    s.stop()


def item(n: int, target: str = "ops", created: float | None = None) -> OutboxItem:
    """Outbox item number ``n`` for ``target``: a firing notification."""
    note = Notification(
        id=f"n{n}",
        receiver=target,
        group_key=f'{{}}:{{alertname="A{n}"}}',
        group_labels={"alertname": f"A{n}"},
        status="firing",
        alerts=[
            {
                "status": "firing",
                "labels": {"alertname": f"A{n}"},
                "annotations": {"summary": f"number {n}"},
                "startsAt": "2026-11-24T06:00:00.000Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": f"f{n}",
            }
        ],
        created=time.time(),
    )
    when = time.time() if created is None else created
    return OutboxItem(f"{target}-{n}", "notification", target, note.to_json(), when)


def receivers(**urls: str) -> list[ReceiverConfig]:
    return [
        ReceiverConfig.model_validate({"name": name, "webhook_configs": [{"url": url}]})
        for name, url in urls.items()
    ]


class Rig:
    """A started store, context and outbox (rebuilt by :meth:`restart`)."""

    def __init__(
        self, data: Path | dict[str, Any], config: OutboxConfig, recv: list[ReceiverConfig]
    ) -> None:
        # A directory (embedded store) or a whole `store:` section (e.g. NATS).
        self.section = data if isinstance(data, dict) else {"embedded": {"path": str(data)}}
        self.config, self.receivers = config, recv
        self.store: Store
        self.ctx: Context
        self.outbox: Outbox

    async def open(self) -> None:
        cfg = validate({"store": self.section})
        self.store = open_store(cfg.store)
        await self.store.start()
        self.ctx = Context(self.store, Telemetry(), cfg)
        targets = receiver_targets(self.receivers, NotifyOptions(timeout=2.0))
        self.outbox = Outbox(self.config, self.ctx, targets)
        await self.outbox.start()

    async def close(self) -> None:
        await self.outbox.shutdown(time.monotonic() + 3)
        await self.store.shutdown()

    async def append(self, *items: OutboxItem) -> None:
        records = [NewRecord(OUTBOX_KIND, i.encode(), key=i.target) for i in items]
        await self.store.append(OUTBOX_STREAM, records)

    async def events(self) -> list[dict[str, Any]]:
        records = await self.store.read(Stream.EVENTS, 1, 10_000)
        docs = [json.loads(r.payload) for r in records]
        return [d for d in docs if d.get("type") == "delivery"]

    def metric(self, name: str, **labels: str) -> float | None:
        return self.ctx.telemetry.registry.get_sample_value(name, labels)


@asynccontextmanager
async def rig(
    data: Path | dict[str, Any], recv: list[ReceiverConfig], **overrides: Any
) -> AsyncIterator[Rig]:
    r = Rig(data, OutboxConfig.model_validate({**FAST, **overrides}), recv)
    await r.open()
    try:
        yield r
    finally:
        await r.close()


async def until(cond: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0) -> None:
    """Poll ``cond`` until it holds; AssertionError after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if isinstance(got, Awaitable):
            got = await got
        if got:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


def ids(bodies: list[Any]) -> list[str]:
    return [b["groupLabels"]["alertname"] for b in bodies]


def test_down_receiver_gets_everything_once_in_order_others_unaffected(
    tmp_path: Path, sink: HttpSink, sink2: HttpSink
) -> None:
    async def main() -> None:
        recv = receivers(ops=f"{sink.url}/ops", dev=f"{sink2.url}/dev")
        sink.stop()  # ops is down: connection refused
        async with rig(tmp_path, recv) as r:
            await r.append(*[item(n, "ops") for n in range(1, 6)])
            await r.append(*[item(n, "dev") for n in range(1, 4)])
            await until(lambda: len(sink2.received("/dev")) == 3)  # dev is not held up
            await until(lambda: r.metric("keiko_outbox_circuit_state", target="ops") == 2)
            assert r.metric("keiko_outbox_circuit_state", target="dev") == 0
            assert r.metric("keiko_outbox_oldest_pending_age_seconds", target="ops")
            sink.start()  # back on the same port
            await until(lambda: len(sink.received("/ops")) == 5)
            await until(lambda: r.metric("keiko_outbox_circuit_state", target="ops") == 0)
            await asyncio.sleep(0.3)  # nothing more arrives
            delivered = r.metric(
                "keiko_outbox_deliveries_total",
                target="ops",
                kind="notification",
                outcome="delivered",
            )
            events = await r.events()
        assert ids(sink.received("/ops")) == ["A1", "A2", "A3", "A4", "A5"]
        assert ids(sink2.received("/dev")) == ["A1", "A2", "A3"]
        assert delivered == 5
        ops = [(e["id"], e["status"]) for e in events if e["target"] == "ops"]
        # One "retrying" for the item that met the outage (not one per retry), then all.
        assert ops == [("ops-1", "retrying")] + [(f"ops-{n}", "delivered") for n in range(1, 6)]
        first = next(e for e in events if e["id"] == "ops-1" and e["status"] == "delivered")
        assert first["attempts"] > 1 and first["kind"] == "notification"

    asyncio.run(main())


def test_http_400_is_permanent_and_not_retried(tmp_path: Path, sink: HttpSink) -> None:
    async def main() -> None:
        sink.answer("/bad", 400)
        recv = receivers(bad=f"{sink.url}/bad")
        async with rig(tmp_path, recv) as r:
            await r.append(item(1, "bad"), item(2, "bad"))
            await until(lambda: len(sink.requests) == 2)
            await asyncio.sleep(0.3)
            events = await r.events()
            failed = r.metric(
                "keiko_outbox_deliveries_total",
                target="bad",
                kind="notification",
                outcome="failed",
            )
        assert len(sink.requests) == 2  # each tried once
        assert [(e["id"], e["status"], e["attempts"]) for e in events] == [
            ("bad-1", "failed", 1),
            ("bad-2", "failed", 1),
        ]
        assert "HTTP 400" in events[0]["error"]
        assert failed == 2

    asyncio.run(main())


def test_restart_between_delivery_and_commit_does_not_deliver_twice(
    tmp_path: Path, sink: HttpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_commit(self: Lane, offset: int) -> None:
        """The crash: delivered (and the dedup key written), the offset never committed."""

    async def main() -> None:
        recv = receivers(ops=f"{sink.url}/ops")
        with monkeypatch.context() as patch:
            patch.setattr(Lane, "_commit", no_commit)
            async with rig(tmp_path, recv) as r:
                await r.append(*[item(n) for n in range(1, 4)])
                await until(lambda: len(sink.received("/ops")) == 3)
        async with rig(tmp_path, recv) as r:  # the store reopened: the records come back
            await r.append(item(4))
            await until(lambda: len(sink.received("/ops")) == 4)
            dedup = lambda: r.metric(  # noqa: E731
                "keiko_outbox_deliveries_total",
                target="ops",
                kind="notification",
                outcome="deduplicated",
            )
            await until(lambda: dedup() == 3)
            lane = r.outbox.lanes["ops"]
            await until(lambda: lane.stats.committed == 4)
        assert ids(sink.received("/ops")) == ["A1", "A2", "A3", "A4"]

    asyncio.run(main())


def test_gives_up_after_max_age_and_moves_on(
    tmp_path: Path, sink: HttpSink, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        recv = receivers(ops=f"{sink.url}/ops")
        sink.answer("/ops", 503, {"retry-after": "0"})
        async with rig(tmp_path, recv, max_age=0.6, breaker_failures=100) as r:
            await r.append(item(1))
            await until(_has_status(r, "gave_up"))
            sink.answer("/ops", 200)
            await r.append(item(2))
            await until(_has_status(r, "delivered"))
            events = await r.events()
        assert [(e["id"], e["status"]) for e in events] == [
            ("ops-1", "retrying"),
            ("ops-1", "gave_up"),
            ("ops-2", "delivered"),
        ]
        assert len([r for r in sink.requests if r.status == 503]) > 2  # retried meanwhile
        assert ids(sink.received("/ops")) == ["A2"]

    with caplog.at_level(logging.INFO, logger="alerting"):
        asyncio.run(main())
    give_ups = [m for m in caplog.messages if "gave up" in m]
    assert len(give_ups) == 1 and "ops-1" in give_ups[0]


def _has_status(r: Rig, status: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return any(e["status"] == status for e in await r.events())

    return check


def test_secrets_stay_out_of_events_and_logs(
    tmp_path: Path, sink: HttpSink, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        recv = [
            ReceiverConfig.model_validate(
                {
                    "name": "ops",
                    "webhook_configs": [{"url": f"{sink.url}/hook/{TOKEN}"}],
                    "slack_configs": [{"api_url": f"http://user:{TOKEN}x@127.0.0.1:1/slack"}],
                }
            )
        ]
        sink.answer(f"/hook/{TOKEN}", 500)
        async with rig(tmp_path, recv, max_age=0.5, breaker_failures=2) as r:
            await r.append(item(1))
            await until(_has_status(r, "gave_up"))
            events = await r.events()
        text = json.dumps(events) + "\n".join(caplog.messages)
        assert TOKEN not in text
        assert "HTTP 500" in text and "slack_configs[0] of receiver ops" in text

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())


def test_unknown_target_is_counted_and_skipped(
    tmp_path: Path, sink: HttpSink, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        async with rig(tmp_path, receivers(ops=f"{sink.url}/ops")) as r:
            await r.append(item(1, "ghost"), item(2, "ghost"), item(3, "ops"))
            await until(lambda: len(sink.received("/ops")) == 1)
            skipped = r.metric("keiko_outbox_skipped_records_total", reason="unknown_target")
            lane = r.outbox.lanes["ops"]
            await until(lambda: lane.stats.committed == 3)
        assert skipped == 2
        assert r.outbox.stats.unknown_targets == {"ghost": 2}

    with caplog.at_level(logging.WARNING, logger="alerting"):
        asyncio.run(main())
    assert len([m for m in caplog.messages if "'ghost'" in m]) == 1  # warned once


def test_dedup_keys_are_garbage_collected(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = validate({"store": {"embedded": {"path": str(tmp_path)}}})
        store = open_store(cfg.store)
        await store.start()
        try:
            bucket = DedupBucket(await store.kv("outbox"))
            await bucket.mark("ops", "old")
            await bucket.ledger("ops").mark("old.0")
            assert await bucket.seen("ops", "old")
            assert await bucket.ledger("ops").seen("old.0")
            assert await bucket.collect(ttl=60.0) == 0  # young: kept
            await bucket.mark("ops", "new")
            assert await bucket.collect(ttl=60.0, now=time.time() + 3600) == 3
            assert not await bucket.seen("ops", "old")
            assert await bucket.kv.keys() == []
        finally:
            await store.shutdown()

    asyncio.run(main())


def test_partial_success_survives_restart_and_email_goes_out(
    tmp_path: Path, sink: HttpSink
) -> None:
    """Webhook a takes the item, b answers 503: after a restart only b gets it (the
    per-config key is in the outbox bucket); e-mail through apprise to a real SMTP server."""

    async def main(smtp: SmtpSink) -> None:
        recv = [
            ReceiverConfig.model_validate(
                {
                    "name": "ops",
                    "webhook_configs": [{"url": f"{sink.url}/a"}, {"url": f"{sink.url}/b"}],
                    "email_configs": [
                        {
                            "to": "ops@example.org",
                            "from": "keiko@example.org",
                            "smarthost": f"127.0.0.1:{smtp.port}",
                            "require_tls": False,
                        }
                    ],
                }
            )
        ]
        sink.answer("/b", 503)
        async with rig(tmp_path, recv, retry_base=5.0, retry_max=5.0) as r:
            await r.append(item(1))
            await until(_has_status(r, "retrying"))
            keys = await (await r.store.kv("outbox")).keys()
        assert sorted(keys) == ["ops.ops-1.0", "ops.ops-1.2"]  # webhook a and the e-mail
        sink.answer("/b", 200)
        async with rig(tmp_path, recv) as r:
            await until(lambda: len(sink.received("/b")) == 1)
            await until(_has_status(r, "delivered"))
        assert len(sink.received("/a")) == 1 and len(smtp.messages) == 1

    with SmtpSink() as smtp:
        asyncio.run(main(smtp))


def test_shutdown_interrupts_a_retry_wait_and_the_item_survives(
    tmp_path: Path, sink: HttpSink
) -> None:
    async def main() -> None:
        recv = receivers(ops=f"{sink.url}/ops")
        sink.answer("/ops", 503)
        r = Rig(tmp_path, OutboxConfig.model_validate({**FAST, "retry_base": 60.0}), recv)
        await r.open()
        await r.append(item(1))
        await until(_has_status(r, "retrying"))
        began = time.monotonic()
        await r.close()  # mid-wait of a 0..60 s retry delay
        took = time.monotonic() - began
        assert (
            r.ctx.telemetry.registry.get_sample_value("keiko_outbox_pending", {"target": "ops"})
            is None
        )
        sink.answer("/ops", 200)
        async with rig(tmp_path, recv) as again:
            await until(_has_status(again, "delivered"))
        assert took < 1.0
        assert ids(sink.received("/ops")) == ["A1"]

    asyncio.run(main())


def test_slow_receiver_times_out_retryably_and_metrics_expose(
    tmp_path: Path, sink: HttpSink
) -> None:
    async def main() -> None:
        sink.delays["/ops"] = 0.6
        async with rig(tmp_path, receivers(ops=f"{sink.url}/ops"), timeout=0.2) as r:
            await r.append(item(1))
            await until(_has_status(r, "retrying"))
            sink.delays["/ops"] = 0.0
            await until(_has_status(r, "delivered"))
            events = await r.events()
            text = generate_latest(r.ctx.telemetry.registry).decode()
            count = r.metric("keiko_outbox_delivery_duration_seconds_count", target="ops")
        assert "no answer within 0.2s" in events[0]["error"]
        assert count is not None and count >= 2
        for name in (
            'keiko_outbox_deliveries_total{kind="notification",outcome="delivered",'
            'target="ops"} 1.0',
            'keiko_outbox_circuit_state{target="ops"} 0.0',
            'keiko_outbox_pending{target="ops"}',
            'keiko_outbox_oldest_pending_age_seconds{target="ops"} 0.0',
            'keiko_outbox_delivery_duration_seconds_bucket{le="+Inf",target="ops"}',
        ):
            assert name in text

    asyncio.run(main())


def test_redelivered_records_are_not_delivered_twice(
    nats_server: NatsServer, sink: HttpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(keiko.store.nats_consumer, "ACK_WAIT", 1.0)  # redeliver after 1 s

    async def main() -> None:
        sink.stop()
        async with rig(nats_store_config(nats_server), receivers(ops=f"{sink.url}/ops")) as r:
            await r.append(*[item(n) for n in range(1, 5)])
            await until(lambda: r.metric("keiko_outbox_circuit_state", target="ops") == 2)
            await asyncio.sleep(2.5)  # the batch is redelivered (twice) meanwhile
            began = time.monotonic()
            sink.start()
            await until(lambda: len(sink.received("/ops")) == 4)
            await asyncio.sleep(1.5)  # past another ack wait: nothing is sent again
            lane = r.outbox.lanes["ops"]
            committed = lane.stats.committed
        assert ids(sink.received("/ops")) == ["A1", "A2", "A3", "A4"]
        assert committed == 4 and time.monotonic() - began < 5

    asyncio.run(main())
