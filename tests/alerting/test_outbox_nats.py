"""The outbox on NATS JetStream: a receiver down for longer than the consumer's ack wait
(so JetStream delivers the held-up records again) still gets every item once, in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from fixtures.nats import NatsServer, nats_store_config
from test_notify_peers import HttpSink
from test_outbox import ids, item, receivers, rig, until

import keiko.store.nats_consumer


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    s = HttpSink().start()
    yield s
    s.stop()


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
