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
``wait + seconds`` after its request *left* (so never after its end): a
token whose request has not left by then is swapped for a fresh one as it
leaves (:meth:`_Token.leaving`). A lease spent or dropped early ends where
its last request was answered: once its tokens are all released, the next
lease request reports how long after the local origin that was
(:class:`Spent`), and the store ends it there, so that a busy process does
not hold the window for tokens it already used. A request that waited after
its grant (for a connection, a batch's permit, a stalled loop) thus still
counts where it reached the server.
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

from .._timing.grants import Grants
from .._timing.limits import Halvings, window_of
from ..errors import ClientClosedError, TransportError, VidgoError

__all__ = ["Lease", "LeasedLimiter", "Spent"]

# Settled leases waiting to be reported (one per lease request): more are left to end
# when their lifetime does (only room the store holds a little longer, never too little).
_MAX_SETTLED = 8


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


@attrs.define(slots=True)
class _Lease:
    """A lease in this process: its tokens under way, and when its last one went."""

    lease_id: int
    origin: float  # its start on the local clock, at the earliest
    expires: float  # its natural end, at the latest
    under_way: int = 0  # tokens handed out and not yet released
    last: float = 0.0  # the last grant or release of one of its tokens
    done: bool = False  # it hands out no more tokens


@attrs.define(slots=True)
class _Token:
    """A slot of a :class:`LeasedLimiter`: a token of one lease."""

    _limiter: LeasedLimiter
    lease: _Lease
    _released: bool = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._limiter._release(self.lease)

    async def leaving(self, timeout: float | None) -> None:
        """A token whose lease has run its natural course may not go (the store
        counts the lease no further): it is swapped for a fresh one."""
        until = None if timeout is None else time.monotonic() + timeout
        while (now := time.monotonic()) >= self.lease.expires:
            fresh = await self._limiter.acquire(None if until is None else until - now)
            stale, self.lease = self.lease, fresh.lease
            fresh._released = True  # its count moved to this token
            self._limiter._release(stale)


class LeasedLimiter:
    """A :class:`~vidgo_async._timing.limits.Limiter` spending leased tokens.

    Requests that find no token queue in order; one task at a time asks the
    store for a lease sized to the queue and to the recent pace (at most
    ``max_lease``), sleeps when the store says so (no room, or a pause), and
    hands the tokens out. A failed lease ends the queued requests with the
    store's error (an unsent request: the callers' retry rules apply).

    A lease that ends early (its tokens all handed out, or dropped after a
    429) is reported to the store as ending at the release of its last
    token, once they are all released; until then it counts to its natural
    end. A token whose request has not left by then is replaced as it leaves.
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
        self._lease: _Lease | None = None  # the lease tokens are handed out from
        self._starts = 0.0  # when its tokens may go
        # Leases that ended early with their tokens all released: to report, one a request.
        self._settled: collections.deque[_Lease] = collections.deque(maxlen=_MAX_SETTLED)
        self._paused = 0.0
        self._halvings = Halvings(window_of(rate)[1])
        self._recent: collections.deque[float] = collections.deque()  # grants of the last second
        self._waiting: Grants[_Token] = Grants(self._start_serving, _Token.release)
        self._refill: asyncio.Task[None] | None = None
        self._closed: str | None = None

    async def acquire(self, timeout: float | None = None) -> _Token:
        """Wait for a token, at most ``timeout`` seconds.

        Raises:
            TimeoutError: No token came within ``timeout``.
            ClientClosedError: The client or the quota was closed meanwhile.
            VidgoError: The store could not be reached.
        """
        if self._closed is not None:
            raise ClientClosedError(self._closed)
        if not self._waiting and (token := self._take(time.monotonic())) is not None:
            return token
        return await self._waiting.wait(timeout)

    def slow_down(self, seconds: float) -> None:
        """Start no request for ``seconds``, here and (at their next lease) in every sharer."""
        now = time.monotonic()
        self._paused = max(self._paused, now + seconds)
        self._drop(now)
        self._source.pause(seconds)

    def back_off(self) -> None:
        """Halve the shared rate, once a window (:class:`Halvings`; it recovers by 10 % a
        second), and drop the tokens in hand."""
        now = time.monotonic()
        if self._halvings.due(now):
            self._drop(now)
            self._source.back_off()

    def went_through(self) -> None:
        """Nothing to do: a back-off recovers with time."""

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

    def _take(self, now: float) -> _Token | None:
        lease = self._lease
        if not self._tokens or lease is None or now < self._paused or now < self._starts:
            return None
        if now >= lease.expires:  # it ran its course: counted to its natural end
            self._tokens = 0
            lease.done = True
            return None
        self._tokens -= 1
        self.granted += 1
        self._recent.append(now)
        lease.under_way += 1
        lease.last = now
        if not self._tokens:
            self._end(lease)
        return _Token(self, lease)

    def _release(self, lease: _Lease) -> None:
        lease.under_way -= 1
        lease.last = max(lease.last, time.monotonic())
        if lease.done:
            self._settle(lease)

    def _end(self, lease: _Lease) -> None:
        """``lease`` hands out no more tokens: report it once they are all released."""
        lease.done = True
        self._settle(lease)

    def _settle(self, lease: _Lease) -> None:
        if not lease.under_way:
            self._settled.append(lease)

    def _drop(self, now: float) -> None:
        """Give up the tokens in hand (after a 429): the lease ends now."""
        lease = self._lease
        if self._tokens and lease is not None and now < lease.expires:
            lease.last = max(lease.last, now)
            self._end(lease)
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

    def _spent(self) -> Spent | None:
        """The oldest lease not yet reported that ended early with its tokens all released."""
        if not self._settled:
            return None
        lease = self._settled.popleft()
        return Spent(lease.lease_id, max(0.0, lease.last - lease.origin))

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
                try:
                    lease = await self._source.lease(self._want(now), self._seconds, self._spent())
                except VidgoError as exc:
                    self._fail(exc)
                    return
                except Exception as exc:  # never leave a request waiting on a dead task
                    self._fail(TransportError(f"the shared quota failed: {exc!r}", sent=False))
                    raise
                if lease.tokens and lease.lease_id is not None:
                    if self._lease is not None:
                        self._lease.done = True  # no more tokens from it: a new lease rules
                    origin = now + lease.wait
                    self._lease = _Lease(lease.lease_id, origin, origin + self._seconds)
                    self._tokens = lease.tokens
                    self._starts = time.monotonic() + lease.wait
                else:
                    await asyncio.sleep(lease.wait)
        finally:
            self._refill = None

    def _fail(self, exc: VidgoError) -> None:
        self._waiting.fail(lambda: copy.copy(exc))
