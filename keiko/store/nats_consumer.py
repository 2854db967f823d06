"""Consumer groups on NATS JetStream: one durable pull consumer per (stream, group).

Acknowledgement is explicit and per message (AckPolicy.EXPLICIT), and ``commit(offset)``
acknowledges every record this consumer fetched up to ``offset``. AckPolicy.ALL would need
one ack per commit, but it would lose data after a crash: the records a dead member had
fetched wait for ``ACK_WAIT`` before they are delivered again, and meanwhile a new member
fetches and commits later records, which with ack-all would acknowledge the waiting ones
unprocessed. With explicit acks the group's committed offset is JetStream's ack floor.

At-least-once: records fetched but not committed are delivered again, at once when the
consumer is closed (they are nak'ed) and after ``ACK_WAIT`` when the process died.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import nats.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from keiko.errors import StoreUnavailable
from keiko.records import Record
from keiko.store.nats_api import API, nats_errors
from keiko.store.nats_codec import ack_position, decode_record

if TYPE_CHECKING:
    from keiko.store.nats import NatsStore

# How long a fetched record may stay uncommitted before JetStream delivers it again
# (to any member of the group). Longer than any stage's processing of one fetch.
ACK_WAIT = 30.0
# Records a group may have fetched but not committed; JetStream stops delivering beyond.
MAX_ACK_PENDING = 10_000
# One pull request asks for at most this many bytes, which bounds what a fetch buffers.
FETCH_MAX_BYTES = 32 * 1024**2
# After the first record of a fetch arrived, stop waiting once the server is this quiet:
# JetStream normally ends the request itself right after the available records.
FETCH_GAP = 0.05
COMMIT_TIMEOUT = 5.0  # for JetStream to confirm a commit's acks


def consumer_config(durable: str) -> dict[str, object]:
    """The durable pull consumer of a group (starts at the stream's first record)."""
    return {
        "durable_name": durable,
        "deliver_policy": "all",
        "ack_policy": "explicit",
        "ack_wait": int(ACK_WAIT * 1e9),
        "max_ack_pending": MAX_ACK_PENDING,
        "max_deliver": -1,
        "replay_policy": "instant",
    }


class NatsConsumer:
    """A member of a consumer group. Use it from one task at a time."""

    def __init__(
        self, store: NatsStore, stream: str, group: str, js_stream: str, durable: str
    ) -> None:
        self.stream, self.group = stream, group
        self._store = store
        self._nc = store.connection
        self._next_subject = f"{API}.CONSUMER.MSG.NEXT.{js_stream}.{durable}"
        self._inbox = self._nc.new_inbox()
        self._sub: Subscription | None = None
        self._arrived: asyncio.Queue[Msg] = asyncio.Queue()
        self._requests = 0
        self._unacked: dict[int, str] = {}  # stream seq -> ack subject, fetched not committed
        self._closed = False

    async def open(self) -> NatsConsumer:
        with nats_errors("subscribe"):
            # Pull answers come to <inbox>.<request number>: status messages of an old
            # request can then be told apart, while its late records are still kept.
            self._sub = await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_message)
        return self

    async def _on_message(self, msg: Msg) -> None:
        # Bounded by the pull requests: each asks for at most FETCH_MAX_BYTES.
        self._arrived.put_nowait(msg)

    async def fetch(self, max_records: int = 100, timeout: float = 1.0) -> list[Record]:
        """Up to ``max_records`` records, oldest first; [] when none came within ``timeout``."""
        if self._closed or self._sub is None:
            raise StoreUnavailable(f"consumer {self.group!r} on {self.stream!r} is closed")
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        msgs = self._drain_buffered(max_records)
        if len(msgs) < max_records and self._nc.is_connected:
            msgs += await self._pull(max_records - len(msgs), 0.0 if msgs else timeout)
        elif not msgs:
            await asyncio.sleep(timeout)  # disconnected: behave like an empty fetch
        return [self._record(msg) for msg in msgs]

    async def commit(self, offset: int) -> None:
        """Acknowledge every record this consumer fetched with an offset <= ``offset``.

        JetStream can only acknowledge delivered messages, so an offset beyond what this
        consumer fetched commits what it fetched up to there; an offset at or below the
        committed one changes nothing. Returns once JetStream confirmed the last ack.
        """
        seqs = sorted(seq for seq in self._unacked if seq <= offset)
        if not seqs:
            return
        if not self._nc.is_connected:
            raise StoreUnavailable("not connected to NATS (reconnecting): commit again later")
        with nats_errors("commit"):
            for seq in seqs[:-1]:
                await self._nc.publish(self._unacked[seq], b"+ACK")
            # Acks are processed in order, so the reply to the last one confirms them all.
            await self._nc.request(self._unacked[seqs[-1]], b"+ACK", timeout=COMMIT_TIMEOUT)
        for seq in seqs:
            del self._unacked[seq]
        self._store.committed(self.stream)

    async def close(self) -> None:
        """Hand uncommitted records back to the group (nak: redelivered at once)."""
        if self._closed:
            return
        self._closed = True
        self._store.forget_consumer(self)
        try:
            if self._nc.is_connected:
                for seq in sorted(self._unacked):
                    await self._nc.publish(self._unacked[seq], b"-NAK")
                await self._nc.flush(timeout=2)
            if self._sub is not None:
                await self._sub.unsubscribe()
        except (nats.errors.Error, TimeoutError, OSError):
            pass  # without the nak they come back after ACK_WAIT
        self._unacked.clear()

    def _drain_buffered(self, limit: int) -> list[Msg]:
        """Records that arrived after an earlier fetch gave up waiting."""
        msgs: list[Msg] = []
        while len(msgs) < limit and not self._arrived.empty():
            msg = self._arrived.get_nowait()
            if msg.reply:  # data; status messages of finished requests are dropped
                msgs.append(msg)
        return msgs

    async def _pull(self, batch: int, timeout: float) -> list[Msg]:
        """One pull request: wait up to ``timeout`` for a first record, then take what is
        there (no_wait + expires makes JetStream end the request right after that)."""
        self._requests += 1
        reply = f"{self._inbox}.{self._requests}"
        request: dict[str, object] = {"batch": batch, "no_wait": True, "max_bytes": FETCH_MAX_BYTES}
        if timeout > 0.01:
            request["expires"] = int((timeout - 0.005) * 1e9)  # ends before we stop waiting
        with nats_errors("fetch"):
            await self._nc.publish(self._next_subject, json.dumps(request).encode(), reply)
        msgs: list[Msg] = []
        deadline = time.monotonic() + max(timeout, 0.0) + 0.5
        while len(msgs) < batch:
            wait = deadline - time.monotonic() if not msgs else FETCH_GAP
            try:
                msg = await asyncio.wait_for(self._arrived.get(), max(wait, 0.001))
            except TimeoutError:
                break
            if msg.reply:
                msgs.append(msg)
            elif msg.subject == reply:
                break  # this request ended (404 no messages, 408 expired, 409 ...)
        return msgs

    def _record(self, msg: Msg) -> Record:
        seq, time_ns = ack_position(msg.reply)
        self._unacked[seq] = msg.reply  # a redelivery replaces the older ack subject
        return decode_record(seq, time_ns, msg.headers, msg.data)
