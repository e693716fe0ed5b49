"""Client-wide limits: the cap on status requests per second, and the retry budget.

:class:`Limiter` is the seam the reads (and, under a shared quota, the
submits) take their slots through: :class:`RateLimiter` in one process, or a
limiter leasing from a :class:`Quota` shared by several
(``vidgo_async.postgres.SharedQuota``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs

from .._config import RetryPolicy
from ..errors import ClientClosedError

__all__ = [
    "MIN_SHARE",
    "RECOVERY",
    "Grants",
    "Limiter",
    "Quota",
    "RateLimiter",
    "RetryBudget",
    "after_refusal",
    "limiters_for",
    "window_of",
]

MAX_WINDOW = 10_000  # grants remembered by the rate limiter's sliding window
MIN_SHARE = 1 / 16  # a limiter never backs off below this share of its rate
RECOVERY = 0.1  # share of the rate won back per second after a back-off


def window_of(rate: float) -> tuple[int, float]:
    """The sliding window of a cap of ``rate`` per second: (grants, seconds).

    One second (longer for rates under 1/s), at most ``MAX_WINDOW`` grants.
    """
    limit = max(1, min(MAX_WINDOW, int(rate)))
    return limit, limit / rate


class Limiter(Protocol):
    """A cap on requests per second that every request takes a slot under."""

    @property
    def rate(self) -> float:
        """The cap, in requests per second."""

    async def acquire(self, timeout: float | None = None) -> None:
        """Wait for a slot, at most ``timeout`` seconds.

        Raises:
            TimeoutError: No slot came within ``timeout``.
            ClientClosedError: The limiter was closed meanwhile.
            VidgoError: A shared limiter could not reach its store (the
                request was not sent).
        """

    def try_acquire(self) -> bool:
        """Take a slot if one is free now; never waits."""

    def slow_down(self, seconds: float) -> None:
        """Let no request start for ``seconds`` from now (after a 429 with Retry-After)."""

    def back_off(self) -> None:
        """Lower the rate for a while (after a 429 that named no delay)."""

    def close(self) -> None:
        """End every pending :meth:`acquire` with :class:`ClientClosedError`."""


@runtime_checkable
class Quota(Protocol):
    """A quota shared with other clients and processes (``VidgoClient(quota=...)``)."""

    def poll_limiter(self, rate: float) -> Limiter:
        """A limiter of status requests, ``rate`` per second among all sharers."""

    def submit_limiter(self) -> Limiter | None:
        """A limiter of submits, or None when submits are not capped."""


def after_refusal(limiter: Limiter, retry_after: float | None, cap: float) -> None:
    """After a 429: hold every request back for its ``Retry-After`` (at most ``cap``),
    or halve the rate when it named no delay."""
    if retry_after is not None:
        limiter.slow_down(min(retry_after, cap))
    else:
        limiter.back_off()


class Grants:
    """The requests waiting for a limiter's grant, served first come, first served.

    A waiter that was cancelled or timed out stays queued until it reaches
    the front, where it takes nothing.
    """

    __slots__ = ("_queue",)

    def __init__(self) -> None:
        self._queue: collections.deque[asyncio.Future[None]] = collections.deque()

    def __len__(self) -> int:
        return len(self._queue)

    async def wait(
        self, timeout: float | None, serve: Callable[[asyncio.AbstractEventLoop], None]
    ) -> None:
        """Queue for a grant and wait for it, at most ``timeout`` seconds; ``serve(loop)``
        makes sure something will hand grants out.

        Raises:
            TimeoutError: No grant came within ``timeout``.
        """
        if timeout is not None and timeout <= 0:
            raise TimeoutError("no request slot before the deadline")
        loop = asyncio.get_running_loop()
        grant: asyncio.Future[None] = loop.create_future()
        self._queue.append(grant)
        serve(loop)
        expiry = None if timeout is None else loop.call_later(timeout, _expire, grant)
        try:
            await grant
        finally:
            if expiry is not None:
                expiry.cancel()

    def hand_out(self, take: Callable[[], bool]) -> None:
        """Grant the waiters in their order while ``take()`` finds room."""
        queue = self._queue
        while queue:
            if queue[0].done():  # cancelled or expired: takes nothing
                del queue[0]
            elif take():
                queue.popleft().set_result(None)
            else:
                break

    def fail(self, error: Callable[[], BaseException]) -> None:
        """End every waiter with an ``error()`` of its own (tracebacks do not pile up)."""
        while self._queue:
            grant = self._queue.popleft()
            if not grant.done():
                grant.set_exception(error())


class RateLimiter:
    """A client-wide cap on requests per second, over a sliding window.

    At most ``limit`` grants in any ``window`` seconds (``rate`` per second,
    windows of at least one second), first come first served: a request
    goes at once while the window has room and nobody queues; otherwise it
    queues and one timer hands out grants as old ones leave the window.
    Queued requests that are cancelled or time out take nothing, and a stall
    never lets more than ``limit`` through in a window. ``slow_down`` holds
    every grant back, which is how one 429 slows the whole client.
    """

    __slots__ = (
        "_limit",
        "_paused",
        "_share",
        "_shared_at",
        "_timer",
        "_times",
        "_waiting",
        "_window",
        "rate",
    )

    def __init__(self, rate: float) -> None:
        """``rate``: grants per second, a finite number > 0 (checked by the client)."""
        self.rate = rate
        self._limit, self._window = window_of(rate)
        self._times: collections.deque[float] = collections.deque()
        self._paused = 0.0
        self._share = 1.0  # of the rate in force, below 1 after back_off()
        self._shared_at = 0.0
        self._waiting = Grants()
        self._timer: asyncio.TimerHandle | None = None

    async def acquire(self, timeout: float | None = None) -> None:
        """Wait for a grant, at most ``timeout`` seconds.

        Raises:
            TimeoutError: No grant came within ``timeout``.
            ClientClosedError: The client was closed meanwhile.
        """
        if not self.try_acquire():
            await self._waiting.wait(timeout, self._arm)

    def try_acquire(self) -> bool:
        """Take a grant if one is free now and nobody queues; never waits."""
        return not self._waiting and self._take(time.monotonic())

    def back_off(self) -> None:
        """Halve the rate after a 429 that named no delay; it recovers by 10 % a second."""
        self._share = max(MIN_SHARE, self._current_share(time.monotonic()) / 2)
        self._shared_at = time.monotonic()

    def _current_share(self, now: float) -> float:
        if self._share >= 1.0:
            return 1.0
        return min(1.0, self._share + (now - self._shared_at) * RECOVERY)

    def slow_down(self, seconds: float) -> None:
        """Let no request start for ``seconds`` from now."""
        self._paused = max(self._paused, time.monotonic() + seconds)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiting:
            self._arm(asyncio.get_running_loop())

    def close(self) -> None:
        """End every queued request with :class:`ClientClosedError`."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._waiting.fail(lambda: ClientClosedError("the client was closed"))

    def _take(self, now: float) -> bool:
        if not self._room(now):
            return False
        self._times.append(now)
        return True

    def _room(self, now: float) -> bool:
        if now < self._paused:
            return False
        times = self._times
        while times and now - times[0] >= self._window:
            times.popleft()
        return len(times) < self._effective_limit(now)

    def _effective_limit(self, now: float) -> int:
        if self._share >= 1.0:
            return self._limit
        self._share = self._current_share(now)
        self._shared_at = now
        return max(1, int(self._limit * self._share))

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            return
        due = self._paused
        times, limit = self._times, self._effective_limit(time.monotonic())
        if len(times) >= limit:
            # Room comes when enough of the oldest grants have left the window.
            due = max(due, times[len(times) - limit] + self._window)
        self._timer = loop.call_later(max(0.0, due - time.monotonic()), self._grant)

    def _grant(self) -> None:
        self._timer = None
        now = time.monotonic()
        self._waiting.hand_out(functools.partial(self._take, now))
        if self._waiting:
            self._arm(asyncio.get_running_loop())


