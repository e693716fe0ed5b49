"""A limiter that spends tokens leased from a store shared by several processes.

The store (``store.py``) hands out *leases*: ``k`` tokens to be spent from
the lease's start (now, or a little later when the window is full) for at
most ``seconds``, on the store's clock. The limiter spends them here, first
come first served, and goes back to the store only when they are spent,
expired, or dropped after a 429: a round trip per lease, not per request.

Why the cap holds on the wire, whatever the lease size: the store counts a
lease's tokens from its start until one window after it ends, and starts
nothing that would put more than ``limit`` tokens in any window-long span.
Here, a lease told to start in ``wait`` seconds is used from ``wait`` after
its answer *arrived* (so never before its start on the store's clock) until
``wait + seconds`` after its request *left* (so never after its end). When a
lease is spent or dropped early, the next request reports how long after
that local origin the last token went (:class:`Spent`), and the store ends
it there, so that a busy process does not hold the window for tokens it
already used.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import functools
import math
import time
from collections.abc import Callable
from typing import Protocol

import attrs

from .._timing.limits import Grants
from ..errors import ClientClosedError, TransportError, VidgoError

__all__ = ["Lease", "LeaseSource", "LeasedLimiter", "Spent"]


@attrs.frozen
class Lease:
    """What the store granted: ``tokens`` under ``lease_id`` from ``wait`` seconds on
    (none: ask again after ``wait`` seconds)."""

    lease_id: int | None
    tokens: int
    wait: float = 0.0


@attrs.frozen
class Spent:
    """A lease that ended early: its last token went ``after`` seconds after its start."""

    lease_id: int
    after: float


class LeaseSource(Protocol):
    """The shared store, as one limiter sees it (one namespace, one kind of request)."""

    async def lease(self, want: int, seconds: float, spent: Spent | None) -> Lease:
        """Up to ``want`` tokens for ``seconds`` from now or soon; ``spent`` ends the last lease.

        Raises:
            VidgoError: The store could not be reached (nothing was granted).
        """

    def pause(self, seconds: float) -> None:
        """Tell every sharer to start no request for ``seconds`` (in the background)."""

    def back_off(self) -> None:
        """Halve every sharer's rate for a while (in the background)."""


class LeasedLimiter:
    """A :class:`~vidgo_async._timing.limits.Limiter` spending leased tokens.

    Requests that find no token queue in order; one task at a time asks the
    store for a lease sized to the queue and to the recent pace (at most
    ``max_lease``), sleeps when the store says so (no room, or a pause), and
    hands the tokens out. A failed lease ends the queued requests with the
    store's error (an unsent request: the callers' retry rules apply).
    """

    def __init__(
        self,
        source: LeaseSource,
        rate: float,
        *,
        seconds: float,
        max_lease: int,
        on_close: Callable[[LeasedLimiter], object] | None = None,
    ) -> None:
        self.rate = rate
        self.granted = 0  # tokens handed to requests
        self._source = source
        self._seconds = seconds
        self._max_lease = max_lease
        self._on_close = on_close
        self._tokens = 0
        self._lease_id = 0
        self._origin = 0.0  # the lease's start, on the local clock, at the earliest
        self._starts = 0.0  # ... and at the latest: when its tokens may go
        self._expires = 0.0
        self._spent: Spent | None = None
        self._paused = 0.0
        self._recent: collections.deque[float] = collections.deque()  # grants of the last second
        self._waiting = Grants()
        self._refill: asyncio.Task[None] | None = None
        self._closed: str | None = None

    async def acquire(self, timeout: float | None = None) -> None:
        """Wait for a token, at most ``timeout`` seconds.

        Raises:
            TimeoutError: No token came within ``timeout``.
            ClientClosedError: The client or the quota was closed meanwhile.
            VidgoError: The store could not be reached.
        """
        if self._closed is not None:
            raise ClientClosedError(self._closed)
        if not self.try_acquire():
            await self._waiting.wait(timeout, self._start_serving)

    def try_acquire(self) -> bool:
        """Take a leased token if one is free now and nobody queues; never waits."""
        return self._closed is None and not self._waiting and self._take(time.monotonic())

    def slow_down(self, seconds: float) -> None:
        """Start no request for ``seconds``, here and (at their next lease) in every sharer."""
        now = time.monotonic()
        self._paused = max(self._paused, now + seconds)
        self._drop(now)
        self._source.pause(seconds)

    def back_off(self) -> None:
        """Halve the shared rate (it recovers by 10 % a second); drop the tokens in hand."""
        self._drop(time.monotonic())
        self._source.back_off()

    def close(self, reason: str = "the client was closed") -> None:
        """End every queued request with :class:`ClientClosedError`; later ones too."""
        if self._closed is not None:
            return
        self._closed = reason
        if self._refill is not None:
            self._refill.cancel()
        self._waiting.fail(lambda: ClientClosedError(reason))
        if self._on_close is not None:
            self._on_close(self)

    # -- tokens -----------------------------------------------------------------------------

    def _take(self, now: float) -> bool:
        if not self._tokens or now < self._paused or now < self._starts:
            return False
        if now >= self._expires:  # ended with its lifetime: nothing to report
            self._tokens = 0
            return False
        self._tokens -= 1
        self.granted += 1
        self._recent.append(now)
        if not self._tokens:
            self._spent = Spent(self._lease_id, now - self._origin)
        return True

    def _drop(self, now: float) -> None:
        """Give up the tokens in hand (after a 429): the lease ends now."""
        if self._tokens and now < self._expires:
            self._spent = Spent(self._lease_id, max(0.0, now - self._origin))
        self._tokens = 0

    def _start_serving(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._refill is None:
            self._refill = loop.create_task(self._serve())

    def _want(self, now: float) -> int:
        """Tokens to ask for: the queue, or the last second's pace over a lease's life."""
        recent = self._recent
        while recent and now - recent[0] > 1.0:
            recent.popleft()
        expected = math.ceil(len(recent) * self._seconds)
        return max(1, min(self._max_lease, max(len(self._waiting), expected)))

    async def _serve(self) -> None:
        """Lease and hand out tokens while requests queue (one such task at a time)."""
        try:
            while True:
                now = time.monotonic()
                self._waiting.hand_out(functools.partial(self._take, now))
                if not self._waiting:
                    return
                if now < self._paused or (self._tokens and now < self._starts):
                    await asyncio.sleep(max(self._paused, self._starts) - now)
                    continue
                spent, self._spent = self._spent, None
                try:
                    lease = await self._source.lease(self._want(now), self._seconds, spent)
                except VidgoError as exc:
                    self._fail(exc)
                    return
                except Exception as exc:  # never leave a request waiting on a dead task
                    self._fail(TransportError(f"the shared quota failed: {exc!r}", sent=False))
                    raise
                if lease.tokens and lease.lease_id is not None:
                    self._tokens, self._lease_id = lease.tokens, lease.lease_id
                    self._origin = now + lease.wait
                    self._starts = time.monotonic() + lease.wait
                    self._expires = self._origin + self._seconds
                else:
                    await asyncio.sleep(lease.wait)
        finally:
            self._refill = None

    def _fail(self, exc: VidgoError) -> None:
        self._waiting.fail(lambda: copy.copy(exc))
