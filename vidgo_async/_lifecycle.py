"""The client's one lifecycle state: open, then closed for good.

Everything that must stop when the client closes asks here: the transport
before each request, a running batch (stopped once its submits in flight are
answered and journalled), the submits on the wire (answered first), and the
pauses of submits and waits sleep through :meth:`Lifecycle.sleep`, which ends
at once with :class:`ClientClosedError` when the client closes. (A single GET's
retry pause - seconds at most - ends with the next attempt, which the closed
transport refuses.) A download runs whole through :meth:`Lifecycle.run`: aiohttp
leaves a body read waiting forever once its session is closed, so the close
must end it from outside.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, Protocol, TypeVar

import attrs

from .errors import ClientClosedError

__all__ = ["Lifecycle", "cancel_after_grace", "settle"]

_T = TypeVar("_T")


class Stoppable(Protocol):
    """Work the client stops before it closes (a running batch, the submits on the wire)."""

    async def stop(self) -> None:
        """Stop; safe to call again, and to await from several places."""


@attrs.define
class Lifecycle:
    """Open until :meth:`close`; the pauses in progress end when it is called."""

    closed: bool = False
    _sleepers: set[asyncio.Future[None]] = attrs.field(factory=set, init=False)
    _running: set[Stoppable] = attrs.field(factory=set, init=False)

    def started(self, work: Stoppable) -> None:
        """``work`` runs until it calls :meth:`stopped`; :meth:`stop_running` stops it."""
        self._running.add(work)

    def stopped(self, work: Stoppable) -> None:
        self._running.discard(work)

    async def stop_running(self) -> None:
        """Stop the work still running (before the client closes the sessions it uses).
        A failure of one (its journal's close) is its consumer's to see, not the close's."""
        await asyncio.gather(*(work.stop() for work in list(self._running)), return_exceptions=True)

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

    async def run(self, work: Coroutine[Any, Any, _T]) -> _T:
        """Await ``work`` in a task of its own, cancelled the moment the client closes.

        Raises:
            ClientClosedError: The client is closed, or closes before ``work``
                ends (which is then cancelled, and its cleanup awaited).
        """
        if self.closed:
            work.close()  # never started: no "never awaited" warning
            self.check()
        task = asyncio.ensure_future(work)
        closing = asyncio.get_running_loop().create_future()
        self._sleepers.add(closing)
        try:
            await asyncio.wait((task, closing), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._sleepers.discard(closing)
            if not task.done():
                task.cancel()  # also when we are cancelled: work never outlives its caller
                await asyncio.wait((task,))  # its cleanup (files, connections) done first
            if not task.cancelled():
                task.exception()  # retrieved, whichever error is raised here
        if closing.done() and (task.cancelled() or task.exception() is not None):
            await closing  # the ClientClosedError close() set, not what the close caused
        return task.result()

    def close(self) -> None:
        """Close for good: every pause in progress ends with :class:`ClientClosedError`."""
        self.closed = True
        sleepers, self._sleepers = self._sleepers, set()
        for waiter in sleepers:
            if not waiter.done():
                waiter.set_exception(ClientClosedError("the client was closed"))
                # Marked as seen: a pause cancelled before it wakes never reads it, and
                # asyncio would log it as "never retrieved". Its awaiter still gets it.
                waiter.exception()


def settle(waiter: asyncio.Future[None]) -> None:
    """End ``waiter`` (a pause) now, unless something else ended it first."""
    if not waiter.done():
        waiter.set_result(None)


async def cancel_after_grace(tasks: Iterable[asyncio.Task[Any]], grace: float) -> None:
    """Let ``tasks`` run for up to ``grace`` seconds, then cancel those still running."""
    if pending := set(tasks):
        _, late = await asyncio.wait(pending, timeout=grace)
        for task in late:
            task.cancel()
