"""The outbox's retry policy alone: full-jitter backoff bounds and Retry-After, the circuit
breaker's transitions, config defaults and refusals."""

from __future__ import annotations

import logging
import random

import pytest
from pydantic import ValidationError

from alerting.outbox import OutboxConfig
from alerting.outbox.backoff import RETRY_AFTER_CAP, retry_delay
from alerting.outbox.breaker import Breaker, State
from alerting.outbox.dedup import key_part
from alerting.outbox.lane import group_name


def test_backoff_is_full_jitter_under_a_doubling_ceiling() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0), (10, 300.0), (80, 300.0)]:
        delays = [retry_delay(attempt, 1.0, 300.0, rng=rng) for _ in range(200)]
        assert min(delays) >= 0.0 and max(delays) <= ceiling
        assert max(delays) > ceiling * 0.8  # spread over the whole range, not clustered
        assert min(delays) < ceiling * 0.2


def test_retry_after_is_a_lower_bound_capped() -> None:
    assert retry_delay(1, 1.0, 300.0, retry_after=42.0) >= 42.0
    assert retry_delay(1, 1.0, 300.0, retry_after=1e9) == RETRY_AFTER_CAP


def test_breaker_opens_probes_and_closes(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="alerting.outbox.breaker")
    b = Breaker("ops", failures=3, cooldown=30.0)
    for k in range(2):
        b.failure(float(k), "refused")
        assert b.state is State.CLOSED and b.wait(float(k)) == 0
    b.failure(2.0, "refused")
    assert b.state is State.OPEN and b.wait(12.0) == pytest.approx(20.0)
    assert b.wait(32.0) == 0 and b.state is State.HALF_OPEN  # one probe
    b.failure(32.5, "still refused")
    assert b.state is State.OPEN and b.wait(33.0) == pytest.approx(29.5)
    assert b.wait(63.0) == 0
    b.success()
    assert b.state is State.CLOSED and b.consecutive == 0
    # Opened and closed at INFO+ (the probe cycle in between is DEBUG); none per failure.
    changes = [(r.levelname, r.getMessage().split("(")[0]) for r in caplog.records]
    assert changes == [
        ("WARNING", "outbox: target 'ops' circuit closed -> open "),
        ("INFO", "outbox: target 'ops' circuit half_open -> closed "),
    ]
    assert b.transitions == 5


def test_config_defaults_and_refusals() -> None:
    c = OutboxConfig()
    assert (c.retry_base, c.retry_max, c.max_age, c.dedup_ttl) == (1.0, 300.0, 86400.0, 604800.0)
    assert OutboxConfig.model_validate({"max_age": "1h", "timeout": "3s"}).max_age == 3600.0
    with pytest.raises(ValidationError, match="retries"):
        OutboxConfig.model_validate({"retries": 3})
    with pytest.raises(ValidationError, match="breaker_failures"):
        OutboxConfig.model_validate({"breaker_failures": 0})


def test_names_safe_for_every_backend() -> None:
    assert group_name("ops-team") == "outbox-ops-team"
    odd = group_name("ops team/EU")
    assert odd.startswith("outbox-h") and " " not in odd and "/" not in odd
    assert key_part("n-1.0") == "n-1.0"
    assert key_part("a..b") != "a..b" and key_part("a..b") == key_part("a..b")
