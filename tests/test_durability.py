"""kill -9 in the middle of a stream of requests, then a restart.

1. Through `keiko run`: OTLP/gRPC and OTLP/HTTP clients send requests whose trace ids
   say which request they belong to; keiko is killed with SIGKILL mid-stream; after a
   restart every acknowledged request's spans are in the store.
2. At the store: a process appends and consumes with commits in a loop and is killed;
   after a restart every acknowledged append is there, and a consumer of the group
   resumes right after its last commit: it sees no committed record twice.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
from fixtures.keiko import KeikoProcess
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from keiko.records import Kind
from keiko.store.config import StoreConfig
from keiko.store.embedded import EmbeddedStore

SPANS = 50


def trace_id(client: int, seq: int) -> bytes:
    return client.to_bytes(4, "big") + seq.to_bytes(8, "big") + bytes(4)


def request_for(seq: int, client: int) -> bytes:
    """A request whose trace id encodes (client, seq)."""
    tid = trace_id(client, seq)
    spans = [
        Span(
            trace_id=tid,
            span_id=(i + 1).to_bytes(8, "big"),
            name=f"op{i}",
            start_time_unix_nano=1,
            end_time_unix_nano=2,
        )
        for i in range(SPANS)
    ]
    req = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])]
    )
    return req.SerializeToString()


class Sender(threading.Thread):
    """Sends requests until stopped; remembers which ones were acknowledged."""

    def __init__(self, client: int, grpc_target: str, http_url: str) -> None:
        super().__init__(daemon=True)
        self.client, self.grpc_target, self.http_url = client, grpc_target, http_url
        self.acked: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        channel = grpc.insecure_channel(self.grpc_target)
        export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
        http = httpx.Client(timeout=2.0)
        seq = 0
        while not self.stop.is_set():
            body = request_for(seq, self.client)
            try:
                if self.client % 2:
                    export(body, timeout=2.0)
                else:
                    r = http.post(
                        self.http_url,
                        content=body,
                        headers={"Content-Type": "application/x-protobuf"},
                    )
                    r.raise_for_status()
                self.acked.append(seq)
            except (grpc.RpcError, httpx.HTTPError):
                time.sleep(0.01)  # keiko is down: keep trying, as an exporter would
            seq += 1
        channel.close()
        http.close()


def stored_trace_ids(data_dir: Path) -> set[bytes]:
    async def read() -> set[bytes]:
        store = EmbeddedStore(
            StoreConfig.model_validate({"embedded": {"path": str(data_dir)}}), read_only=True
        )
        await store.start()
        found: set[bytes] = set()
        start = 1
        while batch := await store.read("traces", start, 200):
            for rec in batch:
                assert rec.kind == Kind.OTLP_TRACES
                req = ExportTraceServiceRequest.FromString(rec.payload)
                found |= {
                    s.trace_id
                    for rs in req.resource_spans
                    for ss in rs.scope_spans
                    for s in ss.spans
                }
            start = batch[-1].offset + 1
        await store.shutdown()
        return found

    return asyncio.run(read())


def test_kill_9_loses_no_acknowledged_otlp_request(
    keiko_process: Callable[..., KeikoProcess],
) -> None:
    kp = keiko_process()
    senders = [Sender(c, kp.otlp_grpc, kp.otlp_http + "/v1/traces") for c in (1, 2, 3, 4)]
    for s in senders:
        s.start()
    time.sleep(1.5)
    kp.kill()  # SIGKILL while requests are in flight
    time.sleep(0.3)
    kp.start()
    time.sleep(0.5)
    for s in senders:
        s.stop.set()
    for s in senders:
        s.join(10)
    kp.stop()
    stored = stored_trace_ids(kp.data_dir)
    acked = {trace_id(s.client, seq) for s in senders for seq in s.acked}
    assert sum(len(s.acked) for s in senders) > 20, "too few requests to test anything"
    assert all(s.acked for s in senders), "every transport must have been acknowledged"
    missing = acked - stored
    assert not missing, f"{len(missing)} acknowledged requests lost after kill -9"


WORKER = r"""
import asyncio, sys
from keiko.records import NewRecord
from keiko.store.config import StoreConfig
from keiko.store.embedded import EmbeddedStore

async def main(path):
    store = EmbeddedStore(StoreConfig.model_validate({"embedded": {"path": path}}))
    await store.start()
    consumer = await store.consumer("events", "g")
    n = 0
    while True:
        n += 1
        await store.append("events", [NewRecord("e", str(n).encode() * 100)])
        print("acked", n, flush=True)
        for rec in await consumer.fetch(7, 0.01):
            await consumer.commit(rec.offset)
            print("committed", rec.offset, flush=True)

asyncio.run(main(sys.argv[1]))
"""


def test_kill_9_keeps_appends_and_commits(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    acked, committed = 0, 0
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while acked < 300 and time.monotonic() < deadline:
        word, value = proc.stdout.readline().split()
        if word == "acked":
            acked = int(value)
        else:
            committed = int(value)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert acked >= 300 and committed > 0

    async def check() -> None:
        store = EmbeddedStore(StoreConfig.model_validate({"embedded": {"path": str(tmp_path)}}))
        await store.start()
        records = await store.read("events", 1, 10_000)
        assert [r.payload for r in records[:acked]] == [
            str(n).encode() * 100 for n in range(1, acked + 1)
        ]
        consumer = await store.consumer("events", "g")
        again = await consumer.fetch(1, 1.0)
        # The group resumes exactly after its last commit that was acknowledged, or after a
        # later one whose acknowledgement the kill cut off; never at a committed record.
        assert again and again[0].offset > committed
        assert again[0].offset <= committed + 8
        await store.shutdown()

    asyncio.run(check())
