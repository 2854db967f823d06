"""Silences, cases from Alertmanager's silence/silence.go (states, ``canUpdate``, ``Set``,
``Expire``, ``validateSilence``), api/v2 (``PostableSilence``, ``GettableSilence``) and the
docs' "Silences" section."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.alertmanager import real_alertmanager as alertmanager

from alerting.matchers import parse_matcher, parse_matchers
from alerting.model import parse_time, rfc3339
from alerting.silences import Silence, SilenceError, Silences, silence_from_api

NOW = parse_time("2026-11-24T06:00:00Z")
H = 3600.0


def sil(matchers: str = '{alertname="Down"}', start: float = NOW, end: float = NOW + H) -> Silence:
    return Silence("", parse_matchers(matchers), start, end, "ops", "maintenance")


# (starts_at, ends_at, now, state) -- silence.go getState
STATES = [
    (NOW + 10, NOW + H, NOW, "pending"),  # "before startsAt"
    (NOW, NOW + H, NOW, "active"),  # active from startsAt itself
    (NOW - H, NOW + H, NOW, "active"),
    (NOW - H, NOW - 1, NOW, "expired"),
    # deviation (documented): expired at endsAt itself, so expire(now) takes effect at now
    (NOW - H, NOW, NOW, "expired"),
]


@pytest.mark.parametrize(("start", "end", "now", "state"), STATES)
def test_states(start: float, end: float, now: float, state: str) -> None:
    assert sil(start=start, end=end).state(now) == state


def postable(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "matchers": [{"name": "alertname", "value": "Down", "isRegex": False}],
        "startsAt": rfc3339(NOW),
        "endsAt": rfc3339(NOW + H),
        "createdBy": "ops",
        "comment": "maintenance",
    }
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not None}


def test_from_api_and_back() -> None:
    s = silence_from_api(postable(), NOW)
    assert (s.starts_at, s.ends_at, s.created_by, s.comment, s.updated_at) == (
        NOW,
        NOW + H,
        "ops",
        "maintenance",
        NOW,
    )
    store = Silences()
    sid = store.upsert(s, NOW)
    got = store.get(sid)
    assert got is not None
    doc = got.to_api(NOW)
    # GettableSilence: id, matchers (with isEqual), times, createdBy, comment, status.state
    assert doc == {
        "id": sid,
        "matchers": [{"name": "alertname", "value": "Down", "isRegex": False, "isEqual": True}],
        "startsAt": "2026-11-24T06:00:00.000Z",
        "endsAt": "2026-11-24T07:00:00.000Z",
        "updatedAt": "2026-11-24T06:00:00.000Z",
        "createdBy": "ops",
        "comment": "maintenance",
        "status": {"state": "active"},
    }


# (overrides of a valid PostableSilence, the field the error must name)
API_BAD: list[tuple[dict[str, Any], str]] = [
    ({"matchers": None}, "matchers"),  # required fields (openapi PostableSilence)
    ({"startsAt": None}, "startsAt"),
    ({"endsAt": None}, "endsAt"),
    ({"createdBy": None}, "createdBy"),
    ({"comment": None}, "comment"),
    ({"createdBy": 7}, "createdBy"),
    ({"startsAt": "yesterday"}, "startsAt"),
    ({"endsAt": 12}, "endsAt"),
    # api/v2: "start time must be before end time" (equal refused too)
    ({"endsAt": rfc3339(NOW)}, "endsAt"),
    ({"endsAt": rfc3339(NOW - 60)}, "endsAt"),
    # api/v2: "end time can't be in the past"
    ({"startsAt": rfc3339(NOW - 2 * H), "endsAt": rfc3339(NOW - H)}, "past"),
    # validateSilence: "at least one matcher required"
    ({"matchers": []}, "matchers"),
    # validateSilence: "at least one matcher must not match the empty string"
    ({"matchers": [{"name": "x", "value": ".*", "isRegex": True}]}, "empty string"),
    ({"matchers": [{"name": "x", "value": "", "isRegex": False}]}, "empty string"),
    (
        {
            "matchers": [
                {"name": "a", "value": "", "isRegex": False},
                {"name": "b", "value": "x?", "isRegex": True},
            ]
        },
        "empty string",
    ),
    ({"matchers": [{"name": "x", "value": "(", "isRegex": True}]}, "matchers[0]"),
    ({"matchers": [{"value": "v", "isRegex": False}]}, "matchers[0]"),
    ({"id": 5}, "id"),
]


@pytest.mark.parametrize(("over", "field"), API_BAD)
def test_from_api_refuses(over: dict[str, Any], field: str) -> None:
    doc = postable(**{k: v for k, v in over.items() if v is not None})
    for key, value in over.items():
        if value is None:
            doc.pop(key, None)
    with pytest.raises(SilenceError) as err:
        silence_from_api(doc, NOW)
    assert field in str(err.value)


def test_negative_matchers_alone_are_allowed() -> None:
    # matchesEmpty is false for != and !~: a silence of only env!="prod" is accepted
    doc = postable(matchers=[{"name": "env", "value": "prod", "isRegex": False, "isEqual": False}])
    assert silence_from_api(doc, NOW).matchers == [parse_matcher('env!="prod"')]


def test_non_object_body_is_refused() -> None:
    with pytest.raises(SilenceError, match="JSON object"):
        silence_from_api([1, 2], NOW)


def test_new_silence_gets_a_uuid_and_a_start_not_in_the_past() -> None:
    # silence.go Set: a new silence gets a fresh UUID; "If the start is in the past, set it
    # to now"
    store = Silences()
    sid = store.upsert(sil(start=NOW - H, end=NOW + H), NOW)
    assert uuid.UUID(sid).version == 4
    got = store.get(sid)
    assert got is not None and got.starts_at == NOW and got.updated_at == NOW


def test_update_in_place_when_am_allows_it() -> None:
    # canUpdate: same matchers; active: same start, end not in the past -> same id
    store = Silences()
    sid = store.upsert(sil(), NOW)
    changed = sil(end=NOW + 2 * H)
    changed.id, changed.comment = sid, "longer"
    assert store.upsert(changed, NOW + 60) == sid
    got = store.get(sid)
    assert got is not None and (got.ends_at, got.comment, got.updated_at) == (
        NOW + 2 * H,
        "longer",
        NOW + 60,
    )
    assert len(store) == 1


# (change to an active silence, kept id?) -- canUpdate for an active silence
ACTIVE_UPDATES = [
    ({"matchers": parse_matchers('{alertname="Other"}')}, False),  # matchers changed
    ({"starts_at": NOW + 10}, False),  # start changed
    ({"ends_at": NOW + 30}, True),  # shortened, not into the past
    ({"comment": "why"}, True),
]


@pytest.mark.parametrize(("change", "kept"), ACTIVE_UPDATES)
def test_update_of_an_active_silence(change: dict[str, Any], kept: bool) -> None:
    store = Silences()
    sid = store.upsert(sil(), NOW)
    new = copy.deepcopy(store.get(sid))
    assert new is not None
    for k, v in change.items():
        setattr(new, k, v)
    new_id = store.upsert(new, NOW + 20)
    assert (new_id == sid) is kept
    if not kept:
        # Set: "We cannot update the silence, expire it to create a new one."
        old = store.get(sid)
        assert old is not None and old.state(NOW + 20) == "expired" and old.ends_at == NOW + 20
        assert store.get(new_id) is not None and len(store) == 2


def test_update_of_a_pending_silence() -> None:
    # canUpdate, pending: allowed unless the new start is in the past
    store = Silences()
    sid = store.upsert(sil(start=NOW + H, end=NOW + 2 * H), NOW)
    moved = copy.deepcopy(store.get(sid))
    assert moved is not None
    moved.starts_at = NOW + 30
    assert store.upsert(moved, NOW) == sid
    past = copy.deepcopy(moved)
    past.starts_at = NOW - 30
    new_id = store.upsert(past, NOW)
    assert new_id != sid
    old = store.get(sid)
    # expiring a pending silence sets start and end to now (it never started)
    assert old is not None and old.starts_at == old.ends_at == NOW
    fresh = store.get(new_id)
    assert fresh is not None and fresh.starts_at == NOW  # clamped to now


def test_update_of_an_expired_silence_creates_a_new_one() -> None:
    store = Silences()
    sid = store.upsert(sil(), NOW)
    store.expire(sid, NOW + 60)
    again = copy.deepcopy(store.get(sid))
    assert again is not None
    again.ends_at = NOW + 3 * H
    new_id = store.upsert(again, NOW + 120)
    assert new_id != sid
    old, new = store.get(sid), store.get(new_id)
    assert old is not None and old.ends_at == NOW + 60  # left as it was
    assert new is not None and new.state(NOW + 120) == "active"


def test_upsert_with_an_unknown_id_is_not_found() -> None:
    # silence.go Set: an id that does not exist -> ErrNotFound
    s = sil()
    s.id = "no-such-id"
    with pytest.raises(KeyError, match="no-such-id"):
        Silences().upsert(s, NOW)


def test_expire() -> None:
    store = Silences()
    sid = store.upsert(sil(), NOW)
    store.expire(sid, NOW + 60)
    got = store.get(sid)
    assert got is not None and got.state(NOW + 60) == "expired"
    with pytest.raises(SilenceError, match="already expired"):
        store.expire(sid, NOW + 61)
    with pytest.raises(KeyError):
        store.expire("nope", NOW)


def test_silenced_by_only_active_matching_silences() -> None:
    store = Silences()
    active = store.upsert(sil('{alertname="Down", cluster=~"eu-.*"}'), NOW)
    pending = store.upsert(sil('{alertname="Down"}', start=NOW + H, end=NOW + 2 * H), NOW)
    regex_only = store.upsert(sil('{cluster=~"eu-1|eu-2"}'), NOW)
    negative = store.upsert(sil('{env!="prod", alertname=~"D.*"}'), NOW)
    labels = {"alertname": "Down", "cluster": "eu-1", "env": "prod"}
    assert store.silenced_by(labels, NOW + 1) == sorted([active, regex_only])
    assert store.silenced_by({**labels, "env": "dev"}, NOW + 1) == sorted(
        [active, regex_only, negative]
    )
    # at NOW + H the first ones ended and the pending one started
    assert store.silenced_by(labels, NOW + H) == [pending]
    store.expire(pending, NOW + H + 1)
    assert store.silenced_by(labels, NOW + H + 2) == []


def test_list_with_am_filters() -> None:
    store = Silences()
    a = store.upsert(sil('{alertname="Down", team="db"}'), NOW)
    b = store.upsert(sil('{alertname="Up"}'), NOW)
    assert {s.id for s in store.list()} == {a, b}
    # api/v2 ?filter=: applied to the silence's matchers as labels
    assert [s.id for s in store.list(parse_matchers('{team="db"}'))] == [a]
    assert [s.id for s in store.list(parse_matchers('{alertname=~"Up|Other"}'))] == [b]
    # an empty-valued filter matches a silence without that name
    assert [s.id for s in store.list(parse_matchers('{team=""}'))] == [b]
    assert [s.id for s in store.list(parse_matchers('{team!=""}'))] == [a]


def test_gc_drops_after_retention() -> None:
    store = Silences()
    old = store.upsert(sil(), NOW)
    keep = store.upsert(sil('{alertname="B"}', end=NOW + 10 * H), NOW)
    store.expire(old, NOW + 60)
    assert store.gc(NOW + 60 + 5 * H - 1, retention=5 * H) == 0
    assert store.gc(NOW + 60 + 5 * H + 1, retention=5 * H) == 1
    assert store.get(old) is None and store.get(keep) is not None
    assert store.silenced_by({"alertname": "Down"}, NOW + 1) == []


def test_snapshot_round_trip() -> None:
    store = Silences()
    a = store.upsert(sil('{alertname="Down", x=~"a|b"}'), NOW)
    b = store.upsert(sil('{env!="prod"}', start=NOW + H, end=NOW + 2 * H), NOW)
    back = Silences.restore(store.snapshot())
    for sid in (a, b):
        assert back.get(sid) == store.get(sid)
    assert back.silenced_by({"alertname": "Down", "x": "b"}, NOW + 1) == [a]
    with pytest.raises(ValueError, match="not a silences snapshot"):
        Silences.restore(b'{"version": 1}')
    with pytest.raises(ValueError, match="version"):
        Silences.restore(b'{"version": 9, "silences": []}')


def test_direct_upsert_validates() -> None:
    store = Silences()
    with pytest.raises(SilenceError, match="empty string"):
        store.upsert(sil('{x=~".*"}'), NOW)
    with pytest.raises(SilenceError, match="at least one matcher"):
        store.upsert(Silence("", [], NOW, NOW + H), NOW)
    with pytest.raises(SilenceError, match="before the start"):
        store.upsert(sil(start=NOW + H, end=NOW), NOW)
    with pytest.raises(SilenceError, match="in the past"):
        store.upsert(sil(start=NOW - 2 * H, end=NOW - H), NOW)


def test_refused_replacement_leaves_the_old_silence_alone() -> None:
    # An update that would replace an active silence by one ending in the past is refused
    # before the old one is expired (AM expires first, then fails validation).
    store = Silences()
    sid = store.upsert(sil(), NOW)
    bad = sil('{alertname="Other"}', start=NOW - 2 * H, end=NOW - H)
    bad.id = sid
    with pytest.raises(SilenceError, match="in the past"):
        store.upsert(bad, NOW + 60)
    kept = store.get(sid)
    assert kept is not None and kept.state(NOW + 60) == "active" and len(store) == 1


def test_limit_counts_silences_not_yet_expired() -> None:
    store = Silences(limit=2)
    first = store.upsert(sil('{a="1"}'), NOW)
    store.upsert(sil('{a="2"}'), NOW)
    with pytest.raises(SilenceError, match="too many"):
        store.upsert(sil('{a="3"}'), NOW)
    store.expire(first, NOW + 1)
    store.upsert(sil('{a="3"}', end=NOW + 2 * H), NOW + 2)


def test_silenced_by_scales_with_labels_not_silences() -> None:
    # 20k silences on distinct instances; each lookup checks only its candidates.
    store = Silences(limit=50_000)
    for i in range(20_000):
        store.upsert(sil(f'{{instance="host-{i}", alertname="Down"}}'), NOW)
    t0 = time.perf_counter()
    for i in range(0, 20_000, 10):
        assert len(store.silenced_by({"alertname": "Down", "instance": f"host-{i}"}, NOW)) == 1
    assert time.perf_counter() - t0 < 1.0


DATA = Path(__file__).parent / "data" / "alertmanager.yml"


@pytest.fixture(scope="module")
def real_alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Alertmanager with the sample config on a free loopback port (its API URL)."""
    with alertmanager(DATA, tmp_path_factory.mktemp("am")) as url:
        yield url


