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
from .limits import Held, Limiter, Quota, RateLimiter, Slot

__all__ = ["Uncapped", "limiters_for"]

_PATIENCE = 2.0  # seconds the others wait for the answer of the first submit after a pause


class Uncapped:
    """The submits' limiter when nothing caps them (no shared quota's cap): every submit
    goes at once, unless a 429 answered one. Then every submit of the client waits for
    its ``Retry-After`` (at most :class:`holding`'s cap), or, naming none, for a pause
    of the retry schedule's (``base_delay``, doubling up to ``max_delay`` until a submit
    goes through): a batch's other pairs do not go on meeting the limit, and a 429 now
    and then costs a short pause only.

    After a pause one submit goes first, alone; the others follow once it is answered
    (another 429: another pause), or after ``_PATIENCE`` if its answer is slow. A limit
    that still holds then costs one refused submit, not one per waiting caller (a
    circuit breaker's half-open state)."""

    __slots__ = (
        "_closed",
        "_first",
        "_longest",
        "_paused",
        "_pauses",
        "_probe",
        "_probe_until",
        "_wake",
    )

    rate = math.inf

    def __init__(self, retry: RetryPolicy) -> None:
        self._first, self._longest = retry.base_delay, retry.max_delay
        self._paused = 0.0  # no submit starts before
        # The pauses after 429s naming no delay, since a submit last went through.
        self._pauses: Generator[float, None, None] | None = None
        self._probe = False  # the first submit after the pause goes alone
        self._probe_until = 0.0  # ... and the others wait for its answer until then
        self._closed = False
        self._wake = asyncio.Event()  # set when a probe is answered, or on close

    async def acquire(self, timeout: float | None = None) -> Slot:
        """Wait for a pause (and the submit that goes first after it) to end, at most
        ``timeout`` seconds.

        Raises:
            TimeoutError: The wait outlasts ``timeout``.
            ClientClosedError: The client was closed meanwhile.
        """
        until = math.inf if timeout is None else time.monotonic() + timeout
        while not self._closed:
            now = time.monotonic()
            if now >= max(self._paused, self._probe_until):
                if not self._probe:
                    return Held(_free)  # nothing to count
                self._probe, self._probe_until = False, now + _PATIENCE
                return Held(self._answered)  # its release lets the others go
            if now >= until:
                raise TimeoutError
            end = min(until, max(self._paused, self._probe_until))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), end - now)
        raise ClientClosedError("the client was closed")

    def slow_down(self, seconds: float) -> None:
        """Let no submit start for ``seconds`` from now."""
        self._paused = max(self._paused, time.monotonic() + seconds)
        self._probe = True

    def back_off(self) -> None:
        """A 429 named no delay: let no submit start for the next pause of the schedule.
        A 429 during a pause answers a submit sent before it: nothing new."""
        now = time.monotonic()
        if now >= self._paused:
            if self._pauses is None:
                self._pauses = backoff.expo(factor=self._first, max_value=self._longest)
                next(self._pauses)  # past expo's priming yield
            self._paused = now + next(self._pauses)
            self._probe = True

    def went_through(self) -> None:
        """A submit went through: the next 429 naming no delay starts the pauses short."""
        self._pauses = None

    def close(self) -> None:
        """End every pending :meth:`acquire` with :class:`ClientClosedError`."""
        self._closed = True
        self._signal()

    def _answered(self) -> None:
        """The submit that went first after a pause was answered: the others may go
        (unless its answer was a 429, which paused them again)."""
        self._probe_until = 0.0
        self._signal()

    def _signal(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()


def _free() -> None:
    """The release of a slot of :class:`Uncapped` outside a pause: nothing to give back."""


def limiters_for(
    quota: object, rate: float, submit_rate: float | None, retry: RetryPolicy
) -> tuple[Limiter, Limiter]:
    """The client's limiters of status requests and of submits: its own (``rate``, and
    ``submit_rate`` if given, else :class:`Uncapped`), or a shared quota's (a quota that
    caps no submits: :class:`Uncapped` ones).

    Raises:
        TypeError: ``quota`` is not a quota.
    """
    if quota is None:
        submits = Uncapped(retry) if submit_rate is None else RateLimiter(submit_rate)
        return RateLimiter(rate), submits
    if not isinstance(quota, Quota):
        raise TypeError(f"quota must be a SharedQuota, got {type(quota).__name__}")
    return quota.poll_limiter(rate), quota.submit_limiter() or Uncapped(retry)
