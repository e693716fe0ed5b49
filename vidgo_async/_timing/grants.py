"""The requests waiting for a limiter's grant: first come, first served, each bounded."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Grants"]

T = TypeVar("T")


class Grants(Generic[T]):
    """The requests waiting for a limiter's grant, served first come, first served.

    A waiter that was cancelled or timed out stays queued until it reaches
    the front, where it takes nothing.
    """

    __slots__ = ("_give_back", "_queue", "_serve")

    def __init__(
        self,
        serve: Callable[[asyncio.AbstractEventLoop], None],
        give_back: Callable[[T], None],
    ) -> None:
        """``serve(loop)`` makes sure something will hand grants out; ``give_back(grant)``
        returns a grant that came just as its waiter was cancelled."""
        self._queue: collections.deque[asyncio.Future[T]] = collections.deque()
        self._serve = serve
        self._give_back = give_back

    def __len__(self) -> int:
        return len(self._queue)

    async def wait(self, timeout: float | None) -> T:
        """Queue for a grant and wait for it, at most ``timeout`` seconds.

        Raises:
            TimeoutError: No grant came within ``timeout``.
        """
        if timeout is not None and timeout <= 0:
            raise TimeoutError("no request slot before the deadline")
        loop = asyncio.get_running_loop()
        grant: asyncio.Future[T] = loop.create_future()
        self._queue.append(grant)
        self._serve(loop)
        expiry = None if timeout is None else loop.call_later(timeout, _expire, grant)
        try:
            return await grant
        except asyncio.CancelledError:
            if grant.done() and not grant.cancelled() and grant.exception() is None:
                self._give_back(grant.result())
            raise
        finally:
            if expiry is not None:
                expiry.cancel()

    def hand_out(self, take: Callable[[], T | None]) -> None:
        """Grant the waiters in their order while ``take()`` finds room."""
        queue = self._queue
        while queue:
            if queue[0].done():  # cancelled or expired: takes nothing
                del queue[0]
            elif (granted := take()) is not None:
                queue.popleft().set_result(granted)
            else:
                break

    def fail(self, error: Callable[[], BaseException]) -> None:
        """End every waiter with an ``error()`` of its own (tracebacks do not pile up)."""
        while self._queue:
            grant = self._queue.popleft()
            if not grant.done():
                grant.set_exception(error())


def _expire(grant: asyncio.Future[Any]) -> None:
    if not grant.done():
        grant.set_exception(TimeoutError("no request slot before the deadline"))