def live_postable(now: float, **over: Any) -> dict[str, Any]:
    doc = {**postable(), "startsAt": rfc3339(now), "endsAt": rfc3339(now + H)}
    doc.update(over)
    return {k: v for k, v in doc.items() if v is not None}


# (overrides relative to now) -- Alertmanager's own answer decides accept/refuse.
LIVE = [
    {},
    {"matchers": [{"name": "x", "value": ".*", "isRegex": True}]},
    {"matchers": [{"name": "x", "value": "", "isRegex": False}]},
    {"matchers": [{"name": "x", "value": "a", "isRegex": False, "isEqual": False}]},
    {"matchers": [{"name": "x", "value": "a+", "isRegex": True, "isEqual": False}]},
    {"matchers": [{"name": "x", "value": "(", "isRegex": True}]},
    {"matchers": []},
    {"endsAt": -1.0},  # end before start
    {"endsAt": 0.0},  # end == start
    {"startsAt": -2 * H, "endsAt": -H},  # end in the past
    {"startsAt": -2 * H},  # start in the past: accepted (clamped to now)
    {"comment": None},
    {"createdBy": None},
    {"createdBy": ""},  # present but empty: accepted
]


@pytest.mark.parametrize("over", LIVE)
def test_validation_agrees_with_real_alertmanager(
    real_alertmanager: str, over: dict[str, Any]
) -> None:
    now = time.time()
    times = {k: rfc3339(now + v) for k, v in over.items() if k in ("startsAt", "endsAt")}
    doc = live_postable(now, **{**over, **times})
    for key, value in over.items():
        if value is None:
            doc.pop(key, None)
    am = httpx.post(f"{real_alertmanager}/api/v2/silences", json=doc)
    try:
        silence_from_api(doc, now)
        ours = True
    except SilenceError:
        ours = False
    assert ours is (am.status_code == 200), am.text


