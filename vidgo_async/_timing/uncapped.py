"""The submits' limiter when nothing caps them, and the choice of a client's limiters."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time

from .._config import RetryPolicy
from ..errors import ClientClosedError
from .limits import Limiter, Quota, RateLimiter, Slot

__all__ = ["Uncapped", "limiters_for"]


class Uncapped:
    """The submits' limiter when nothing caps them (no shared quota's cap): every submit
    goes at once, unless a 429 answered one. Then every submit of the client waits for
    its ``Retry-After`` (at most :class:`holding`'s cap), or, naming none, as long as a
    retry's first pause may be (``base_delay``), and twice as long at each such 429
    until a submit goes through (up to ``max_delay``): a batch's other pairs do not go
    on meeting the limit, and a 429 now and then costs a short pause only."""

    __slots__ = ("_closed", "_first", "_longest", "_next", "_paused", "_refused", "_slot")

    rate = math.inf

    def __init__(self, retry: RetryPolicy) -> None:
        self._first, self._longest = retry.base_delay, retry.max_delay
        self._paused = 0.0
        self._next = self._first  # the pause after the next 429 that names no delay
        self._refused = False  # a back-off since the last slot's release
        self._closed = asyncio.Event()
        self._slot = _Attempt(self)

    async def acquire(self, timeout: float | None = None) -> Slot:
        """Wait for a pause to end, at most ``timeout`` seconds.

        Raises:
            TimeoutError: The pause outlasts ``timeout``.
            ClientClosedError: The client was closed meanwhile.
        """
        until = None if timeout is None else time.monotonic() + timeout
        while not self._closed.is_set():
            now = time.monotonic()
            if now >= self._paused:
                return self._slot
            if until is not None and now >= until:
                raise TimeoutError
            end = self._paused if until is None else min(self._paused, until)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), end - now)
        raise ClientClosedError("the client was closed")

    def slow_down(self, seconds: float) -> None:
        """Let no submit start for ``seconds`` from now."""
        self._paused = max(self._paused, time.monotonic() + seconds)

    def back_off(self) -> None:
        """A 429 named no delay: let no submit start for the next pause, and double the
        one after. A 429 during a pause answers a submit sent before it: nothing new."""
        self._refused = True  # read by the release that follows, of the same submit
        now = time.monotonic()
        if now >= self._paused:
            self._paused = now + self._next
            self._next = min(self._longest, 2 * self._next)

    def answered(self) -> None:
        """A submit's slot was released (:class:`holding` backs off first, if it must):
        one that met no such 429 went through, and the pauses start short again."""
        if not self._refused:
            self._next = self._first
        self._refused = False

    def close(self) -> None:
        """End every pending :meth:`acquire` with :class:`ClientClosedError`."""
        self._closed.set()


class _Attempt:
    """The slot of every submit under an :class:`Uncapped`: nothing to count, but its
    release tells whether the limit let a submit through."""

    __slots__ = ("_limiter",)

    def __init__(self, limiter: Uncapped) -> None:
        self._limiter = limiter

    async def leaving(self, timeout: float | None) -> None:
        """Nothing to swap."""

    def release(self) -> None:
        """The submit is over."""
        self._limiter.answered()


def limiters_for(quota: object, rate: float, retry: RetryPolicy) -> tuple[Limiter, Limiter]:
    """The client's limiters of status requests and of submits: its own, or a shared
    quota's (a quota that caps no submits: :class:`Uncapped` ones).

    Raises:
        TypeError: ``quota`` is not a quota.
    """
    if quota is None:
        return RateLimiter(rate), Uncapped(retry)
    if not isinstance(quota, Quota):
        raise TypeError(f"quota must be a SharedQuota, got {type(quota).__name__}")
    return quota.poll_limiter(rate), quota.submit_limiter() or Uncapped(retry)
