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
from typing import Protocol

from ._calls import Calls, is_transient
from ._config import PollPolicy
from ._events import emit
from ._models import Task, TaskHandle, TaskStatus
from ._retry import PollSchedule
from .errors import (
    InvalidResponseError,
    NotFoundError,
    RateLimitError,
    ServerError,
    TaskFailedError,
    TaskTimeoutError,
    VidgoError,
)

__all__ = ["Pacer", "Poller", "changes", "poll_while_due", "task_id_of", "wait_until_done"]

logger = logging.getLogger("vidgo_async")

_WAV_URL_REREADS = 10  # without a deadline: reads of a finished task that lacks its wav_url


class Pacer(Protocol):
    """Shapes one wait's pauses; a callback receiver's pacer races them against hints."""

    def delay(self, scheduled: float, deadline: float | None) -> float:
        """The pause before the next poll, given the poll schedule's ``scheduled``."""

    async def nap(self, seconds: float) -> bool:
        """Sleep ``seconds``; return early, and true, when a callback hint arrived."""

    def observe(self, task: Task) -> None:
        """Note the answer of a poll."""


class Poller:
    """One wait's poll loop, a step at a time: pause (maybe cut short by a
    callback), check the deadline, read the task; repeat until a read succeeds.

    Kept flat - one object and one coroutine frame per step - because a
    process may hold a hundred thousand of these pending at once.

    ``handle`` is the task's :class:`TaskHandle`, or the ``(task_id,
    source_task_id, audio_id)`` of a WAV conversion, made into one only if
    an error needs it (a batch makes thousands of pollers).
    """

    __slots__ = (
        "_calls",
        "_deadline",
        "_delay",
        "_fresh",
        "_handle",
        "_pacer",
        "_policy",
        "_rereads",
        "_schedule",
        "_started",
        "last",
        "polled",
        "task_id",
    )

    def __init__(
        self,
        calls: Calls,
        handle: TaskHandle | tuple[str, str, str],
        *,
        deadline: float | None,
        policy: PollPolicy,
        first_delay: float,
        pacer: Pacer | None = None,
        started: float | None = None,
    ) -> None:
        """``started``: when this client submitted the task (``None``: not submitted here)."""
        self._fresh = started is not None
        self._calls = calls
        self._handle = handle
        self.task_id = task_id_of(handle)
        self._deadline = deadline
        self._pacer = pacer
        self._policy = policy
        self._started = started
        self._schedule: PollSchedule | None = None  # made when a second poll is needed
        self._delay = first_delay
        self._rereads = 0  # reads of a finished task that lacked its wav_url
        self.last: Task | None = None
        self.polled = False  # whether a poll was tried (answered or not)

    @property
    def handle(self) -> TaskHandle:
        """The handle of the task waited on."""
        handle = self._handle
        if isinstance(handle, tuple):
            task_id, source_task_id, audio_id = handle
            handle = TaskHandle(task_id=task_id, source_task_id=source_task_id, audio_id=audio_id)
            self._handle = handle
        return handle

    def claim(self) -> bool:
        """Whether the next step may go now, and if it polls, take its slot under
        the client's poll rate cap: no pause left and none to be shaped by
        callbacks. Past the deadline no slot is taken (the step ends the wait)."""
        if self._delay > 0 or self._pacer is not None:
            return False
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return True
        return self._calls.limiter.try_acquire()

    @property
    def paced(self) -> bool:
        """Whether callbacks shape the pauses (so only :meth:`next` may sleep them)."""
        return self._pacer is not None

    @property
    def pause(self) -> float:
        """Seconds until the next poll is scheduled; never past the deadline."""
        delay = self._delay
        if self._deadline is not None:
            delay = min(delay, self._deadline - time.monotonic())
        return max(0.0, delay)

    def slept(self) -> None:
        """Note that the pause before the next poll was slept elsewhere."""
        self._delay = 0.0

    def defer(self) -> None:
        """Make the next pause at least the policy's first one."""
        self._delay = max(self._delay, self._policy.initial)

    async def next(self) -> Task:
        """The next snapshot a poll reads, after the pause (cut short by a callback).

        Raises:
            TaskTimeoutError: The deadline passed first; carries the last snapshot.
            VidgoError: A definitive error answer (400, 401, 403, 404 ...).
        """
        calls, deadline = self._calls, self._deadline
        while True:
            # The pause, inline: a frame less for each of many pending waits.
            delay = self._delay
            if self._pacer is not None:
                delay = self._pacer.delay(delay, deadline)
            if delay > 0 and deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            if delay > 0:
                if self._pacer is None:
                    await asyncio.sleep(delay)
                elif await self._pacer.nap(delay):
                    emit(calls.hook, "callback", task_id=self.task_id)
            task = await self.step()
            if task is not None:
                return task

    async def step(self, *, claimed: bool = False) -> Task | None:
        """One poll, now: the snapshot, or ``None`` after a failure that is no news
        (the pause before the next poll is then set, lengthened by any Retry-After).
        ``claimed``: :meth:`claim` took its slot under the rate cap.

        Raises:
            TaskTimeoutError: The deadline has passed; carries the last snapshot.
            VidgoError: A definitive error answer (400, 401, 403, 404 ...).
        """
        calls, task_id, deadline = self._calls, self.task_id, self._deadline
        if deadline is not None and time.monotonic() >= deadline:
            raise self._timeout()
        self.polled = True
        try:
            task = await calls.poll(task_id, deadline, claimed=claimed)
        except VidgoError as exc:
            if not (is_transient(exc) or self._unseen(exc)):
                raise
            if deadline is not None and time.monotonic() >= deadline:
                raise self._timeout() from exc
            delay = _lengthened(self._next_delay(None), exc, calls.retry.max_retry_after)
            self._delay = delay
            logger.debug("poll of %s failed (%s); next in %.2fs", task_id, exc, delay)
            return None
        last, status = self.last, task.status
        if last is None or status is not last.status:
            if logger.isEnabledFor(logging.DEBUG):  # one call, not two, when quiet
                logger.debug("task %s is %s", task.task_id, status.value)
            if calls.hook is not None:
                emit(calls.hook, "status", task_id=task.task_id, status=status)
        if self._pacer is not None:
            self._pacer.observe(task)
        self.last = task
        if status is not TaskStatus.FINISHED:  # else no next poll (or see gives_up_on_wav_url)
            self._delay = self._next_delay(task)
        return task

    def _next_delay(self, task: Task | None) -> float:
        if self._schedule is None:
            self._schedule = PollSchedule(self._policy, started=self._started)
        return self._schedule.next(task)

    def _unseen(self, exc: VidgoError) -> bool:
        # A task this client just submitted may not be readable yet (eventual
        # consistency): until one read succeeds, its 404 is no news.
        return self._fresh and self.last is None and isinstance(exc, NotFoundError)

    def gives_up_on_wav_url(self) -> bool:
        """Count a finished read that lacked its ``wav_url``; whether to stop rereading
        (else the next read is scheduled). With a deadline, never: the deadline ends the wait.
        """
        self._rereads += 1
        self._delay = self._next_delay(self.last)
        return self._deadline is None and self._rereads > _WAV_URL_REREADS

    def _timeout(self) -> TaskTimeoutError:
        """The error of a wait whose deadline passed, with what it last saw."""
        last = self.last
        state = "never read" if last is None else last.status.value
        if last is not None and last.progress is not None:
            state += f", {last.progress:g}%"
        return TaskTimeoutError(
            f"task {self.task_id} did not finish before the deadline (last seen: "
            f"{state}); it keeps running on the server - wait on the error's handle to resume",
            handle=self.handle,
            task=last,
        )


