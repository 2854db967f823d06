"""A consumer fetch that gives way to shutdown, shared by every loop that reads the store."""

from __future__ import annotations

import asyncio
import contextlib

from keiko.errors import KeikoError
from keiko.records import Record
from keiko.store.base import Consumer


async def fetch_until_stopped(
    consumer: Consumer, max_records: int, timeout: float, stop: asyncio.Event
) -> list[Record]:
    """One fetch, abandoned (``[]``) when ``stop`` is set first: a loop never holds up
    keiko's stop for its fetch timeout. Nothing is lost: what was not processed is not
    committed."""
    fetch = asyncio.ensure_future(consumer.fetch(max_records, timeout))
    stopped = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({fetch, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if fetch in done:
        stopped.cancel()
        return fetch.result()
    fetch.cancel()
    with contextlib.suppress(asyncio.CancelledError, KeikoError):
        await fetch
    return []
