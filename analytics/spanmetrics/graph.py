"""The service graph from spans: a client span meets its server child, and an edge
client service -> server service counts the request (like Tempo's metrics-generator and
the OpenTelemetry Collector's servicegraph connector).

Pairing, per fetch, in this order:
  - within the fetch: every span whose parent is in the same fetch and either belongs to
    another service or is a SERVER/CONSUMER child of a CLIENT/PRODUCER parent (vectorised:
    one dict of span keys, service codes compared as integers);
  - with spans waiting from earlier fetches: a child whose parent is a waiting client
    span, and a span (of any kind) that is the parent of a waiting server span;
  - what is left waits: CLIENT/PRODUCER spans for their server child, SERVER/CONSUMER
    spans for their parent, up to ``max_pending`` (further ones are dropped and counted).
A waiting span expires ``wait`` seconds (span time: the newest span end seen) after its
end. An expired client span that names its peer (db.system, peer.service, server.address
...) becomes an edge to a virtual node named by the peer, of connection type "database",
"messaging" or "virtual_node"; other expired spans count as unpaired. A server span
without a parent is a request from outside: an edge from ``root_client`` ("user").

Span keys are trace id + span id, so pairing needs every span of a trace in one graph:
see :mod:`analytics.spanmetrics.partition`. Waiting spans are not checkpointed: they are
at most ``wait`` old, so a restart loses at most that much pairing (counted as
nothing: neither edges nor unpaired), and the checkpoint stays small.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np

from analytics.spanmetrics.aggregate import newest_end
from analytics.spanmetrics.edges import SEEN_EBPF, SEEN_SPANS, EdgeKey, EdgeTable
from analytics.traces.spans import SpanBatch, SpanKind

CLIENT_KINDS = (SpanKind.CLIENT, SpanKind.PRODUCER)
SERVER_KINDS = (SpanKind.SERVER, SpanKind.CONSUMER)
# Peer values that name a database or a broker (semantic conventions' db.system and
# messaging.system values): the connection type of a virtual node.
DATABASES = frozenset(
    [
        "postgresql",
        "mysql",
        "mariadb",
        "mssql",
        "oracle",
        "sqlite",
        "redis",
        "memcached",
        "mongodb",
        "cassandra",
        "elasticsearch",
        "opensearch",
        "couchbase",
        "couchdb",
        "dynamodb",
        "cockroachdb",
        "clickhouse",
        "db2",
        "h2",
        "hbase",
        "neo4j",
        "influxdb",
        "spanner",
        "firestore",
        "cosmosdb",
        "trino",
    ]
)
BROKERS = frozenset(
    [
        "kafka",
        "rabbitmq",
        "activemq",
        "aws_sqs",
        "aws_sns",
        "sqs",
        "sns",
        "pulsar",
        "nats",
        "rocketmq",
        "jms",
        "gcp_pubsub",
        "servicebus",
        "eventhubs",
    ]
)


def connection_type(peer: str, kind: int) -> str:
    """The connection type of a virtual node named ``peer`` reached by a span of ``kind``."""
    name = peer.lower()
    if name in DATABASES:
        return "database"
    if kind == SpanKind.PRODUCER or name in BROKERS:
        return "messaging"
    return "virtual_node"


@dataclass(slots=True)
class _Waiting:
    service: str
    end_ns: int
    duration_ns: int
    error: bool
    kind: int
    peer: str = ""
    paired: bool = False  # a producer span that met a consumer (it waits for more)


@dataclass
class GraphStats:
    """Counts since start (the checkpoint keeps them)."""

    pairs: int = 0
    unpaired: Counter[tuple[str, str]] = field(default_factory=Counter)  # (side, service)
    dropped: int = 0  # spans not kept waiting: max_pending reached
    virtual: int = 0  # expired client spans turned into edges to a peer
    ebpf_edges: int = 0  # eBPF edge records merged
    ebpf_unattributed: int = 0  # eBPF edges whose client owner names no service


class _Cols:
    """A batch's columns as Python lists (indexing a list is cheaper than a numpy array)."""

    __slots__ = ("code", "duration", "durations", "end", "ends", "error", "errors", "kind", "names")

    def __init__(self, batch: SpanBatch) -> None:
        codes: dict[str, int] = {}
        self.code = np.array([codes.setdefault(s, len(codes)) for s in batch.service], np.int64)
        self.names = list(codes)  # by service code
        self.ends, self.errors = batch.end_ns, batch.error
        self.durations = batch.duration_ns
        self.duration: list[int] = self.durations.tolist()
        self.end: list[int] = batch.end_ns.tolist()
        self.error: list[bool] = batch.error.tolist()
        self.kind: list[int] = batch.kind.tolist()


