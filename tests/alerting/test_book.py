"""Alertmanager's merge of re-sent alerts (types.Alert.Merge), as the alert book does it."""

from __future__ import annotations

from alerting.engine.book import AlertBook
from alerting.model import Alert

NOW = 1_000_000.0


def alert(starts: float, ends: float = 0.0) -> Alert:
    return Alert(labels={"alertname": "X"}, starts_at=starts, ends_at=ends)


def test_a_later_explicit_end_is_kept_while_firing() -> None:
    # Two Prometheus replicas: one says "until +240 s", the other, a little behind, "+230 s".
    book = AlertBook(resolve_timeout=300, max_alerts=10)
    book.put(alert(NOW - 60, NOW + 240), NOW)
    held, change = book.put(alert(NOW - 50, NOW + 230), NOW + 1)
    assert held is not None and change is None
    assert held.ends_at == NOW + 240 and held.starts_at == NOW - 60


def test_a_resolve_timeout_end_gives_way_to_the_senders() -> None:
    book = AlertBook(resolve_timeout=300, max_alerts=10)
    book.put(alert(NOW - 60), NOW)  # no endsAt: resolve_timeout
    held, _ = book.put(alert(NOW - 60, NOW + 100), NOW + 1)
    assert held is not None and held.ends_at == NOW + 100 and not held.timeout


def test_resolution_wins_and_the_latest_resolution_stays() -> None:
    book = AlertBook(resolve_timeout=300, max_alerts=10)
    book.put(alert(NOW - 60, NOW + 240), NOW)
    held, change = book.put(alert(NOW - 60, NOW - 1), NOW)  # resolved explicitly
    assert held is not None and change is not None and change.status == "resolved"
    assert held.ends_at == NOW - 1
    held, change = book.put(alert(NOW - 60, NOW - 5), NOW + 1)  # an older resolution
    assert held is not None and held.ends_at == NOW - 1 and change is None
