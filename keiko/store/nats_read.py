"""Reading a JetStream stream by sequence and by time, outside any consumer group.

Two ways to read a range, chosen by its length (measured on one machine, nats-server 2.9,
per read of N records of 1 KB / 250 KB): parallel direct gets cost about 0.17 ms for
N=1, 0.5 ms for N=10 and 4.5 / 49 ms for N=100; one pull from an ephemeral consumer
costs about 0.9 ms for N=1 and 3.5 / 25 ms for N=100. Yet every read uses direct gets
(in concurrent chunks) on streams that allow them: nats-server before 2.12 may place an
ephemeral R1 consumer on a cluster node that is down (nats-server PR #7165), and then
creating it times out for as long as that node is away, while any live replica answers a
direct get. Finding a sequence by time is a binary search with direct gets for the same
reason. Ephemeral consumers remain the fallback for streams without direct gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from nats.aio.msg import Msg

from keiko.errors import KeikoError, StoreUnavailable
from keiko.records import Record
from keiko.store.nats_api import API, JsApi, NotFound, gather_or_cancel, nats_errors
from keiko.store.nats_codec import ack_position, decode_record, format_time_ns, parse_time_ns

DIRECT_CHUNK = 64  # direct gets in flight at once
PULL_MAX_BYTES = 32 * 1024**2  # one pull request brings at most this much
# Ephemeral consumers of reads are deleted after use; this only cleans up after a crash.
_EPHEMERAL_CONFIG: dict[str, Any] = {
    "ack_policy": "none",
    "inactive_threshold": 10_000_000_000,
    "mem_storage": True,
    "num_replicas": 1,
}


async def read_range(
    api: JsApi, js_stream: str, first: int, last: int, direct: bool
) -> list[Record]:
    """Records with sequences ``first``..``last`` (those retention has not removed)."""
    if not direct:
        return await _read_by_consumer(api, js_stream, first, last - first + 1)
    records: list[Record] = []
    for start in range(first, last + 1, DIRECT_CHUNK):
        records += await _read_direct(
            api, js_stream, range(start, min(start + DIRECT_CHUNK, last + 1))
        )
    return records


async def first_seq_at(api: JsApi, js_stream: str, time_ns: int) -> int:
    """The first sequence stored at or after ``time_ns`` (last sequence + 1 if none)."""
    info = await api.stream_info(js_stream)
    state = info["state"]
    first, last = int(state.get("first_seq", 1)), int(state.get("last_seq", 0))
    if not state.get("messages"):
        return last + 1
    if info["config"].get("allow_direct"):
        found = await _search_by_time(api, js_stream, first, last, time_ns)
        if found is not None:
            return found
    return await _first_seq_by_consumer(api, js_stream, time_ns)


async def _search_by_time(
    api: JsApi, js_stream: str, first: int, last: int, time_ns: int
) -> int | None:
    """Binary search with direct gets (times grow with sequences); None at a gap (a
    deleted message), where the consumer way is used instead."""
    lo, hi = first, last + 1  # the answer is in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        msg = await api.direct_get(js_stream, mid)
        if msg is None:
            return None
        if parse_time_ns((msg.headers or {})["Nats-Time-Stamp"]) >= time_ns:
            hi = mid
        else:
            lo = mid + 1
    return lo


async def _first_seq_by_consumer(api: JsApi, js_stream: str, time_ns: int) -> int:
    """JetStream finds it when a consumer is created with a start time: its "delivered"
    position is then the sequence before."""
    config = {
        **_EPHEMERAL_CONFIG,
        "deliver_policy": "by_start_time",
        "opt_start_time": format_time_ns(time_ns),
    }
    info = await api.add_consumer(js_stream, config)
    await _delete_quietly(api, js_stream, info["name"])
    return int(info["delivered"]["stream_seq"]) + 1


async def _read_direct(api: JsApi, js_stream: str, seqs: range) -> list[Record]:
    gets = [asyncio.ensure_future(api.direct_get(js_stream, seq)) for seq in seqs]
    msgs = await gather_or_cancel(*gets)
    return [_from_direct(msg) for msg in msgs if msg is not None]


def _from_direct(msg: Msg) -> Record:
    headers = msg.headers or {}
    return decode_record(
        int(headers["Nats-Sequence"]),
        parse_time_ns(headers["Nats-Time-Stamp"]),
        headers,
        msg.data,
    )


async def _read_by_consumer(api: JsApi, js_stream: str, start: int, count: int) -> list[Record]:
    config = {**_EPHEMERAL_CONFIG, "deliver_policy": "by_start_sequence", "opt_start_seq": start}
    name = (await api.add_consumer(js_stream, config))["name"]
    arrived: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_message(msg: Msg) -> None:
        arrived.put_nowait(msg)

    inbox = api.nc.new_inbox()
    with nats_errors("read"):
        sub = await api.nc.subscribe(inbox, cb=on_message)
    try:
        records: list[Record] = []
        while len(records) < count:
            got = await _pull(api, f"{js_stream}.{name}", inbox, arrived, count - len(records))
            if not got:
                break
            records += got
        return records
    finally:
        with nats_errors("read"):
            await sub.unsubscribe()
        await _delete_quietly(api, js_stream, name)


async def _pull(
    api: JsApi, consumer: str, inbox: str, arrived: asyncio.Queue[Msg], batch: int
) -> list[Record]:
    """One no-wait pull: the records available now, up to ``batch`` / PULL_MAX_BYTES."""
    request = {"batch": batch, "no_wait": True, "max_bytes": PULL_MAX_BYTES}
    with nats_errors("read"):
        await api.nc.publish(
            f"{API}.CONSUMER.MSG.NEXT.{consumer}", json.dumps(request).encode(), inbox
        )
    records: list[Record] = []
    while len(records) < batch:
        try:
            msg = await asyncio.wait_for(arrived.get(), api.timeout)
        except TimeoutError as exc:
            raise StoreUnavailable("NATS did not answer a read in time", api.retry_after) from exc
        if not msg.reply:
            break  # the status that ends the request
        seq, time_ns = ack_position(msg.reply)
        records.append(decode_record(seq, time_ns, msg.headers, msg.data))
    return records


async def _delete_quietly(api: JsApi, js_stream: str, name: str) -> None:
    with contextlib.suppress(NotFound, KeikoError):  # else its inactive_threshold does it
        await api.delete_consumer(js_stream, name)
