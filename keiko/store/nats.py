"""The NATS JetStream backend of the store: for more than one machine.

Each keiko stream is a JetStream stream (file storage, ``store.nats.replicas`` replicas,
retention by age and bytes, discarding the oldest); names are mapped in
:mod:`keiko.store.nats_codec`. Offsets are JetStream stream sequences and a record's
time is the time JetStream stored it.

Appends publish every record of a batch at once and wait for all the PubAcks: a PubAck
means JetStream stored the message (on a quorum of replicas). If some acks do not come
(timeout, lost connection), append raises StoreUnavailable although the records acked
before stay stored and cannot be taken back; the client's retry then stores them twice.
Delivery is at-least-once, as everywhere in keiko.

While the connection is down nats-py reconnects in the background (forever); appends
and API calls fail at once with StoreUnavailable instead of waiting for it, and a
publish that was under way gives up after ``PUBLISH_TIMEOUT``.

Partitions (``store.nats.partitions`` > 1): the ``traces`` and ``metrics`` streams also
take the subjects ``keiko.traces.<n>``; every append to them is split by
:func:`keiko.partitioning.split` (spans by trace id, metrics by service) and each piece
published to its partition's subject, so a consumer of one partition filters on it. The
partition count is recorded in the KV bucket ``store`` at first start and a process with
another count is refused: records of partitions nobody reads would wait forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import Any

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import PubAck
from nats.js.client import JetStreamContext

from keiko.errors import KeikoError, PermanentError, StoreFull, StoreUnavailable, TooLarge
from keiko.partitioning import PARTITIONED_STREAMS, split
from keiko.records import NewRecord, Record, Stream, check_stream_name
from keiko.store.base import GroupStats, Readiness, StoreStats, StreamStats, partition_group
from keiko.store.config import StoreConfig
from keiko.store.nats_api import (
    RESOURCE_CODES,
    JsApi,
    NotFound,
    gather_or_cancel,
    to_keiko_error,
)
from keiko.store.nats_backlog import Backlog
from keiko.store.nats_codec import (
    durable_name,
    group_from_durable,
    js_stream_name,
    kv_bucket_name,
    parse_time_ns,
    record_headers,
    stream_from_subject,
    subject,
)
from keiko.store.nats_consumer import NatsConsumer, consumer_config
from keiko.store.nats_kv import NatsKeyValue, open_bucket
from keiko.store.nats_read import first_seq_at, read_range

log = logging.getLogger(__name__)

API_TIMEOUT = 5.0  # one JetStream API call
PUBLISH_TIMEOUT = 5.0  # publishing a batch and receiving all its acks
RECONNECT_WAIT = 0.5  # between reconnect attempts to one server
# Room for the headers in a message (NATS limits headers + payload to max_payload).
_HEADER_ROOM = 512
# Where the partition count is recorded (bucket, key).
PARTITIONS_BUCKET, PARTITIONS_KEY = "store", "partitions"
ERROR_LOG_INTERVAL = 30.0  # seconds between reports of one kind of connection error
Piece = tuple[int, str, NewRecord]  # (index of the appended record, subject, what to publish)


def stream_subjects(prefix: str, stream: str) -> list[str]:
    """A stream's subjects: its own, and ``<subject>.<n>`` per partition where partitioned."""
    own = subject(prefix, stream)
    return [own, f"{own}.*"] if stream in PARTITIONED_STREAMS else [own]


# wait() polls JetStream this often at most (appends made here wake it at once).
WAIT_POLL_MIN, WAIT_POLL_MAX = 0.02, 0.25


