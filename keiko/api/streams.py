"""Store stats, stream listing, paged records and a live Server-Sent Events feed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from keiko.api.errors import BadParameter
from keiko.api.params import int_param, time_param
from keiko.api.render import record_json, stats_json
from keiko.api.state import ApiState, state_of
from keiko.errors import NotFound
from keiko.records import Record
from keiko.store.base import Store

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# A page stops early once its payloads reach this size (a trace batch can be 250 KB), so one
# request cannot make the server build a response of hundreds of megabytes.
MAX_PAGE_PAYLOAD_BYTES = 8 * 1024**2
FIRST_CHUNK = 16  # records per store read before their size is known
MAX_CHUNK = 100
END_OF_TIME_NS = 2**63 - 1  # for offset_at(): the offset after the last one


async def store_stats(request: Request) -> Response:
    """Records, bytes, oldest/newest and consumer lag per stream."""
    return JSONResponse(stats_json(await state_of(request).store.stats()))


async def list_streams(request: Request) -> Response:
    """Names of the streams that exist."""
    return JSONResponse({"streams": sorted(await state_of(request).store.streams())})


async def _stream(request: Request) -> str:
    name: str = request.path_params["stream"]
    known = await state_of(request).store.streams()
    if name not in known:
        raise NotFound(f"unknown stream {name!r}; streams: {', '.join(sorted(known))}")
    return name


async def read_page(
    store: Store, stream: str, start: int, limit: int, until_ns: int | None = None
) -> list[Record]:
    """Up to ``limit`` records from ``start``, stopping after ``until_ns`` or at the payload
    budget (always at least one record). Reads in chunks sized by the records seen so far,
    so a page of 250 KB trace batches does not load a thousand of them first.
    """
    page: list[Record] = []
    size, chunk, position = 0, FIRST_CHUNK, start
    while len(page) < limit:
        records = await store.read(stream, position, min(chunk, limit - len(page)))
        for record in records:
            if until_ns is not None and record.time_ns > until_ns:
                return page
            if page and size + len(record.payload) > MAX_PAGE_PAYLOAD_BYTES:
                return page
            page.append(record)
            size += len(record.payload)
        if not records:
            return page
        position = records[-1].offset + 1
        average = max(1, size // len(page))
        chunk = max(1, min(MAX_CHUNK, (MAX_PAGE_PAYLOAD_BYTES - size) // average))
    return page


async def list_records(request: Request) -> Response:
    """A page of records by offset and/or time range; ``next_offset`` continues it."""
    state = state_of(request)
    stream = await _stream(request)
    query = request.query_params
    limit = int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT) or DEFAULT_LIMIT
    from_offset = int_param(query, "from_offset", None, 0)
    since, until = time_param(query, "since"), time_param(query, "until")
    if since is not None and until is not None and until < since:
        raise BadParameter("until", "is before since")
    if from_offset is None and since is None:
        # No start given: the most recent `limit` records (up to `until` if given).
        end = await state.store.offset_at(stream, END_OF_TIME_NS if until is None else until + 1)
        start = max(1, end - limit)
    else:
        start = from_offset or 1
        if since is not None:
            start = max(start, await state.store.offset_at(stream, since))
    page = await read_page(state.store, stream, start, limit, until)
    next_offset = page[-1].offset + 1 if page else start
    body = await run_in_threadpool(_encode_page, page, next_offset)
    return Response(body, media_type="application/json")


def _encode_page(page: list[Record], next_offset: int) -> bytes:
    doc = {"records": [record_json(r) for r in page], "next_offset": next_offset}
    return json.dumps(doc, separators=(",", ":")).encode()


def _encode_events(records: Sequence[Record]) -> bytes:
    return b"".join(
        f"id: {r.offset}\nevent: record\ndata: {json.dumps(record_json(r))}\n\n".encode()
        for r in records
    )


async def _wait_for_more(state: ApiState, stream: str, after: int) -> bool:
    """True when the stream grew past ``after``; False on heartbeat time or shutdown."""
    grown = asyncio.ensure_future(state.store.wait(stream, after, state.heartbeat))
    stopping = asyncio.ensure_future(state.stopping.wait())
    try:
        await asyncio.wait({grown, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (grown, stopping):
            task.cancel()
    return grown.done() and not grown.cancelled() and grown.result()


async def _events(state: ApiState, stream: str, start: int) -> AsyncIterator[bytes]:
    # Each chunk is awaited until the server's transport takes it (uvicorn pauses when the
    # socket buffer is full), so a slow client slows this loop instead of growing a buffer.
    yield b"retry: 2000\n: connected\n\n"
    position = start
    while not state.stopping.is_set():
        records = await read_page(state.store, stream, position, MAX_CHUNK)
        if records:
            yield await run_in_threadpool(_encode_events, records)
            position = records[-1].offset + 1
        elif not await _wait_for_more(state, stream, position - 1):
            yield b": heartbeat\n\n"


async def live_records(request: Request) -> Response:
    """Server-Sent Events of records appended from now, ``from_offset`` or Last-Event-ID."""
    state = state_of(request)
    stream = await _stream(request)
    last_event = request.headers.get("last-event-id")
    if last_event:
        try:
            start = int(last_event) + 1
        except ValueError:
            raise BadParameter(
                "Last-Event-ID", f"not a record offset (got {last_event!r})"
            ) from None
    else:
        from_offset = int_param(request.query_params, "from_offset", None, 0)
        start = (
            from_offset
            if from_offset is not None
            else await state.store.offset_at(stream, END_OF_TIME_NS)
        )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(
        _events(state, stream, start), media_type="text/event-stream", headers=headers
    )


ROUTES = [
    Route("/api/v1/store/stats", store_stats, methods=["GET"]),
    Route("/api/v1/streams", list_streams, methods=["GET"]),
    Route("/api/v1/streams/{stream}/records", list_records, methods=["GET"]),
    Route("/api/v1/streams/{stream}/live", live_records, methods=["GET"]),
]
