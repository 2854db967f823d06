"""What only the NATS backend has: a server that restarts, JetStream's own layout, redelivery
after a member crashed, connection failures."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import nats
import pytest
from fixtures.nats import NatsServer, free_port

from keiko.errors import StoreUnavailable, TooLarge
from keiko.records import NewRecord
from keiko.store import nats_consumer
from keiko.store.config import StoreConfig
from keiko.store.nats import NatsStore


def config(url: str, prefix: str = "KEIKO", **sections: dict[str, Any]) -> StoreConfig:
    return StoreConfig.model_validate(
        {
            "backend": "nats",
            "nats": {"servers": [url], "stream_prefix": prefix, "connect_timeout": 2},
            "retention": {"max_bytes": "16MiB"},
            **sections,
        }
    )


def rec(payload: bytes, key: str = "") -> NewRecord:
    return NewRecord("k", payload, 1, key)


async def started(cfg: StoreConfig) -> NatsStore:
    store = NatsStore(cfg)
    await store.start()
    return store


async def until_ready(store: NatsStore, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not (await store.readiness()).ready:
        assert time.monotonic() < deadline, (await store.readiness()).reason
        await asyncio.sleep(0.1)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.kill()


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_survives_a_server_restart(
    server: NatsServer, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nats_consumer, "ACK_WAIT", 1.0)
    store = await started(config(server.url))
    try:
        assert await store.append("traces", [rec(b"%d" % i) for i in range(1, 6)]) == [
            1,
            2,
            3,
            4,
            5,
        ]
        consumer = await store.consumer("traces", "g")
        assert len(await consumer.fetch(5, timeout=1)) == 5
        await consumer.commit(3)

        server.stop() if how == "stop" else server.kill()
        await asyncio.sleep(0.2)  # the client notices the closed socket
        started_at = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.append("traces", [rec(b"lost")])
        assert time.monotonic() - started_at < 1.0  # refused at once, not after a timeout
        assert not (await store.readiness()).ready

        server.start()
        await until_ready(store)
        assert [r.payload for r in await store.read("traces", 1)] == [b"1", b"2", b"3", b"4", b"5"]
        await consumer.close()
        consumer = await store.consumer("traces", "g")
        seen = set()
        (traces,) = [s for s in (await store.stats()).streams if s.name == "traces"]
        committed = traces.groups[0].committed
        while batch := await consumer.fetch(10, timeout=1.5):  # redeliveries after ACK_WAIT
            seen |= {r.offset for r in batch}
            await consumer.commit(max(r.offset for r in batch))
        if how == "stop":
            assert (committed, seen) == (3, {4, 5})
        else:
            # nats-server writes consumer state a moment after the ack: a kill -9 right
            # after a commit may forget it. Then the records come again (at-least-once).
            assert committed in (0, 1, 2, 3)
            assert set(range(committed + 1, 6)) <= seen
        assert await store.append("traces", [rec(b"6")]) == [6]
    finally:
        await store.shutdown()


async def test_records_a_crashed_member_fetched_come_back_and_are_not_committed_by_others(
    server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nats_consumer, "ACK_WAIT", 2.0)
    crashed = await started(config(server.url))
    await crashed.append("logs", [rec(b"%d" % i) for i in range(1, 7)])
    member = await crashed.consumer("logs", "g")
    assert [r.offset for r in await member.fetch(3, timeout=1)] == [1, 2, 3]
    assert crashed._nc is not None
    await crashed._nc.close()  # dies without committing or handing the records back

    store = await started(config(server.url))
    try:
        member = await store.consumer("logs", "g")
        assert [r.offset for r in await member.fetch(10, timeout=0.5)] == [4, 5, 6]
        await member.commit(6)
        (logs,) = [s for s in (await store.stats()).streams if s.name == "logs"]
        assert logs.groups[0].committed == 0  # 1-3 are still unprocessed
        again = await member.fetch(10, timeout=4)  # after ACK_WAIT
        assert [r.offset for r in again] == [1, 2, 3]
        await member.commit(3)
        (logs,) = [s for s in (await store.stats()).streams if s.name == "logs"]
        assert (logs.groups[0].committed, logs.groups[0].lag_records) == (6, 0)
    finally:
        await store.shutdown()


async def test_jetstream_layout_and_headers(server: NatsServer) -> None:
    cfg = config(server.url, "KK", retention={"max_age": "2h", "max_bytes": "8MiB"})
    store = await started(cfg)
    try:
        await store.append("traces", [NewRecord("otlp.traces.v1+proto", b"p", 12, "abc")])
        await store.consumer("traces", "alerting.router v2")
        await (await store.kv("checkpoints")).put("a", b"1")
    finally:
        await store.shutdown()
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        info = await js.stream_info("KK_TRACES")
        assert info.config.subjects == ["kk.traces", "kk.traces.*"]  # partitions: .<n>
        assert (info.config.max_age, info.config.max_bytes) == (7200, 8 * 1024**2)
        assert info.config.storage == nats.js.api.StorageType.FILE
        msg = await js.get_msg("KK_TRACES", 1)
        assert msg.headers is not None
        assert msg.headers["Keiko-Kind"] == "otlp.traces.v1+proto"
        assert (msg.headers["Keiko-Count"], msg.headers["Keiko-Key"]) == ("12", "abc")
        consumers = {c.name for c in await js.consumers_info("KK_TRACES")}
        assert consumers == {"alerting~2erouter~20v2"}
        assert (await (await js.key_value("KK_checkpoints")).get("a")).value == b"1"
    finally:
        await nc.close()


async def test_reconfigure_updates_stream_retention(server: NatsServer) -> None:
    cfg = config(server.url)
    store = await started(cfg)
    try:
        changed = cfg.model_copy(deep=True)
        changed.retention.max_age = 3600.0
        store.reconfigure(changed)
        api = store.api
        deadline = time.monotonic() + 5
        while (await api.stream_info("KEIKO_EVENTS"))["config"]["max_age"] != 3600 * 10**9:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    finally:
        await store.shutdown()


async def test_record_over_the_server_limit_is_refused_whole(server: NatsServer) -> None:
    store = await started(config(server.url))
    try:
        with pytest.raises(TooLarge):
            await store.append("traces", [rec(b"ok"), rec(b"x" * (2 * 1024**2))])
        assert await store.read("traces", 1) == []
    finally:
        await store.shutdown()


async def test_unreachable_server_fails_start_within_the_connect_timeout() -> None:
    cfg = config(f"nats://127.0.0.1:{free_port()}")
    cfg.nats.connect_timeout = 0.5
    store = NatsStore(cfg)
    started_at = time.monotonic()
    with pytest.raises(StoreUnavailable, match="cannot connect"):
        await store.start()
    assert time.monotonic() - started_at < 2.0
    await store.shutdown()


async def test_shutdown_while_the_server_is_down_returns_in_time(server: NatsServer) -> None:
    store = await started(config(server.url))
    consumer = await store.consumer("events", "g")
    await store.append("events", [rec(b"a")])
    assert len(await consumer.fetch(1, timeout=1)) == 1
    server.kill()
    await asyncio.sleep(0.1)
    started_at = time.monotonic()
    await store.shutdown(deadline=time.monotonic() + 2)
    assert time.monotonic() - started_at < 3.0
    assert not (await store.readiness()).ready


async def test_token_authentication(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", token="s3cret-token").start()
    try:
        refused = config(server.url)
        refused.nats.connect_timeout = 0.5
        with pytest.raises(StoreUnavailable, match="cannot connect"):
            await NatsStore(refused).start()
        allowed = config(server.url)
        allowed.nats.token = "s3cret-token"
        store = await started(allowed)
        assert await store.append("events", [rec(b"a")]) == [1]
        await store.shutdown()
    finally:
        server.stop()
