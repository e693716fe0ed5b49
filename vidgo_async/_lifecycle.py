"""The client's one lifecycle state: open, then closed for good.

Everything that must stop when the client closes asks here: the transport
before each request, and the pauses of submits and waits sleep through
:meth:`Lifecycle.sleep`, which ends at once with :class:`ClientClosedError`
when the client closes. (A single GET's or download's retry pause - seconds
at most - ends with the next attempt, which the closed transport refuses.)
"""

from __future__ import annotations

import asyncio

import attrs

from .errors import ClientClosedError

__all__ = ["Lifecycle", "settle"]


@attrs.define
class Lifecycle:
    """Open until :meth:`close`; the pauses in progress end when it is called."""

    closed: bool = False
    _sleepers: set[asyncio.Future[None]] = attrs.field(factory=set, init=False)

    def check(self) -> None:
        """Raise :class:`ClientClosedError` if the client is closed."""
        if self.closed:
            raise ClientClosedError("this VidgoClient is closed")

    async def sleep(self, seconds: float, wake: asyncio.Future[None] | None = None) -> None:
        """Sleep ``seconds``, or until ``wake`` (a future someone else settles) is done.

        Raises:
            ClientClosedError: The client is closed, or closes meanwhile.
        """
        self.check()
        loop = asyncio.get_running_loop()
        waiter = wake if wake is not None else loop.create_future()
        timer = loop.call_later(seconds, settle, waiter)
        self._sleepers.add(waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._sleepers.discard(waiter)

    def close(self) -> None:
        """Close for good: every pause in progress ends with :class:`ClientClosedError`."""
        self.closed = True
        sleepers, self._sleepers = self._sleepers, set()
        for waiter in sleepers:
            if not waiter.done():
                waiter.set_exception(ClientClosedError("the client was closed"))


def settle(waiter: asyncio.Future[None]) -> None:
    """End ``waiter`` (a pause) now, unless something else ended it first."""
    if not waiter.done():
        waiter.set_result(None)
