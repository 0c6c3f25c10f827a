"""The shared throttle: AIMD arithmetic and Retry-After pauses, with a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from batchgen.throttle import MAX_RETRY_AFTER, Throttle, decreased, increased


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_aimd_arithmetic() -> None:
    """Halve on 429 (never under 1/20 of the configured rate), +5% per success, capped."""
    assert decreased(10.0, 10.0) == 5.0
    assert decreased(0.6, 10.0) == 0.5
    assert increased(5.0, 10.0) == 5.5
    assert increased(9.9, 10.0) == 10.0


def test_rate_limited_pauses_everyone_and_recovers() -> None:
    """A 429 sets a pause for everyone and cuts the rate; successes bring it back."""
    clock = FakeClock()
    throttle = Throttle(10.0, clock=clock)
    throttle.on_rate_limited(3.0)
    assert throttle.paused_until == 103.0
    assert throttle.current_rate == 5.0
    for _ in range(10):
        throttle.on_success()
    assert throttle.current_rate == 10.0
    throttle.on_rate_limited(None)
    assert throttle.paused_until == 103.0  # a shorter default pause never shortens a longer one
    throttle.on_rate_limited(10_000)
    assert throttle.paused_until == clock.now + MAX_RETRY_AFTER
    assert "current_rate" in repr(throttle)


def test_rate_must_be_positive() -> None:
    """A zero or negative rate is a usage error."""
    with pytest.raises(ValueError):
        Throttle(0)


async def test_acquire_waits_out_a_pause() -> None:
    """acquire() does not return before the pause set by a Retry-After has passed."""
    loop = asyncio.get_running_loop()
    throttle = Throttle(100.0, clock=loop.time)
    throttle.on_rate_limited(0.2)
    started = loop.time()
    await throttle.acquire()
    assert loop.time() - started >= 0.19


async def test_acquire_spaces_requests_without_a_burst() -> None:
    """Five requests at 50/s take at least 4 intervals: no start-up burst."""
    loop = asyncio.get_running_loop()
    throttle = Throttle(50.0)
    started = loop.time()
    for _ in range(5):
        await throttle.acquire()
    assert loop.time() - started >= 4 / 50 * 0.9
