"""Partitioned streams on a real nats-server: an append to ``traces`` with 4 partitions is
published as per-partition pieces, a partition's consumer reads only its own, the union
is every span once; ``start`` rewinds a group; record ids are stored once; a different
partition count is refused (tests/stream/test_partitions.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fixtures.keiko import trace_request
from fixtures.nats import NatsServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from keiko.partitioning import partition_of
from keiko.records import Kind, NewRecord, Record
from keiko.store.config import StoreConfig
from keiko.store.nats import NatsStore

COUNT = 4


@pytest.fixture
def server(tmp_path: Path) -> Any:
    node = NatsServer(tmp_path).start()
    yield node
    node.stop()


async def started(server: NatsServer, partitions: int = COUNT) -> NatsStore:
    nats = {"servers": [server.url], "stream_prefix": "PP", "partitions": partitions}
    retention = {"max_bytes": "16MiB"}
    cfg = {"backend": "nats", "nats": nats, "retention": retention}
    store = NatsStore(StoreConfig.model_validate(cfg))
    await store.start()
    return store


def trace_ids(records: list[Record]) -> Counter[bytes]:
    ids: Counter[bytes] = Counter()
    for r in records:
        for rs in ExportTraceServiceRequest.FromString(r.payload).resource_spans:
            for ss in rs.scope_spans:
                ids.update(s.trace_id for s in ss.spans)
    return ids


async def test_pieces_per_partition_and_filtered_consumers(server: NatsServer) -> None:
    store = await started(server)
    try:
        body, _ = trace_request(trace_count=40, spans_per_trace=3)
        [offset] = await store.append("traces", [NewRecord(Kind.OTLP_TRACES, body, 120)])
        assert offset == COUNT  # one piece per partition; the last piece's sequence
        everything: Counter[bytes] = Counter()
        for p in range(COUNT):
            consumer = await store.consumer("traces", "spans", partition=p)
            records = await consumer.fetch(100, timeout=1.0)
            ids = trace_ids(records)
            assert ids and {partition_of(t, COUNT) for t in ids} == {p}
            assert sum(r.count for r in records) == sum(ids.values())
            everything += ids
            await consumer.commit(records[-1].offset)
            await consumer.close()
        expected = trace_ids([Record(1, 0, Kind.OTLP_TRACES, body)])
        assert everything == expected and sum(everything.values()) == 120
        # A whole-stream reader (no partition) sees every piece.
        assert len(await store.read("traces", 1, 100)) == COUNT
        groups = {g.group for s in (await store.stats()).streams for g in s.groups}
        assert {f"spans_p{p}" for p in range(COUNT)} <= groups
        with pytest.raises(ValueError, match=r"partitions 0\.\.3, not 4"):
            await store.consumer("traces", "spans", partition=4)
    finally:
        await store.shutdown()


async def test_start_rewinds_the_group(server: NatsServer) -> None:
    store = await started(server, partitions=1)
    try:
        records = [NewRecord(Kind.EVENT_JSON, str(i).encode()) for i in range(6)]
        await store.append("events", records)
        consumer = await store.consumer("events", "g")
        got = await consumer.fetch(6, timeout=1.0)
        await consumer.commit(got[3].offset)  # 1-4 committed; 5 and 6 fetched, not committed
        await store._nc.close()  # type: ignore[union-attr]  # a crash: no nak
    finally:
        await store.shutdown()
    store = await started(server, partitions=1)
    try:
        # Without a rewind 5 and 6 would wait out the ack timeout (30 s); with one they
        # come at once, and start may also go back before the committed offset.
        again = await store.consumer("events", "g", start=got[4].offset)
        assert [r.payload for r in await again.fetch(10, timeout=1.0)] == [b"4", b"5"]
        await again.close()
        back = await store.consumer("events", "g", start=2)
        assert (await back.fetch(10, timeout=1.0))[0].payload == b"1"
        await back.close()
    finally:
        await store.shutdown()


async def test_a_record_id_is_stored_once(server: NatsServer) -> None:
    store = await started(server, partitions=1)
    try:
        event = NewRecord(Kind.EVENT_JSON, b'{"id": "a-1"}', id="a-1")
        first = await store.append("events", [event])
        again = await store.append("events", [event])  # a replay after a takeover
        other = await store.append("events", [NewRecord(Kind.EVENT_JSON, b"{}", id="a-2")])
        assert first == again and other[0] == first[0] + 1
        assert len(await store.read("events", 1, 10)) == 2
    finally:
        await store.shutdown()