@dataclass(slots=True)
class _Pairs:
    """Edges found in one fetch, as columns (latency -1: unknown)."""

    keys: list[EdgeKey] = field(default_factory=list)
    failed: list[bool] = field(default_factory=list)
    client_ns: list[int] = field(default_factory=list)
    server_ns: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    # pairs found vectorised: (distinct edges, per pair: index into them, columns)
    chunks: list[
        tuple[list[EdgeKey], np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    ] = field(default_factory=list)

    def add(self, key: EdgeKey, failed: bool, client_ns: int, server_ns: int, end: int) -> None:
        self.keys.append(key)
        self.failed.append(failed)
        self.client_ns.append(client_ns)
        self.server_ns.append(server_ns)
        self.ends.append(end)

    def chunk(
        self,
        names: list[str],
        client: np.ndarray,
        server: np.ndarray,
        connection_type: str,
        *columns: np.ndarray,
    ) -> None:
        """Pairs as columns, client and server given as indices into ``names``."""
        width = len(names)
        distinct, inverse = np.unique(client * width + server, return_inverse=True)
        keys = [(names[k // width], names[k % width], connection_type) for k in distinct.tolist()]
        failed, client_ns, server_ns, ends = columns
        self.chunks.append((keys, inverse.reshape(-1), failed, client_ns, server_ns, ends))


class ServiceGraph:
    """Pairs spans into edges of an :class:`EdgeTable`; one instance per trace partition."""

    def __init__(
        self,
        edges: EdgeTable,
        wait_s: float,
        max_pending: int,
        root_client: str = "user",
        max_peers: int = 100_000,
    ) -> None:
        self.edges = edges
        self.wait_ns = int(wait_s * 1e9)
        self.max_pending = max_pending
        self.root_client = root_client
        self.clients: dict[bytes, _Waiting] = {}  # trace+span id -> waiting client span
        self.servers: dict[bytes, _Waiting] = {}  # trace+parent id -> waiting server span
        self._expiry: deque[tuple[int, bool, bytes]] = deque()  # (end, is client, key)
        # (client service, peer) -> edge: which span edges an eBPF connection confirms
        self.peers: dict[tuple[str, str], int] = {}
        self.max_peers = max_peers
        self._new_peers: list[tuple[tuple[str, str], EdgeKey]] = []
        self.newest_ns = 0
        self.stats = GraphStats()

    @property
    def pending(self) -> int:
        """Spans waiting for their pair."""
        return len(self.clients) + len(self.servers)

    def observe(self, batch: SpanBatch) -> None:
        """Pair the spans of one fetch, keep the rest waiting, expire the old ones."""
        n = len(batch)
        if not n:
            return
        pairs = _Pairs()
        tids, pids, services = batch.trace_id, batch.parent_id, batch.service
        skeys = [t + s for t, s in zip(tids, batch.span_id, strict=True)]
        pkeys = [t + p if p else b"" for t, p in zip(tids, pids, strict=True)]
        index = dict(zip(skeys, range(n), strict=True))
        parent = np.array(list(map(index.get, pkeys, repeat(-1))), np.int64)
        kind = batch.kind
        is_client = (kind == SpanKind.CLIENT) | (kind == SpanKind.PRODUCER)
        is_server = (kind == SpanKind.SERVER) | (kind == SpanKind.CONSUMER)
        cols = _Cols(batch)
        durations, errors = cols.duration, cols.error
        paired_parent = self._in_batch(batch, cols, parent, is_client, is_server, pairs)
        has_parent = np.fromiter(map(bool, pids), bool, n)
        self._roots(cols, has_parent, is_server, pairs)
        # children whose parent is not in this fetch: a waiting client, or they wait
        outside = np.flatnonzero(has_parent & (parent < 0)).tolist()
        waiting_parents = self.clients.keys() & {pkeys[i] for i in outside}
        for i in outside:
            key = pkeys[i]
            c = self.clients.get(key) if key in waiting_parents else None
            if c is not None:
                if c.service != services[i] or is_server[i]:
                    self._pair_waiting_client(c, key, batch, cols, i, pairs)
            elif is_server[i]:
                self._wait(self.servers, key, False, batch, cols, i)
        # spans not paired as a parent yet: the parent of a waiting server, or wait
        unpaired = np.flatnonzero(~paired_parent).tolist()
        found = self.servers.keys() & {skeys[i] for i in unpaired}
        for i in unpaired:
            key = skeys[i]
            s = self.servers.pop(key, None) if key in found else None
            if s is not None:
                if s.service != services[i] or is_client[i]:
                    ct = durations[i] if is_client[i] else -1
                    edge = (services[i], s.service, "")
                    pairs.add(edge, errors[i] or s.error, ct, s.duration_ns, s.end_ns)
                    self._remember_peer(batch.peer[i], edge, services[i])
            elif is_client[i]:
                self._wait(self.clients, key, True, batch, cols, i)
        self.newest_ns = max(self.newest_ns, newest_end(batch.end_ns))
        self._expire(pairs)
        self._compact_expiry()
        self._record(pairs)

    def _in_batch(
        self,
        batch: SpanBatch,
        cols: _Cols,
        parent: np.ndarray,
        is_client: np.ndarray,
        is_server: np.ndarray,
        pairs: _Pairs,
    ) -> np.ndarray:
        """Pairs whose both spans are in the fetch; per span: was it paired as a parent."""
        code, names = cols.code, cols.names
        child = np.flatnonzero(parent >= 0)
        par = parent[child]
        cross = (code[par] != code[child]) | (is_client[par] & is_server[child])
        child, par = child[cross], par[cross]
        paired = np.zeros(len(batch), bool)
        paired[par] = True
        if not len(child):
            return paired
        durations = cols.durations
        client_ns = np.where(is_client[par], durations[par], -1)
        failed = batch.error[par] | batch.error[child]
        pc, cc = code[par], code[child]
        pairs.chunk(names, pc, cc, "", failed, client_ns, durations[child], batch.end_ns[child])
        peer = batch.peer
        callers = is_client[par]
        rows = zip(par[callers].tolist(), pc[callers].tolist(), cc[callers].tolist(), strict=True)
        named = {(peer[p], c, s) for p, c, s in rows if peer[p]}
        for name, c, s in named:
            self._remember_peer(name, (names[c], names[s], ""), names[c])
        return paired

    def _roots(
        self, cols: _Cols, has_parent: np.ndarray, is_server: np.ndarray, pairs: _Pairs
    ) -> None:
        if not self.root_client:
            return
        roots = np.flatnonzero(is_server & ~has_parent)
        if not len(roots):
            return
        names = [*cols.names, self.root_client]
        client = np.full(len(roots), len(names) - 1)
        pairs.chunk(
            names,
            client,
            cols.code[roots],
            "virtual_node",
            cols.errors[roots],
            np.full(len(roots), -1, np.int64),
            cols.durations[roots],
            cols.ends[roots],
        )

    def _pair_waiting_client(
        self, c: _Waiting, key: bytes, batch: SpanBatch, cols: _Cols, i: int, pairs: _Pairs
    ) -> None:
        # A producer's message may have several consumers: it stays until it expires.
        if c.kind == SpanKind.PRODUCER:
            c.paired = True
        else:
            del self.clients[key]
        edge = (c.service, batch.service[i], "")
        failed = c.error or cols.error[i]
        ct = c.duration_ns if c.kind in CLIENT_KINDS else -1
        pairs.add(edge, failed, ct, cols.duration[i], cols.end[i])
        self._remember_peer(c.peer, edge, c.service)

    def _remember_peer(self, peer: str, edge: EdgeKey, service: str) -> None:
        if peer and (service, peer) not in self.peers and len(self.peers) < self.max_peers:
            self.peers[(service, peer)] = -1  # the edge's slot is known after _record
            self._new_peers.append(((service, peer), edge))

    def _wait(
        self,
        into: dict[bytes, _Waiting],
        key: bytes,
        client: bool,
        b: SpanBatch,
        cols: _Cols,
        i: int,
    ) -> None:
        if self.pending >= self.max_pending:
            self.stats.dropped += 1
            return
        end = cols.end[i]
        into[key] = _Waiting(
            b.service[i], end, cols.duration[i], cols.error[i], cols.kind[i], b.peer[i]
        )
        self._expiry.append((end, client, key))

    def _compact_expiry(self) -> None:
        """Rebuild the expiry queue from the waiting spans when paired ones dominate it
        (they stay queued until their time comes): memory stays bounded by max_pending."""
        if len(self._expiry) <= 2 * self.max_pending + 1024:
            return
        entries = [(w.end_ns, True, k) for k, w in self.clients.items()]
        entries += [(w.end_ns, False, k) for k, w in self.servers.items()]
        entries.sort(key=lambda e: e[0])
        self._expiry = deque(entries)

    def _expire(self, pairs: _Pairs) -> None:
        """Waiting spans older than ``wait``: edges to a peer, or unpaired."""
        cutoff = self.newest_ns - self.wait_ns
        queue = self._expiry
        while queue and queue[0][0] < cutoff:
            _, client, key = queue.popleft()
            span = (self.clients if client else self.servers).pop(key, None)
            if span is None or span.paired:
                continue  # paired meanwhile
            if client and span.peer:
                edge = (span.service, span.peer, connection_type(span.peer, span.kind))
                pairs.add(edge, span.error, span.duration_ns, -1, span.end_ns)
                self.stats.virtual += 1
            else:
                self.stats.unpaired[("client" if client else "server", span.service)] += 1

    def _record(self, pairs: _Pairs) -> None:
        found = len(pairs.keys) + sum(len(c[1]) for c in pairs.chunks)
        if not found:
            self._new_peers = []
            return
        table = self.edges
        with table.lock:
            ids = [table.ids(pairs.keys)]
            failed = [np.array(pairs.failed, bool)]
            client_ns = [np.array(pairs.client_ns, np.int64)]
            server_ns = [np.array(pairs.server_ns, np.int64)]
            ends = [np.array(pairs.ends, np.int64)]
            for keys, inverse, f, c, s, e in pairs.chunks:
                ids.append(table.ids(keys)[inverse])
                failed.append(f)
                client_ns.append(c)
                server_ns.append(s)
                ends.append(e)
            table.add(
                np.concatenate(ids),
                np.concatenate(failed),
                np.concatenate(client_ns),
                np.concatenate(server_ns),
                np.concatenate(ends),
                SEEN_SPANS,
            )
        self.stats.pairs += found
        for peer_key, edge in self._new_peers:
            self.peers[peer_key] = table.slots.ids.get(edge, -1)
        self._new_peers = []

    def observe_tcp(
        self, client: str, server: str, connects: int, failed: int, time_ns: int
    ) -> None:
        """One eBPF TCP edge: mark the span edges it confirms, else count a "tcp" edge."""
        table = self.edges
        confirmed = self.peers.get((client, server), -1)
        host = server.rsplit(":", 1)[0] if ":" in server else server
        if confirmed < 0 and host != server:
            confirmed = self.peers.get((client, host), -1)
        with table.lock:
            if confirmed >= 0 and table.slots.keys[confirmed] is not None:
                table.seen[confirmed] |= SEEN_EBPF
                table.last_ns[confirmed] = max(int(table.last_ns[confirmed]), time_ns)
                return
            ids = table.ids([(client, server, "tcp")])
            one = np.ones(1, np.int64)
            table.add(
                ids,
                np.array([failed]),
                -one,
                -one,
                np.array([time_ns], np.int64),
                SEEN_EBPF,
                requests=np.array([connects], np.int64),
            )

    def forget_edges(self) -> None:
        """Drop peer links to edges that are gone (after the table evicted some)."""
        keys = self.edges.slots.keys
        self.peers = {
            k: sid
            for k, sid in self.peers.items()
            if 0 <= sid < len(keys) and keys[sid] is not None
        }

    def edge_keys(self) -> Sequence[EdgeKey | None]:
        """The table's keys by slot (for tests)."""
        return self.edges.slots.keys
