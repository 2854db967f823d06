"""GET /api/v1/streams/{stream}/live: Server-Sent Events, resumption, heartbeat, shutdown."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from api_harness import event, run, serving

LIVE = "/api/v1/streams/events/live"


async def events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Parsed SSE events (``id``, ``event``, ``data``) and comments (``comment``)."""
    current: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
        elif line == "":
            if current:
                yield current
            current = {}
        else:
            field, _, value = line.partition(": ")
            current[field] = json.loads(value) if field == "data" else value


async def next_record(stream: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for item in stream:
            if item.get("event") == "record":
                return item
        raise AssertionError("stream ended")

    return await asyncio.wait_for(first(), 5)


def test_a_record_appended_after_connecting_arrives_and_resumption_skips_none(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as keiko, httpx.AsyncClient(base_url=keiko.api_url) as c:
            assert keiko.store is not None
            await keiko.store.append("events", [event(0)])  # before connecting: not sent
            async with c.stream("GET", LIVE) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                stream = events(response)
                await asyncio.sleep(0.1)
                await keiko.store.append("events", [event(1)])
                got = await next_record(stream)
            assert got["id"] == "2" and got["data"]["offset"] == 2
            assert got["data"]["payload"] == {"n": 1} and got["data"]["encoding"] == "json"

            # Disconnected: three more records; an EventSource reconnects with Last-Event-ID.
            await keiko.store.append("events", [event(2), event(3), event(4)])
            async with c.stream("GET", LIVE, headers={"Last-Event-ID": got["id"]}) as response:
                stream = events(response)
                resumed = [await next_record(stream) for _ in range(3)]
            assert [e["data"]["offset"] for e in resumed] == [3, 4, 5]

            async with c.stream("GET", LIVE, params={"from_offset": 1}) as response:
                stream = events(response)
                assert (await next_record(stream))["data"]["payload"] == {"n": 0}

    run(scenario())


def test_heartbeat_comments_keep_an_idle_stream_open(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        async with serving(tmp_path) as keiko, httpx.AsyncClient(base_url=keiko.api_url) as c:
            assert keiko.api_state is not None
            keiko.api_state.heartbeat = 0.2
            comments = []
            async with c.stream("GET", LIVE) as response:
                async for item in events(response):
                    if "comment" in item:
                        comments.append(item["comment"])
                    if comments.count("heartbeat") == 2:
                        break
            return comments

    assert run(scenario())[:3] == ["connected", "heartbeat", "heartbeat"]


def test_shutdown_ends_open_live_streams_promptly(tmp_path: Path) -> None:
    async def scenario() -> float:
        async with serving(tmp_path) as keiko, httpx.AsyncClient(base_url=keiko.api_url) as c:

            async def listen() -> None:
                async with c.stream("GET", LIVE) as response:
                    async for _ in response.aiter_lines():
                        pass

            listener = asyncio.create_task(listen())
            await asyncio.sleep(0.2)
            began = time.monotonic()
            await keiko.shutdown()
            took = time.monotonic() - began
            await asyncio.wait_for(listener, 5)  # the server ended the stream
            return took

    assert run(scenario()) < 2.0  # well under api.shutdown_grace (3 s here)


def test_a_client_that_does_not_read_does_not_grow_server_memory(tmp_path: Path) -> None:
    """The live loop only reads the store as fast as the socket drains."""

    # Only the live loop may read the events stream here (incidents and alerting read it too).
    quiet = {
        "analytics": {"incidents": {"enabled": False}},
        "alerting": {"router": {"enabled": False}},
    }

    async def scenario() -> int:
        async with serving(tmp_path, quiet) as keiko:
            assert keiko.store is not None and keiko.api is not None
            big = [event(n) for n in range(200)]
            _, writer = await asyncio.open_connection(
                "127.0.0.1", int(keiko.api.url.rsplit(":", 1)[1])
            )
            writer.write(f"GET {LIVE}?from_offset=1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await writer.drain()
            reads = 0
            original = keiko.store.read

            async def counting_read(*args: Any, **kwargs: Any) -> Any:
                nonlocal reads
                reads += 1
                return await original(*args, **kwargs)

            keiko.store.read = counting_read  # type: ignore[method-assign]
            padding = "x" * 20_000
            for _ in range(20):  # ~80 MB of events if the server buffered them all
                await keiko.store.append(
                    "events", [type(e)(e.kind, json.dumps({"pad": padding}).encode()) for e in big]
                )
            await asyncio.sleep(1.0)
            writer.close()
            return reads

    # Without backpressure the loop would read all 4,000 records (at least 40 reads).
    assert run(scenario()) < 30
