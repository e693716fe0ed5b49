"""Waiting on a task: the poll loop, bounded by a deadline.

A failed poll is "no news": transient failures (transport errors, 429,
5xx, garbage bodies) only push the next poll back. Only a definitive
answer (400, 401, 403, 404) or the deadline ends a wait early.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Protocol

from ._calls import Calls, is_transient, remaining
from ._config import PollPolicy
from ._models import Task, TaskHandle, TaskStatus
from ._retry import PollSchedule
from .errors import (
    InvalidResponseError,
    RateLimitError,
    ServerError,
    TaskFailedError,
    TaskTimeoutError,
    VidgoError,
)

__all__ = ["Pacer", "changes", "snapshots", "wait_until_done"]

logger = logging.getLogger("vidgo_async")

_WAV_URL_GRACE = 3  # re-reads of a finished task whose wav_url is not there yet


class Pacer(Protocol):
    """Shapes one wait's pauses; a callback receiver's pacer races them against hints."""

    def delay(self, scheduled: float, deadline: float | None) -> float:
        """The pause before the next poll, given the poll schedule's ``scheduled``."""

    async def nap(self, seconds: float) -> None:
        """Sleep ``seconds``; may return early (a callback arrived)."""

    def observe(self, task: Task) -> None:
        """Note the answer of a poll."""


class _Sleeper:
    """The pacer of a wait without callbacks: the schedule as it is."""

    def delay(self, scheduled: float, deadline: float | None) -> float:
        return scheduled

    async def nap(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def observe(self, task: Task) -> None:
        pass


_SLEEPER = _Sleeper()


async def snapshots(
    calls: Calls,
    handle: TaskHandle,
    *,
    deadline: float | None,
    policy: PollPolicy,
    first_delay: float,
    pacer: Pacer | None = None,
) -> AsyncGenerator[Task, None]:
    """Every snapshot a poll reads, until a terminal one (which is yielded too).

    Raises:
        TaskTimeoutError: ``deadline`` passed first; carries the last snapshot.
        VidgoError: A definitive error answer (400, 401, 403, 404 ...).
    """
    schedule = PollSchedule(policy)
    pacer = pacer or _SLEEPER
    last: Task | None = None
    delay = first_delay
    while True:
        await _nap_within(pacer, pacer.delay(delay, deadline), deadline)
        _check_deadline(handle, last, deadline)
        try:
            task = await calls.poll(handle.task_id, deadline)
        except VidgoError as exc:
            if not is_transient(exc):
                raise
            _check_deadline(handle, last, deadline)
            delay = _lengthened(schedule.next(None), exc, calls.retry.max_retry_after)
            logger.debug("poll of %s failed (%s); next in %.2fs", handle.task_id, exc, delay)
            continue
        if last is None or task.status is not last.status:
            logger.debug("task %s is %s", task.task_id, task.status.value)
        pacer.observe(task)
        last = task
        yield task
        if task.is_terminal:
            return
        delay = schedule.next(task)


async def wait_until_done(
    calls: Calls,
    handle: TaskHandle,
    *,
    deadline: float | None,
    policy: PollPolicy,
    first_delay: float,
    wav: bool = False,
    pacer: Pacer | None = None,
) -> Task:
    """The finished task; with ``wav``, one whose ``wav_url`` is there.

    Raises:
        TaskFailedError: The task failed.
        TaskTimeoutError: The deadline passed first.
        InvalidResponseError: With ``wav``, it finished and kept having no ``wav_url``.
    """
    for _ in range(_WAV_URL_GRACE + 1):
        task = await _terminal(calls, handle, deadline, policy, first_delay, pacer)
        if task.status is TaskStatus.FAILED:
            raise TaskFailedError(
                f"task {task.task_id} failed: {task.error_message or 'no reason given'}",
                handle=handle,
                task=task,
                error_message=task.error_message,
            )
        if task.wav_url or not wav:
            return task
        first_delay = policy.initial
    raise InvalidResponseError(
        f"task {task.task_id} finished without a wav_url (files: {len(task.files)})"
    )


async def _terminal(
    calls: Calls,
    handle: TaskHandle,
    deadline: float | None,
    policy: PollPolicy,
    first_delay: float,
    pacer: Pacer | None,
) -> Task:
    stream = snapshots(
        calls, handle, deadline=deadline, policy=policy, first_delay=first_delay, pacer=pacer
    )
    async with aclosing(stream):
        async for task in stream:
            if task.is_terminal:
                return task
    raise AssertionError("snapshots ended without a terminal task")  # pragma: no cover


async def changes(
    calls: Calls, handle: TaskHandle, *, deadline: float | None, policy: PollPolicy
) -> AsyncGenerator[Task, None]:
    """Polled snapshots whose status or progress differs from the one before."""
    previous: Task | None = None
    stream = snapshots(calls, handle, deadline=deadline, policy=policy, first_delay=0.0)
    async with aclosing(stream):
        async for task in stream:
            if previous is None or (task.status, task.progress) != (
                previous.status,
                previous.progress,
            ):
                yield task
            previous = task


def _lengthened(delay: float, exc: VidgoError, cap: float) -> float:
    retry_after = exc.retry_after if isinstance(exc, (RateLimitError, ServerError)) else None
    return delay if retry_after is None else max(delay, min(retry_after, cap))


async def _nap_within(pacer: Pacer, delay: float, deadline: float | None) -> None:
    left = remaining(deadline)
    if left is not None:
        delay = min(delay, max(0.0, left))
    if delay > 0:
        await pacer.nap(delay)


def _check_deadline(handle: TaskHandle, last: Task | None, deadline: float | None) -> None:
    if deadline is None or time.monotonic() < deadline:
        return
    state = "never read" if last is None else last.status.value
    if last is not None and last.progress is not None:
        state += f", {last.progress:g}%"
    raise TaskTimeoutError(
        f"task {handle.task_id} did not finish before the deadline (last seen: {state}); "
        "it keeps running on the server - wait on the error's handle to resume",
        handle=handle,
        task=last,
    )