def _expire(grant: asyncio.Future[None]) -> None:
    if not grant.done():
        grant.set_exception(TimeoutError("no request slot before the deadline"))


@attrs.define
class RetryBudget:
    """A client-wide allowance of retries (after gRPC's retry throttling).

    Every retryable failure costs a token, every success earns
    ``ratio`` back; retries are allowed only while more than half the
    tokens remain. A dead API therefore sees a handful of retries, then one
    request per call, instead of ``max_attempts`` requests per call.
    """

    policy: RetryPolicy
    _tokens: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._tokens = self.policy.budget

    def allows_retry(self) -> bool:
        """Whether a retry may be made now."""
        return self._tokens > self.policy.budget / 2

    def record_failure(self) -> None:
        """Note a retryable failure."""
        self._tokens = max(0.0, self._tokens - 1)

    def record_success(self) -> None:
        """Note a successful answer."""
        self._tokens = min(self.policy.budget, self._tokens + self.policy.budget_ratio)


def limiters_for(quota: object, rate: float) -> tuple[Limiter, Limiter | None]:
    """The client's limiters of status requests and of submits: its own, or a shared quota's.

    Raises:
        TypeError: ``quota`` is not a quota.
    """
    if quota is None:
        return RateLimiter(rate), None
    if not isinstance(quota, Quota):
        raise TypeError(f"quota must be a SharedQuota, got {type(quota).__name__}")
    return quota.poll_limiter(rate), quota.submit_limiter()