def task_id_of(handle: TaskHandle | tuple[str, str, str]) -> str:
    """The id of the task a :class:`Poller`'s ``handle`` names."""
    return handle[0] if isinstance(handle, tuple) else handle.task_id


async def wait_until_done(poller: Poller, *, wav: bool) -> Task:
    """The finished task; with ``wav``, one whose ``wav_url`` is there.

    A finished task without its ``wav_url`` is polled on, as "no news", in
    case the files lag behind the status - until the deadline (or, without
    one, a few more reads).

    Raises:
        TaskFailedError: The task failed.
        TaskTimeoutError: The deadline passed first.
        InvalidResponseError: With ``wav``, it finished and never showed a ``wav_url``.
    """
    while True:
        try:
            task = await poller.next()
        except TaskTimeoutError as exc:
            if (never_had_url := _finished_without_url(poller)) is not None:
                raise never_had_url from exc
            raise
        if _is_over(poller, task, wav=wav):
            return task


async def poll_while_due(poller: Poller, *, wav: bool) -> Task | None:
    """Like :func:`wait_until_done`, but ``None`` as soon as the next poll needs a pause.

    It never sleeps, not even the back-off after a failed poll: a batch
    worker calls it, and parks the pair (or hands it to a task) when it
    returns ``None``, so that one pair's pause holds up no other.
    """
    while poller.claim():
        try:
            task = await poller.step(claimed=True)
        except TaskTimeoutError as exc:
            if (never_had_url := _finished_without_url(poller)) is not None:
                raise never_had_url from exc
            raise
        if task is not None and _is_over(poller, task, wav=wav):
            return task
    return None


def _is_over(poller: Poller, task: Task, *, wav: bool) -> bool:
    """Whether the wait ends with ``task`` (finished; with ``wav``, with its URL).

    Raises:
        TaskFailedError: The task failed.
        InvalidResponseError: It finished, and its ``wav_url`` is given up on.
    """
    status = task.status
    if status is TaskStatus.FAILED:
        raise TaskFailedError(
            f"task {task.task_id} failed: {task.error_message or 'no reason given'}",
            handle=poller.handle,
            task=task,
            error_message=task.error_message,
        )
    if status is not TaskStatus.FINISHED:
        return False
    if not wav or task.wav_url:
        return True
    if poller.gives_up_on_wav_url():
        raise _no_wav_url(task)
    return False


def _finished_without_url(poller: Poller) -> InvalidResponseError | None:
    """At the deadline: the error of a task seen finished but never with its URL."""
    last = poller.last
    if last is None or last.status is not TaskStatus.FINISHED:
        return None
    return _no_wav_url(last)


def _no_wav_url(task: Task) -> InvalidResponseError:
    return InvalidResponseError(
        f"task {task.task_id} finished without a wav_url (files: {len(task.files)})"
    )


async def changes(poller: Poller) -> AsyncGenerator[Task, None]:
    """Polled snapshots whose status or progress differs from the one before; ends terminal."""
    previous: Task | None = None
    while True:
        task = await poller.next()
        if previous is None or (task.status, task.progress) != (previous.status, previous.progress):
            yield task
        if task.is_terminal:
            return
        previous = task


def _lengthened(delay: float, exc: VidgoError, cap: float) -> float:
    retry_after = exc.retry_after if isinstance(exc, (RateLimitError, ServerError)) else None
    return delay if retry_after is None else max(delay, min(retry_after, cap))
