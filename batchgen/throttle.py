"""One throttle budget for the whole run: every API request waits its turn here.

``Throttle`` wraps aiolimiter's leaky bucket and adds what the bucket does not do: after a 429
every caller pauses until the service's ``Retry-After`` has passed, and the rate is halved, then
recovers a little with every success (AIMD), so a run settles just under the service's limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiolimiter import AsyncLimiter

#: Longest pause a Retry-After may impose (seconds); longer values are clipped.
MAX_RETRY_AFTER = 120.0
#: Pause after a 429 that did not say how long to wait (seconds).
DEFAULT_BACKOFF = 2.0


class Throttle:
    """Requests per second for every endpoint together, slowed down by 429s.

    >>> throttle = Throttle(5.0)
    >>> await throttle.acquire()  # before each HTTP request
    """

    __slots__ = ("rate", "current_rate", "paused_until", "_limiter", "_limiter_rate", "_clock")

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        #: The configured rate (requests per second).
        self.rate = rate
        #: The rate in force now: lower than ``rate`` after 429s, recovering with successes.
        self.current_rate = rate
        #: Clock time before which nobody may send (set by a Retry-After).
        self.paused_until = 0.0
        self._limiter: AsyncLimiter | None = None  # created lazily inside the running loop
        self._limiter_rate = 0.0  # the rate ``_limiter`` was built for
        self._clock = clock

    async def acquire(self) -> None:
        """Wait until one more request may be sent."""
        while True:
            wait = self.paused_until - self._clock()
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        if self._limiter is None or self._limiter_rate != self.current_rate:
            # A bucket of one request: no start-up burst, one request every 1/rate seconds.
            self._limiter = AsyncLimiter(1, 1.0 / self.current_rate)
            self._limiter_rate = self.current_rate
        await self._limiter.acquire()

    def on_rate_limited(self, retry_after: float | None) -> None:
        """A 429: everyone pauses for ``retry_after`` seconds, and the rate is halved."""
        pause = (
            DEFAULT_BACKOFF if retry_after is None else min(max(retry_after, 0.0), MAX_RETRY_AFTER)
        )
        self.paused_until = max(self.paused_until, self._clock() + pause)
        self.current_rate = decreased(self.current_rate, self.rate)

    def on_success(self) -> None:
        """A request went through: creep back towards the configured rate."""
        if self.current_rate < self.rate:
            self.current_rate = increased(self.current_rate, self.rate)

    def __repr__(self) -> str:
        paused = max(0.0, self.paused_until - self._clock())
        return (
            f"Throttle(rate={self.rate:g}, current_rate={self.current_rate:.3g}, "
            f"paused_for={paused:.2f}s)"
        )


def decreased(current: float, configured: float) -> float:
    """Multiplicative decrease after a 429, never below 1/20 of the configured rate."""
    return max(current * 0.5, configured / 20)


def increased(current: float, configured: float) -> float:
    """Additive increase after a success: 5% of the configured rate, up to it."""
    return min(configured, current + configured * 0.05)
