"""A circuit breaker per target: closed -> open after N consecutive failures -> half-open
(one probe) after a cooldown -> closed on success, open again on failure.

Each target's items are delivered one at a time, so "one probe" is simply the next attempt
after the cooldown; the breaker's job is to stretch the wait while a receiver is down and
to make the state visible (metric, one log line per change)."""

from __future__ import annotations

import logging
from enum import IntEnum

log = logging.getLogger(__name__)


class State(IntEnum):
    """Exported as ``keiko_outbox_circuit_state``."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class Breaker:
    """The breaker of one target; times are monotonic seconds."""

    def __init__(self, target: str, failures: int, cooldown: float) -> None:
        self.target = target
        self.failures = failures
        self.cooldown = cooldown
        self.state = State.CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self.transitions = 0

    def wait(self, now: float) -> float:
        """Seconds until an attempt may be made (0 when closed or half-open)."""
        if self.state is not State.OPEN:
            return 0.0
        left = self.opened_at + self.cooldown - now
        if left <= 0:
            self._set(State.HALF_OPEN, "cooldown over: one probe delivery")
            return 0.0
        return left

    def success(self) -> None:
        """A delivery went through."""
        self.consecutive = 0
        if self.state is not State.CLOSED:
            self._set(State.CLOSED, "delivery succeeded")

    def failure(self, now: float, reason: str) -> None:
        """A delivery failed retryably (``reason`` already redacted)."""
        self.consecutive += 1
        if self.state is State.HALF_OPEN or (
            self.state is State.CLOSED and self.consecutive >= self.failures
        ):
            self.opened_at = now
            why = f"{self.consecutive} consecutive failures, last: {reason}"
            self._set(State.OPEN, f"{why}; next probe in {self.cooldown:g}s")

    def _set(self, state: State, why: str) -> None:
        old, self.state = self.state, state
        self.transitions += 1
        # Opening and closing are news; the probe cycle of a receiver that stays down
        # (open -> half-open -> open every cooldown) would flood the log, so it is DEBUG.
        if State.HALF_OPEN in (old, state) and state is not State.CLOSED:
            level = logging.DEBUG
        else:
            level = logging.WARNING if state is State.OPEN else logging.INFO
        log.log(
            level,
            "outbox: target %r circuit %s -> %s (%s)",
            self.target,
            old.name.lower(),
            state.name.lower(),
            why,
        )
