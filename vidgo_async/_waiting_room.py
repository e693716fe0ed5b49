"""A batch's sleeping waits, held on one timer instead of a task each.

A wait whose next poll is not due yet is parked here with its pause. One
timer, armed for the earliest due wait, hands every wait that has come due
back to the batch's workers, which make the poll. So a batch of thousands
of waits holds no task, coroutine or timer per wait, and its polls go out
through the same ``concurrency`` workers as its submits.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["WaitingRoom"]

T = TypeVar("T")

# A timer may fire this much before its instant (asyncio's clock resolution);
# a wait due within it is handed back rather than left for another round.
_EARLY = 0.001


class WaitingRoom(Generic[T]):
    """Parked items, each handed to ``wake`` once its pause has passed.

    Args:
        wake: Called (from the event loop's timer) with each item that came due.
    """

    def __init__(self, wake: Callable[[T], None]) -> None:
        self._wake = wake
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()  # ties keep their parking order
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = 0.0

    def __len__(self) -> int:
        return len(self._heap)

    def park(self, item: T, pause: float) -> None:
        """Hand ``item`` back after ``pause`` seconds."""
        due = time.monotonic() + pause
        heapq.heappush(self._heap, (due, next(self._order), item))
        if self._timer is None or due < self._timer_due:
            self._arm(due)

    def take(self, matches: Callable[[T], bool]) -> list[T]:
        """Take out the parked items ``matches`` picks, in their order (no ``wake``)."""
        picked = sorted(entry for entry in self._heap if matches(entry[2]))
        if picked:
            self._heap = [entry for entry in self._heap if not matches(entry[2])]
            heapq.heapify(self._heap)
        return [entry[2] for entry in picked]

    def close(self) -> None:
        """Drop every parked item and the timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(max(0.0, due - time.monotonic()), self._release)

    def _release(self) -> None:
        self._timer = None
        heap = self._heap
        now = time.monotonic() + _EARLY
        while heap and heap[0][0] <= now:
            self._wake(heapq.heappop(heap)[2])
        if heap:
            self._arm(heap[0][0])