def test_update_rules_agree_with_real_alertmanager(real_alertmanager: str) -> None:
    # The same sequence of posts to Alertmanager and to keiko: whether each keeps the id.
    url = f"{real_alertmanager}/api/v2/silences"
    store = Silences()

    def post_both(doc: dict[str, Any], am_id: str, our_id: str) -> tuple[str, str]:
        am = httpx.post(url, json={**doc, "id": am_id} if am_id else doc)
        assert am.status_code == 200, am.text
        now = time.time()
        ours = store.upsert(silence_from_api({**doc, "id": our_id} if our_id else doc, now), now)
        return am.json()["silenceID"], ours

    now = time.time()
    am_id, our_id = post_both(live_postable(now), "", "")
    am_start = httpx.get(url.removesuffix("s") + f"/{am_id}").json()["startsAt"]
    mine = store.get(our_id)
    assert mine is not None

    def same_start(start: str, **over: Any) -> dict[str, Any]:
        return live_postable(now, startsAt=start, endsAt=rfc3339(now + 2 * H), **over)

    # extend an active silence with the same start: both keep the id
    am_new = httpx.post(url, json={**same_start(am_start), "id": am_id}).json()["silenceID"]
    t = time.time()
    ours_new = store.upsert(
        silence_from_api({**same_start(rfc3339(mine.starts_at)), "id": our_id}, t), t
    )
    assert (am_new == am_id, ours_new == our_id) == (True, True)
    # change the matchers: both expire the old silence and answer a new id
    other = [{"name": "alertname", "value": "Other", "isRegex": False}]
    am_new = httpx.post(url, json={**same_start(am_start, matchers=other), "id": am_id}).json()[
        "silenceID"
    ]
    t = time.time()
    ours_new = store.upsert(
        silence_from_api({**same_start(rfc3339(mine.starts_at), matchers=other), "id": our_id}, t),
        t,
    )
    assert (am_new == am_id, ours_new == our_id) == (False, False)
    time.sleep(0.01)
    old = store.get(our_id)
    assert old is not None and old.state(time.time()) == "expired"
    am_old = httpx.get(url.removesuffix("s") + f"/{am_id}").json()
    assert am_old["status"]["state"] == "expired"
    # an unknown id: Alertmanager 404, keiko KeyError
    ghost = "00000000-0000-0000-0000-000000000000"
    assert httpx.post(url, json={**live_postable(now), "id": ghost}).status_code == 404
    with pytest.raises(KeyError):
        store.upsert(silence_from_api({**live_postable(now), "id": ghost}, now), now)
