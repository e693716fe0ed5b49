"""The submits' limiter when nothing caps them, and the choice of a client's limiters."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Generator

import backoff

from .._config import RetryPolicy
from ..errors import ClientClosedError
from .limits import Limiter, Quota, RateLimiter, Slot

__all__ = ["Uncapped", "limiters_for"]


class Uncapped:
    """The submits' limiter when nothing caps them (no shared quota's cap): every submit
    goes at once, unless a 429 answered one. Then every submit of the client waits for
    its ``Retry-After`` (at most :class:`holding`'s cap), or, naming none, for a pause
    of the retry schedule's (``base_delay``, doubling up to ``max_delay`` until a submit
    goes through): a batch's other pairs do not go on meeting the limit, and a 429 now
    and then costs a short pause only. (The submits that waited resume together: their
    own retries are spread, and a 429 among them doubles the next pause.)"""

    __slots__ = ("_closed", "_first", "_longest", "_paused", "_pauses")

    rate = math.inf

    def __init__(self, retry: RetryPolicy) -> None:
        self._first, self._longest = retry.base_delay, retry.max_delay
        self._paused = 0.0  # no submit starts before
        # The pauses after 429s naming no delay, since a submit last went through.
        self._pauses: Generator[float, None, None] | None = None
        self._closed = asyncio.Event()

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
                return _FREE
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
        """A 429 named no delay: let no submit start for the next pause of the schedule.
        A 429 during a pause answers a submit sent before it: nothing new."""
        now = time.monotonic()
        if now >= self._paused:
            if self._pauses is None:
                self._pauses = backoff.expo(factor=self._first, max_value=self._longest)
                next(self._pauses)  # past expo's priming yield
            self._paused = now + next(self._pauses)

    def went_through(self) -> None:
        """A submit went through: the next 429 naming no delay starts the pauses short."""
        self._pauses = None

    def close(self) -> None:
        """End every pending :meth:`acquire` with :class:`ClientClosedError`."""
        self._closed.set()


class _Free:
    """A slot of :class:`Uncapped`: nothing to count."""

    async def leaving(self, timeout: float | None) -> None:
        """Nothing to swap."""

    def release(self) -> None:
        """Nothing to give back."""


_FREE = _Free()


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
