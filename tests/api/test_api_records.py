"""GET /api/v1/streams/{stream}/records: paging, time ranges, limits and parameter errors."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_harness import event, run, serving

from keiko.api import streams
from keiko.records import NewRecord

URL = "/api/v1/streams/events/records"


async def get(client: httpx.AsyncClient, url: str = URL, **params: Any) -> httpx.Response:
    return await client.get(url, params=params)


def offsets(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [r["offset"] for r in response.json()["records"]]


def test_paging_visits_every_record_once_and_default_is_the_latest(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as keiko, httpx.AsyncClient(base_url=keiko.api_url) as c:
            assert keiko.store is not None
            await keiko.store.append("events", [event(n) for n in range(250)])
            assert offsets(await get(c)) == list(range(151, 251))
            assert offsets(await get(c, limit=3)) == [248, 249, 250]
            seen, position = [], 1
            while True:
                page = (await get(c, from_offset=position, limit=70)).json()
                if not page["records"]:
                    assert page["next_offset"] == 251
                    break
                seen += [r["offset"] for r in page["records"]]
                assert all(r["payload"] == {"n": r["offset"] - 1} for r in page["records"])
                position = page["next_offset"]
            assert seen == list(range(1, 251))

    run(scenario())


def test_since_and_until_select_by_append_time(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(tmp_path) as keiko, httpx.AsyncClient(base_url=keiko.api_url) as c:
            assert keiko.store is not None
            await keiko.store.append("events", [event(1), event(2)])
            time.sleep(0.05)
            middle = time.time()
            time.sleep(0.05)
            await keiko.store.append("events", [event(3)])
            rfc3339 = datetime.fromtimestamp(middle, UTC).isoformat().replace("+00:00", "Z")
            assert offsets(await get(c, since=rfc3339)) == [3]
            assert offsets(await get(c, since=str(middle))) == [3]
            assert offsets(await get(c, until=rfc3339, from_offset=1)) == [1, 2]
            assert offsets(await get(c, until=rfc3339, limit=1)) == [2]  # latest up to until
            until_page = (await get(c, until=str(middle), from_offset=1)).json()
            assert until_page["next_offset"] == 3  # where the range stopped
            assert offsets(await get(c, since="2000-01-01T00:00:00+02:00", limit=2)) == [1, 2]
            assert offsets(await get(c, since=str(time.time() + 60))) == []

    run(scenario())


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"from_offset": "-1"}, "from_offset"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2024-05-01T10:00:00"}, "since"),  # no time zone
        ({"since": "1714557600", "until": "1714557000"}, "until"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    tmp_path: Path, params: dict[str, str], named: str
) -> None:
    async def scenario() -> httpx.Response:
        async with serving(tmp_path) as keiko, httpx.AsyncClient(base_url=keiko.api_url) as c:
            return await c.get(URL, params=params)

    response = run(scenario())
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "bad_parameter" and body["detail"].startswith(f"{named}: ")


def test_unknown_stream_path_and_method_are_json_errors(tmp_path: Path) -> None:
    async def scenario() -> list[httpx.Response]:
        async with serving(tmp_path) as keiko, httpx.AsyncClient(base_url=keiko.api_url) as c:
            return [
                await c.get("/api/v1/streams/nope/records"),
                await c.get("/api/v1/streams/Bad%20Name/records"),
                await c.get("/api/v2/whatever"),
                await c.post("/api/v1/streams"),
            ]

    unknown, bad_name, no_path, wrong_method = run(scenario())
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    assert all(name in unknown.json()["detail"] for name in ("events", "logs", "metrics", "traces"))
    assert bad_name.status_code == 404
    assert no_path.status_code == 404 and no_path.json()["error"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"


def test_a_page_stops_at_the_payload_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams, "MAX_PAGE_PAYLOAD_BYTES", 250_000)

    async def scenario() -> None:
        async with serving(tmp_path) as keiko, httpx.AsyncClient(base_url=keiko.api_url) as c:
            assert keiko.store is not None
            big = [NewRecord("blob", b"x" * 100_000) for _ in range(5)]
            await keiko.store.append("blobs", big)
            page = (await get(c, "/api/v1/streams/blobs/records", from_offset=1)).json()
            assert [r["offset"] for r in page["records"]] == [1, 2]
            assert page["next_offset"] == 3
            await keiko.store.append("huge", [NewRecord("blob", b"y" * 300_000)])
            page = (await get(c, "/api/v1/streams/huge/records", from_offset=1)).json()
            assert len(page["records"]) == 1  # a record over the budget still comes alone

    run(scenario())