class NatsStore:
    """keiko.store.base.Store on NATS JetStream."""

    backend = "nats"

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._api: JsApi | None = None
        self._streams: dict[str, str] = {}  # keiko stream -> JetStream stream known to exist
        self._stream_locks: dict[str, asyncio.Lock] = {}
        self._backlog = Backlog(lambda: self.api)
        self._inflight_bytes = 0
        self._appended: dict[str, asyncio.Event] = {}  # wakes wait() on local appends
        self._consumers: set[NatsConsumer] = set()
        self._buckets: dict[str, NatsKeyValue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._errors: dict[str, tuple[float, int]] = {}  # connection errors: last logged, since

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def connection(self) -> Client:
        if self._nc is None or self._closed:
            raise StoreUnavailable("the NATS store is not started or already shut down")
        return self._nc

    @property
    def api(self) -> JsApi:
        if self._api is None or self._closed:
            raise StoreUnavailable("the NATS store is not started or already shut down")
        return self._api

    async def start(self) -> None:
        """Connect, check JetStream and create or update the well-known streams."""
        self._nc = await self._connect()
        self._js = self._nc.jetstream(timeout=API_TIMEOUT)
        self._api = JsApi(self._nc, API_TIMEOUT, self.config.limits.retry_after)
        try:
            await self._api.account_info()
            for stream in Stream:
                await self._ensure_stream(stream.value)
            await self._check_partitions()
        except (NotFound, KeikoError) as exc:
            self._closed = True
            await self._nc.close()
            if isinstance(exc, NotFound):
                raise StoreUnavailable(f"NATS at {self._location()} has no JetStream") from exc
            raise

    async def _check_partitions(self) -> None:
        """Record the partition count on first start; refuse a different one later."""
        count = self.config.nats.partitions
        kv = await self.kv(PARTITIONS_BUCKET)
        if await kv.swap(PARTITIONS_KEY, None, str(count).encode()):
            log.info("recorded store.nats.partitions=%d in the store", count)
            return
        recorded = (await kv.get(PARTITIONS_KEY) or b"").decode(errors="replace")
        if recorded != str(count):
            raise PermanentError(
                f"store.nats.partitions is {count} but this NATS store's streams are split "
                f"into {recorded} (recorded at first start in KV bucket "
                f"{kv_bucket_name(self.config.nats.stream_prefix, PARTITIONS_BUCKET)}, key "
                f"{PARTITIONS_KEY!r}): set store.nats.partitions: {recorded} everywhere. To "
                "change the count, stop every keiko process once the consumers have caught "
                "up, then delete that key (nats kv del) and start them with the new count"
            )

    def partitions(self, stream: str) -> int:
        """How many partitions ``stream`` has (1 unless it is traces or metrics)."""
        return self.config.nats.partitions if stream in PARTITIONED_STREAMS else 1

    async def _connect(self) -> Client:
        cfg = self.config.nats
        nc = Client()
        options: dict[str, Any] = {
            "servers": cfg.servers,
            "name": "keiko",
            "connect_timeout": cfg.connect_timeout,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,  # a store outlives NATS restarts
            "reconnect_time_wait": RECONNECT_WAIT,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }
        if cfg.token:
            options["token"] = cfg.token
        if cfg.credentials_file:
            options["user_credentials"] = str(cfg.credentials_file)
        try:
            # With endless reconnects nats-py also retries the first connection forever.
            await asyncio.wait_for(nc.connect(**options), cfg.connect_timeout)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            await nc.close()
            raise StoreUnavailable(
                f"cannot connect to NATS at {self._location()} within "
                f"{cfg.connect_timeout}s: {type(exc).__name__} {exc}"
            ) from exc
        return nc

    async def shutdown(self, deadline: float | None = None) -> None:
        """Hand back uncommitted records of open consumers, drain and close. Idempotent."""
        if self._closed or self._nc is None:
            self._closed = True
            return
        nc = self._nc
        for consumer in list(self._consumers):
            await consumer.close()
        for task in list(self._tasks):
            task.cancel()
        self._closed = True
        remaining = 10.0 if deadline is None else max(deadline - time.monotonic(), 0.1)
        try:
            await asyncio.wait_for(nc.drain(), remaining)
        except (nats.errors.Error, OSError, TimeoutError):
            pass
        finally:
            # nats-py fails to close a connection whose transport a dead server just cut.
            with contextlib.suppress(nats.errors.Error, OSError, RuntimeError):
                await nc.close()

    def reconfigure(self, config: StoreConfig) -> None:
        """Limits apply at once; new retention is written to every stream in the background."""
        old = self.config.retention
        self.config = self.config.model_copy(
            update={"limits": config.limits, "retention": config.retention}
        )
        if self._api is not None:
            self._api.retry_after = config.limits.retry_after
        self._backlog.invalidate()
        if config.retention != old and self._api is not None and not self._closed:
            task = asyncio.get_running_loop().create_task(self._apply_retention())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _apply_retention(self) -> None:
        for stream in list(self._streams):
            try:
                info = await self.api.stream_info(self._streams[stream])
                await self._reconcile(info["config"], self._stream_config(stream))
            except (NotFound, KeikoError) as exc:
                log.warning("could not apply the new retention to stream %s: %s", stream, exc)

    # -- streams ----------------------------------------------------------------------------

    def _stream_config(self, stream: str) -> dict[str, Any]:
        cfg, retention = self.config.nats, self.config.retention
        return {
            "name": js_stream_name(cfg.stream_prefix, stream),
            "subjects": [subject(cfg.stream_prefix, stream)]
            + (
                [f"{subject(cfg.stream_prefix, stream)}.*"] if stream in PARTITIONED_STREAMS else []
            ),
            "retention": "limits",
            "storage": "file",
            "discard": "old",
            "max_age": int(retention.max_age * 1e9),  # 0: unlimited
            "max_bytes": retention.max_bytes or -1,
            "max_msgs": -1,
            "max_consumers": -1,
            "max_msg_size": -1,
            "num_replicas": cfg.replicas,
            "allow_direct": True,
        }

    async def _ensure_stream(self, stream: str) -> str:
        """The JetStream stream of ``stream``, created or brought up to date first."""
        js_name = self._streams.get(stream)
        if js_name is not None:
            return js_name
        desired = self._stream_config(check_stream_name(stream))
        async with self._stream_locks.setdefault(stream, asyncio.Lock()):
            if stream not in self._streams:
                try:
                    info = await self.api.stream_info(desired["name"])
                except NotFound:
                    await self._add_stream(desired)
                else:
                    await self._reconcile(info["config"], desired)
                self._streams[stream] = desired["name"]
        return desired["name"]

    async def _add_stream(self, config: dict[str, Any]) -> None:
        try:
            await self.api.add_stream(config)
        except StoreFull as exc:
            raise StoreFull(
                f"{exc}. JetStream sets aside max_bytes for every stream when it creates it: "
                f"lower store.retention.max_bytes ({config['max_bytes']} bytes per stream) or "
                "give JetStream more storage (jetstream.max_file_store)",
                exc.retry_after,
            ) from exc

    async def _reconcile(self, current: dict[str, Any], desired: dict[str, Any]) -> None:
        changed = {k: v for k, v in desired.items() if k != "storage" and current.get(k) != v}
        if changed:
            log.info("updating JetStream stream %s: %s", desired["name"], sorted(changed))
            await self.api.update_stream({**current, **changed})

    async def streams(self) -> list[str]:
        return sorted(name for name, _ in await self._our_streams())

    async def _our_streams(self) -> list[tuple[str, dict[str, Any]]]:
        """(keiko name, JetStream stream info) of every stream under our prefix."""
        prefix = self.config.nats.stream_prefix
        found = []
        for info in await self.api.streams(f"{prefix.lower()}.*"):
            subjects = info["config"].get("subjects") or []
            name = stream_from_subject(prefix, subjects[0]) if subjects else None
            if name and info["config"]["name"] == js_stream_name(prefix, name):
                found.append((name, info))
        return found

    # -- append -----------------------------------------------------------------------------

    async def append(self, stream: str, records: Sequence[NewRecord]) -> list[int]:
        """Publish the records and return their sequences once JetStream stored them all."""
        check_stream_name(stream)
        if not records:
            return []
        nc = self.connection
        if not nc.is_connected:
            raise StoreUnavailable(
                f"not connected to NATS at {self._location()} (reconnecting)",
                self.config.limits.retry_after,
            )
        self._check_sizes(nc, records)
        nbytes = sum(len(r.payload) for r in records)
        self._check_pending(nbytes)
        self._inflight_bytes += nbytes  # counted from here: concurrent appends see it
        try:
            js_name = await self._ensure_stream(stream)
            await self._check_backlog(stream, js_name, nbytes)
            offsets = await self._publish(stream, js_name, records)
        finally:
            self._inflight_bytes -= nbytes
        self._backlog.appended(js_name, nbytes)
        event = self._appended.pop(stream, None)
        if event is not None:
            event.set()
        return offsets

    def _check_sizes(self, nc: Client, records: Sequence[NewRecord]) -> None:
        limit = nc.max_payload - _HEADER_ROOM
        for record in records:
            if len(record.payload) > limit:
                raise TooLarge(
                    f"a record of {len(record.payload)} bytes is over what this NATS server "
                    f"takes ({limit} bytes: raise max_payload in nats-server, or lower the "
                    "receivers' request size limit)"
                )

    def _check_pending(self, nbytes: int) -> None:
        limits = self.config.limits
        if self._inflight_bytes and self._inflight_bytes + nbytes > limits.max_pending_bytes:
            raise StoreFull(
                f"{self._inflight_bytes} bytes are being published "
                f"(store.limits.max_pending_bytes={limits.max_pending_bytes})",
                limits.retry_after,
            )

    async def _check_backlog(self, stream: str, js_name: str, nbytes: int) -> None:
        limits = self.config.limits
        if not limits.max_backlog_bytes:
            return
        behind = await self._backlog.behind(js_name)
        if behind is not None and behind + nbytes > limits.max_backlog_bytes:
            raise StoreFull(
                f"stream {stream!r}: the slowest consumer group is about {behind} bytes behind "
                f"(store.limits.max_backlog_bytes={limits.max_backlog_bytes})",
                limits.retry_after,
            )

    def _pieces(
        self, stream: str, records: Sequence[NewRecord]
    ) -> list[tuple[int, str, NewRecord]]:
        """(input index, subject, record) to publish: split by partition where needed."""
        subj = subject(self.config.nats.stream_prefix, stream)
        count = self.partitions(stream)
        if count == 1:
            return [(i, subj, r) for i, r in enumerate(records)]
        pieces = []
        for i, record in enumerate(records):
            parts = split(record, count)
            for part, piece in parts:
                if record.id and len(parts) > 1:  # the pieces are not duplicates of each other
                    piece = dataclasses.replace(piece, id=f"{record.id}.{part}")
                pieces.append((i, f"{subj}.{part}", piece))
        return pieces

    async def _publish(self, stream: str, js_name: str, records: Sequence[NewRecord]) -> list[int]:
        assert self._js is not None
        pieces = self._pieces(stream, records)
        acks: list[asyncio.Future[PubAck]] = []
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                # All publishes go out before the first ack is awaited, in order, so the
                # sequences of a batch increase with its records.
                for _, subj, record in pieces:
                    acks.append(
                        await self._js.publish_async(
                            subj,
                            record.payload,
                            wait_stall=PUBLISH_TIMEOUT,
                            headers=record_headers(record),
                        )
                    )
                done = await gather_or_cancel(*acks)
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            for ack in acks:
                ack.cancel()
            if isinstance(exc, nats.js.errors.NoStreamResponseError):
                self._streams.pop(stream, None)  # deleted behind our back: recreate next time
            raise self._publish_error(exc, len(acks), len(pieces)) from exc
        # An input record's offset is that of its last piece (offsets only grow).
        offsets = [0] * len(records)
        for (i, _, _), ack in zip(pieces, done, strict=True):
            offsets[i] = ack.seq
        return offsets

    def _publish_error(self, exc: BaseException, sent: int, total: int) -> KeikoError:
        retry_after = self.config.limits.retry_after
        if isinstance(exc, nats.js.errors.APIError) and exc.err_code in RESOURCE_CODES:
            return StoreFull(f"JetStream is out of resources: {exc.description}", retry_after)
        return to_keiko_error(exc, f"append ({sent} of {total} records sent)", retry_after)

    # -- reads ------------------------------------------------------------------------------

    async def read(self, stream: str, start: int, limit: int = 100) -> list[Record]:
        js_name = js_stream_name(self.config.nats.stream_prefix, stream)
        try:
            info = await self.api.stream_info(js_name)
        except NotFound:
            return []
        state = info["state"]
        first = max(start, state["first_seq"], 1)
        last = min(state["last_seq"], start + limit - 1)
        if limit <= 0 or first > last or not state["messages"]:
            return []
        direct = bool(info["config"].get("allow_direct"))
        return await read_range(self.api, js_name, first, last, direct)

    async def offset_at(self, stream: str, time_ns: int) -> int:
        js_name = js_stream_name(self.config.nats.stream_prefix, stream)
        try:
            return await first_seq_at(self.api, js_name, time_ns)
        except NotFound:
            return 1

    async def _last_offset(self, stream: str) -> int:
        js_name = js_stream_name(self.config.nats.stream_prefix, stream)
        try:
            return int((await self.api.stream_info(js_name))["state"]["last_seq"])
        except NotFound:
            return 0

    async def wait(self, stream: str, after: int, timeout: float) -> bool:
        """Poll the stream's last sequence, backing off; appends made here wake it at once."""
        check_stream_name(stream)
        deadline = time.monotonic() + timeout
        poll = WAIT_POLL_MIN
        while True:
            event = self._appended.setdefault(stream, asyncio.Event())
            try:
                if await self._last_offset(stream) > after:
                    return True
            except StoreUnavailable:
                pass  # reconnecting: keep waiting
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(event.wait(), min(poll, remaining))
            except TimeoutError:
                poll = min(poll * 2, WAIT_POLL_MAX)

    # -- groups and kv ----------------------------------------------------------------------

    async def consumer(
        self, stream: str, group: str, *, partition: int | None = None, start: int | None = None
    ) -> NatsConsumer:
        count = self.partitions(stream)
        if partition is not None and not 0 <= partition < count:
            raise ValueError(f"stream {stream!r} has partitions 0..{count - 1}, not {partition}")
        # Partition 0 of 1 is the whole stream: the group's own consumer.
        filtered = partition is not None and count > 1
        durable = durable_name(
            partition_group(group, partition) if partition is not None and count > 1 else group
        )
        js_name = await self._ensure_stream(stream)
        config = consumer_config(durable)
        if filtered:
            config["filter_subject"] = (
                f"{subject(self.config.nats.stream_prefix, stream)}.{partition}"
            )
        if start is not None:
            # Rewinding: a new consumer at ``start`` (the group has one member: see Store).
            config.update(deliver_policy="by_start_sequence", opt_start_seq=max(start, 1))
            with contextlib.suppress(NotFound):
                await self.api.delete_consumer(js_name, durable)
            await self.api.add_consumer(js_name, config)
        else:
            try:
                await self.api.consumer_info(js_name, durable)
            except NotFound:
                await self.api.add_consumer(js_name, config)
        consumer = await NatsConsumer(self, stream, group, js_name, durable).open()
        self._consumers.add(consumer)
        return consumer

    def committed(self, stream: str) -> None:
        """A consumer of ``stream`` committed: the backlog figure is stale."""
        self._backlog.invalidate(self._streams.get(stream))

    def forget_consumer(self, consumer: NatsConsumer) -> None:
        self._consumers.discard(consumer)

    async def kv(self, bucket: str) -> NatsKeyValue:
        name = kv_bucket_name(self.config.nats.stream_prefix, bucket)
        if name not in self._buckets:
            if self._js is None or self._closed:
                raise StoreUnavailable("the NATS store is not started or already shut down")
            self._buckets[name] = await open_bucket(
                self._js, self.api, name, self.config.nats.replicas
            )
        return self._buckets[name]

    # -- stats and health -------------------------------------------------------------------

    async def stats(self) -> StoreStats:
        ours = await self._our_streams()
        consumers = await asyncio.gather(
            *(self.api.consumers(info["config"]["name"]) for _, info in ours)
        )
        streams = [
            _stream_stats(name, info, found)
            for (name, info), found in zip(ours, consumers, strict=True)
        ]
        streams.sort(key=lambda s: s.name)
        return StoreStats(backend=self.backend, location=self._location(), streams=streams)

    async def readiness(self) -> Readiness:
        if self._nc is None or self._closed:
            return Readiness(False, "the NATS store is not started")
        if not self._nc.is_connected:
            return Readiness(False, f"not connected to NATS at {self._location()} (reconnecting)")
        try:
            await self.api.account_info(timeout=2.0)
        except (NotFound, KeikoError) as exc:
            return Readiness(False, f"JetStream at {self._location()} does not answer: {exc}")
        return Readiness(True)

    def _location(self) -> str:
        return ", ".join(self.config.nats.servers)

    # -- connection events (nats-py calls these) --------------------------------------------

    async def _on_error(self, exc: Exception) -> None:
        # While a server is down nats-py reports every reconnect attempt (several a second
        # per server): log the first of a kind, then a count every ERROR_LOG_INTERVAL.
        kind = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        last, repeats = self._errors.get(kind, (0.0, 0))
        if last and now - last < ERROR_LOG_INTERVAL:
            self._errors[kind] = (last, repeats + 1)
            return
        again = f" ({repeats} more since the last report)" if repeats else ""
        log.warning("NATS connection error: %s%s", kind, again)
        self._errors[kind] = (now, 0)

    async def _on_disconnected(self) -> None:
        if not self._closed:
            log.warning("disconnected from NATS at %s; reconnecting", self._location())

    async def _on_reconnected(self) -> None:
        self._errors.clear()
        log.info("reconnected to NATS at %s", self._nc.connected_url if self._nc else "?")


def _stream_stats(name: str, info: dict[str, Any], consumers: list[dict[str, Any]]) -> StreamStats:
    state = info["state"]
    held = int(state.get("messages", 0))
    groups = [
        GroupStats(
            group=group_from_durable(c["config"]["durable_name"]),
            committed=int(c.get("ack_floor", {}).get("stream_seq", 0)),
            lag_records=int(c.get("num_pending", 0)) + int(c.get("num_ack_pending", 0)),
        )
        for c in consumers
        if c.get("config", {}).get("durable_name")
    ]
    return StreamStats(
        name=name,
        records=held,
        items=None,  # the counts are in per-message headers; JetStream does not sum them
        bytes=int(state.get("bytes", 0)),
        first_offset=int(state.get("first_seq", 0)) if held else 0,
        last_offset=int(state.get("last_seq", 0)),
        oldest_time_ns=parse_time_ns(state["first_ts"]) if held else None,
        newest_time_ns=parse_time_ns(state["last_ts"]) if held else None,
        groups=sorted(groups, key=lambda g: g.group),
    )
