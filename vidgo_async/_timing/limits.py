"""Client-wide rate limits: the cap on status requests per second (and, shared, on submits).

:class:`Limiter` is the seam the reads (and, under a shared quota, the
submits) take their slots through: :class:`RateLimiter` in one process, or a
limiter leasing from a :class:`Quota` shared by several
(``vidgo_async.postgres.SharedQuota``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import math
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs

from ..errors import ClientClosedError, RateLimitError, RequestTimeoutError
from .grants import Grants

__all__ = [
    "MIN_SHARE",
    "RECOVERY",
    "Halvings",
    "Held",
    "Limiter",
    "Quota",
    "RateLimiter",
    "Slot",
    "heard",
    "holding",
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


class Halvings:
    """When a back-off halves a rate: once a window, since the 429s answering requests
    sent before the last halving say nothing new (as TCP halves once a round trip)."""

    __slots__ = ("_at", "_window")

    def __init__(self, window: float) -> None:
        self._window = window
        self._at = -math.inf

    def due(self, now: float) -> bool:
        """Whether a back-off at ``now`` halves the rate (it then counts as the last)."""
        if now - self._at < self._window:
            return False
        self._at = now
        return True


class Slot(Protocol):
    """One request's place under a :class:`Limiter`, held until the request is over."""

    async def leaving(self, timeout: float | None) -> None:
        """Called as the request leaves: a slot that may no longer go is swapped for
        a fresh one first, within ``timeout`` seconds.

        Raises:
            TimeoutError: No fresh slot came within ``timeout``.
        """

    def release(self) -> None:
        """The request was answered, failed, or never left; safe to call twice."""


class Limiter(Protocol):
    """A cap on requests per second that every request takes a slot under.

    The cap holds where the server counts, on the wire: a slot counts from
    its grant until one window after its :meth:`Slot.release`, so that a
    request that leaves late (a loop stall, a connection still opening, a
    queue on the way) can never bunch up with the next window's. The
    caller releases the slot once the request's answer (or failure) is in.
    """

    @property
    def rate(self) -> float:
        """The cap, in requests per second."""

    async def acquire(self, timeout: float | None = None) -> Slot:
        """Wait for a slot, at most ``timeout`` seconds.

        Raises:
            TimeoutError: No slot came within ``timeout``.
            ClientClosedError: The limiter was closed meanwhile.
            VidgoError: A shared limiter could not reach its store (the
                request was not sent).
        """

    def slow_down(self, seconds: float) -> None:
        """Let no request start for ``seconds`` from now (after a 429 with Retry-After)."""

    def back_off(self) -> None:
        """Lower the rate for a while (after a 429 that named no delay), at most once
        a window."""

    def went_through(self) -> None:
        """A request under it was answered with data (a back-off may end sooner)."""

    def close(self) -> None:
        """End every pending :meth:`acquire` with :class:`ClientClosedError`."""


@runtime_checkable
class Quota(Protocol):
    """A quota shared with other clients and processes (``VidgoClient(quota=...)``)."""

    def poll_limiter(self, rate: float) -> Limiter:
        """A limiter of status requests, ``rate`` per second among all sharers."""

    def submit_limiter(self) -> Limiter | None:
        """A limiter of submits, or None when submits are not capped."""


class holding:
    """Hold a slot of ``limiter`` (None: no cap) for the life of one request; the
    transport calls its :meth:`Slot.leaving` as the request leaves. A 429 met under
    it holds every request back for its ``Retry-After`` (at most ``cap``), or halves
    the rate when it named no delay.

    A class with slots, not an ``asynccontextmanager``: every pending wait sits in
    one while it queues for a slot, and a generator's frame there costs ~0.5 KiB a
    wait (``benchmarks/scale.py``: 4.08 KiB a wait instead of 3.56 at 100,000).

    Raises (on entry):
        RequestTimeoutError: No slot came within ``timeout``; nothing was sent.
    """

    __slots__ = ("_cap", "_limiter", "_slot", "_timeout", "_what")

    def __init__(
        self, limiter: Limiter | None, timeout: float | None, what: str, cap: float
    ) -> None:
        self._cap = cap
        self._limiter = limiter
        self._timeout = timeout
        self._what = what
        self._slot: Slot | None = None

    async def __aenter__(self) -> Slot | None:
        if self._limiter is not None:
            try:
                self._slot = await self._limiter.acquire(self._timeout)
            except TimeoutError:
                raise RequestTimeoutError(
                    f"deadline reached before {self._what}", sent=False
                ) from None
        return self._slot

    def hand_over(self) -> Slot | None:
        """The slot, now the caller's to release (its request outlives this block)."""
        slot, self._slot = self._slot, None
        return slot

    async def __aexit__(self, kind: object, exc: BaseException | None, trace: object) -> None:
        try:
            if not isinstance(exc, asyncio.CancelledError):  # an answer: what does it say
                heard(self._limiter, exc, self._cap)
        finally:
            if self._slot is not None:
                self._slot.release()


def heard(limiter: Limiter | None, exc: BaseException | None, cap: float) -> None:
    """Tell ``limiter`` what a request's answer says: it went through (``exc`` None), or
    a 429 holds every request back for its ``Retry-After`` (at most ``cap``), or halves
    the rate when it named no delay. (Before the slot is released: its waiters see it.)"""
    if limiter is None:
        return
    if exc is None:
        limiter.went_through()
    elif isinstance(exc, RateLimitError):
        if exc.retry_after is not None:
            limiter.slow_down(min(exc.retry_after, cap))
        else:
            limiter.back_off()


@attrs.define(slots=True)
class Held:
    """A slot that only counts (a :class:`RateLimiter`'s grants are anonymous; so are
    :class:`~.uncapped.Uncapped`'s): its first release tells its limiter, by ``on_release``."""

    _on_release: Callable[[], None]
    _released: bool = False

    async def leaving(self, timeout: float | None) -> None:
        """Nothing to do: the slot counts until its release, however late it leaves."""

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._on_release()


class RateLimiter:
    """A client-wide cap on requests per second, over a sliding window.

    At most ``limit`` slots in any ``window`` seconds (``rate`` per second,
    windows of at least one second), first come first served. A slot counts
    while its request is under way and for one window after its release
    (:class:`Limiter` says why); released slots are kept as their release
    times. A request goes at once while there is room and nobody queues;
    otherwise it queues and one timer hands out grants as old releases leave
    the window (or a release comes, when every slot is under way). Queued
    requests that are cancelled or time out take nothing, and a stall never
    lets more than ``limit`` through in a window. ``slow_down`` holds every
    grant back, which is how one 429 slows the whole client.
    """

    __slots__ = (
        "_busy",
        "_halvings",
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
        self._times: collections.deque[float] = collections.deque()  # releases, in order
        self._busy = 0  # slots granted and not yet released
        self._paused = 0.0
        self._share = 1.0  # of the rate in force, below 1 after back_off()
        self._shared_at = 0.0
        self._halvings = Halvings(self._window)
        self._waiting: Grants[Held] = Grants(self._arm, self._give_back)
        self._timer: asyncio.TimerHandle | None = None

    async def acquire(self, timeout: float | None = None) -> Slot:
        """Wait for a slot, at most ``timeout`` seconds.

        Raises:
            TimeoutError: No slot came within ``timeout``.
            ClientClosedError: The client was closed meanwhile.
        """
        if not self._waiting and (slot := self._take(time.monotonic())) is not None:
            return slot
        return await self._waiting.wait(timeout)

    def back_off(self) -> None:
        """Halve the rate after a 429 that named no delay (once a window: :class:`Halvings`);
        it recovers by 10 % a second."""
        now = time.monotonic()
        if self._halvings.due(now):
            self._share = max(MIN_SHARE, self._current_share(now) / 2)
            self._shared_at = now

    def went_through(self) -> None:
        """Nothing to do: a back-off recovers with time."""

    def _current_share(self, now: float) -> float:
        if self._share >= 1.0:
            return 1.0
        return min(1.0, self._share + (now - self._shared_at) * RECOVERY)

    def slow_down(self, seconds: float) -> None:
        """Let no request start for ``seconds`` from now."""
        self._paused = max(self._paused, time.monotonic() + seconds)
        self._rearm()

    def close(self) -> None:
        """End every queued request with :class:`ClientClosedError`."""
        self._disarm()
        self._waiting.fail(lambda: ClientClosedError("the client was closed"))

    def _take(self, now: float) -> Held | None:
        if now < self._paused:
            return None
        times = self._times
        while times and now - times[0] >= self._window:
            times.popleft()
        if len(times) + self._busy >= self._effective_limit(now):
            return None
        self._busy += 1
        return Held(self._release)

    def _release(self) -> None:
        self._busy -= 1
        self._times.append(time.monotonic())
        if self._waiting and self._timer is None:
            # Every slot was under way: room now comes with this release's window.
            self._arm(asyncio.get_running_loop())

    def _give_back(self, _: Held) -> None:
        """A grant its waiter never took (cancelled as it came): nothing left, no stamp."""
        self._busy -= 1
        self._rearm()

    def _effective_limit(self, now: float) -> int:
        if self._share >= 1.0:
            return self._limit
        self._share = self._current_share(now)
        self._shared_at = now
        return max(1, int(self._limit * self._share))

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _rearm(self) -> None:
        """Time the next grant afresh: a pause or a grant given back moved it."""
        self._disarm()
        if self._waiting:
            self._arm(asyncio.get_running_loop())

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            return
        times, limit = self._times, self._effective_limit(time.monotonic())
        over = len(times) + self._busy - limit  # releases that must leave the window first
        if over >= len(times):
            return  # every slot is under way: the next release arms the timer
        due = self._paused
        if over >= 0:
            due = max(due, times[over] + self._window)
        self._timer = loop.call_later(max(0.0, due - time.monotonic()), self._grant)

    def _grant(self) -> None:
        self._timer = None
        now = time.monotonic()
        self._waiting.hand_out(functools.partial(self._take, now))
        if self._waiting:
            self._arm(asyncio.get_running_loop())
