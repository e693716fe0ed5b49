"""Waiting on a task: a poll loop bounded by a deadline, maybe paced by callbacks.

A failed poll is "no news" unless the classification table calls it final:
transport errors, 429, 5xx and garbage bodies only push the next poll back
(to any ``Retry-After``). Only a final answer (400, 401, 403, 404 ...), a
closed client or the deadline ends a wait early. Every pause comes from the
poll schedule (``_timing.schedules``), never runs past
``PollPolicy.max_interval`` unless the server or the callback safety net
asks for it, and ends early enough for a last read before the deadline.

This loop stays ours rather than backoff's: backoff knows neither deadlines
nor a schedule that follows the task's reported progress.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncGenerator

import attrs

from .._config import PollPolicy
from .._events import Scope, emit, operation, retrying
from .._lifecycle import Lifecycle
from .._models import Task, TaskHandle, TaskStatus
from .._timing.classify import retryable, stretch, unreachable
from .._timing.deadline import Deadline
from .._timing.learned import Learner
from .._timing.schedules import PollSchedule
from .._wire.convert import OtherTaskError
from .._wire.envelope import excerpt
from .._wire.redaction import redact
from ..errors import (
    InvalidResponseError,
    NotFoundError,
    TaskFailedError,
    TaskTimeoutError,
    VidgoError,
)
from .callbacks import CallbackPacer, Registry
from .reads import DETAIL_PATH, Reader

__all__ = ["Poller", "Waits"]

logger = logging.getLogger("vidgo_async")

# How long a finished task's files may lag behind its status: a wait for its wav_url
# ends once it read the task finished without one for this long (in seconds, and
# reads after the first), unless the deadline ends it sooner.
_FILES_LAG, _FILES_LAG_READS = 10.0, 3
_STRANGERS = 3  # answers in a row about another task that end a wait


@attrs.define
class Waits:
    """Makes the client's waits: its reader, lifecycle, poll policy, what it learned
    of task durations, and its callback registry."""

    reader: Reader
    lifecycle: Lifecycle
    policy: PollPolicy
    learner: Learner
    callbacks: Registry | None = None

    def poller(
        self,
        handle: TaskHandle,
        deadline: Deadline,
        *,
        policy: PollPolicy | None = None,
        first_delay: float | None = None,
        submitted_at: float | None = None,
        elsewhere: bool = False,
        gate: asyncio.Semaphore | None = None,
    ) -> Poller:
        """The poll loop of one wait.

        Args:
            first_delay: The pause before the first poll (default: the
                schedule's, ``initial`` until durations were learned).
            submitted_at: When this client submitted the task (``None``: not
                here), so that its 404s before a first answer are no news,
                and its duration can be learned from and planned for.
            elsewhere: The task was submitted elsewhere (an earlier run, another
                process): its 404s before a first answer are no news for the
                policy's ``unseen_grace`` (it may have been created moments ago).
            gate: Held during each poll (a batch's bound on requests in flight).
        """
        policy = policy or self.policy
        pacer = None
        if self.callbacks is not None:
            pacer = self.callbacks.pacer(handle.task_id, policy, self.lifecycle)
        # A wait paced by callbacks keeps its schedule blind, and learns nothing from a
        # finish that a callback (not a poll) revealed.
        learned = self.learner.durations(handle.model) if pacer is None else None
        schedule = PollSchedule(policy, started=submitted_at, learned=learned)
        return Poller(
            reader=self.reader,
            lifecycle=self.lifecycle,
            handle=handle,
            deadline=deadline,
            schedule=schedule,
            delay=schedule.first() if first_delay is None else first_delay,
            pacer=pacer,
            unseen_until=_unseen_until(policy, submitted_at, elsewhere),
            gate=gate,
        )

    async def until_done(self, poller: Poller) -> Task:
        """The finished task.

        Raises:
            TaskFailedError: The task failed.
            TaskTimeoutError: The deadline passed first.
            ClientClosedError: The client was closed.
        """
        with poller, self._operation(poller):
            while True:
                task = await poller.next()
                if task.status is TaskStatus.FINISHED:
                    return task
                poller.fail_if_failed(task)

    async def wav_url(self, poller: Poller) -> str:
        """The WAV URL of the track the poller's handle names, once its task finished.

        A finished task without it is read on for 10 s (and 3 more reads at
        least), in case its files lag behind its status (the deadline may end that sooner).

        Raises:
            InvalidResponseError: It finished and never showed a usable WAV URL.
            Same as :meth:`until_done` otherwise.
        """
        with poller, self._operation(poller):
            finished_at, rereads = None, 0
            while True:
                try:
                    task = await poller.next()
                except TaskTimeoutError as exc:
                    last = poller.last
                    if last is not None and last.status is TaskStatus.FINISHED:
                        raise poller.no_wav_url(last) from exc
                    raise
                poller.fail_if_failed(task)
                if task.status is TaskStatus.FINISHED:
                    url = task.wav_url_for(poller.handle.audio_id)
                    if url is not None:
                        return url
                    if finished_at is None:
                        finished_at = time.monotonic()
                    elif (rereads := rereads + 1) >= _FILES_LAG_READS and (
                        time.monotonic() - finished_at >= _FILES_LAG
                    ):
                        raise poller.no_wav_url(task)

    def _operation(self, poller: Poller) -> Scope:
        """The wait's operation events (:meth:`changes` has none: it yields between polls)."""
        handle = poller.handle
        return operation(self.reader.hook, "wait", task_id=handle.task_id, audio_id=handle.audio_id)

    async def changes(self, poller: Poller) -> AsyncGenerator[Task, None]:
        """Polled snapshots whose status or progress differs from the one before; ends terminal."""
        previous: Task | None = None
        with poller:
            while True:
                task = await poller.next()
                if previous is None or (task.status, task.progress) != (
                    previous.status,
                    previous.progress,
                ):
                    yield task
                if task.is_terminal:
                    return
                previous = task


@attrs.define
class Poller:
    """One wait's poll loop, a step at a time: pause (maybe cut short by a
    callback), check the deadline, read the task; repeat until a read succeeds."""

    reader: Reader
    lifecycle: Lifecycle
    handle: TaskHandle
    deadline: Deadline
    schedule: PollSchedule
    delay: float  # the pause before the next poll
    pacer: CallbackPacer | None = None
    # Until when (time.monotonic()) 404s before a first answer are no news: the API
    # may not show a task it has just created (for one this client submitted: always).
    unseen_until: float = 0.0
    gate: asyncio.Semaphore | None = None  # held during each poll
    last: Task | None = None
    last_call: bool = False  # the next read is the last before the deadline
    failures: int = 0  # in a row
    strangers: int = 0  # answers about another task, in a row

    def __enter__(self) -> Poller:
        if self.pacer is not None:
            self.pacer.open()
        return self

    def __exit__(self, kind: object, error: BaseException | None, trace: object) -> None:
        """The wait is over, however it ended: a callback token it holds is released,
        and an error ending it names the task (``VidgoError.handle``), which may have
        been paid for."""
        if self.pacer is not None:
            self.pacer.close()
        if isinstance(error, VidgoError) and error.handle is None:
            error.handle = self.handle

    async def next(self) -> Task:
        """The next snapshot a poll reads, after the pause.

        Raises:
            TaskTimeoutError: The deadline passed first; carries the last snapshot.
            ClientClosedError: The client was closed.
            VidgoError: A final error answer (400, 401, 403, 404 ...).
        """
        while True:
            await self._pause()
            if self.deadline.expired():
                raise self._timeout()
            try:
                task = await self.reader.poll(self.handle.task_id, self.deadline, self.gate)
            except VidgoError as exc:
                self._no_news(exc)
                continue
            self._note(task)
            return task

    def _no_news(self, exc: VidgoError) -> None:
        """A failed poll: the next one after a pause (stretched to a ``Retry-After``),
        unless ``exc`` ends the wait - a final answer, the deadline, an API that never
        answered, or too many answers about another task (raised here)."""
        self._count_strangers(exc)
        if not (retryable(exc) or self._unseen(exc)):
            raise exc
        if self.deadline.expired():
            raise self._timeout() from exc
        if unreachable(
            exc,
            answered=self.reader.transport.answered,
            attempt=self.failures + 1,
            max_attempts=self.reader.retry.max_attempts,
        ):
            raise exc
        self.failures += 1
        max_wait = self.reader.retry.max_retry_after
        self.delay = stretch(self.schedule.next(None), exc, max_wait)
        retrying(
            self.reader.hook,
            f"polls of task {self.handle.task_id}",
            exc,
            attempt=self.failures,
            delay=self.delay,
            path=DETAIL_PATH,
            task_id=self.handle.task_id,
        )
        logger.debug("poll of %s failed (%s); next in %.2fs", self.handle, exc, self.delay)

    async def _pause(self) -> None:
        delay = self.delay
        if self.pacer is not None:
            delay = self.pacer.delay(delay, self.deadline)
        if self.last_call:  # the last read was made: nothing more before the deadline
            delay = self.deadline.clamp(delay)
        else:
            cut = self.deadline.pause(delay)
            self.last_call = cut < delay
            delay = cut
        if delay <= 0:
            return
        if self.pacer is None:
            await self.lifecycle.sleep(delay)
        elif await self.pacer.nap(delay):
            emit(self.reader.hook, "callback", task_id=self.handle.task_id)

    def _count_strangers(self, exc: VidgoError) -> None:
        """Count the answers in a row about another task: a proxy's stale answer now
        and then is retried, an API that never shows this task by its id is not.

        Raises:
            InvalidResponseError: ``_STRANGERS`` such answers in a row.
        """
        self.strangers = self.strangers + 1 if isinstance(exc, OtherTaskError) else 0
        if self.strangers >= _STRANGERS:
            raise InvalidResponseError(
                f"{self.strangers} answers in a row about another task ({exc}): the API"
                f" does not show task {self.handle.task_id!r:.80} by its id"
            ) from exc

    def _note(self, task: Task) -> None:
        self.failures = self.strangers = 0
        last = self.last
        if last is None or task.status is not last.status:
            logger.debug("task %s is %s", task.task_id, task.status.value)
            emit(self.reader.hook, "status", task_id=task.task_id, status=task.status)
            if task.status is TaskStatus.UNKNOWN:
                logger.warning(
                    "task %s has status %s, which the API does not document: still waiting",
                    task.task_id,
                    self._said(task),
                )
        if self.pacer is not None:
            self.pacer.observe(task)
        self.last = task
        self.delay = self.schedule.next(task)

    def _unseen(self, exc: VidgoError) -> bool:
        return (
            self.last is None
            and isinstance(exc, NotFoundError)
            and time.monotonic() < self.unseen_until
        )

    def _said(self, task: Task) -> str:
        """The status ``task`` was sent with, quoted, redacted and cut."""
        return repr(excerpt(redact(task.raw_status, self.reader.transport.secret), 40))

    def no_wav_url(self, task: Task) -> InvalidResponseError:
        """The error of a finished ``task`` that shows no usable WAV URL (its files
        quoted, redacted: a short key stays in the values read as data)."""
        files = f"{[dict(file) for file in task.files]!r:.300}"
        return InvalidResponseError(
            f"task {task.task_id} finished without a usable wav_url (files: {len(task.files)})",
            excerpt=redact(files, self.reader.transport.secret),
        )

    def fail_if_failed(self, task: Task) -> None:
        """Raise :class:`TaskFailedError` if ``task`` failed."""
        if task.status is TaskStatus.FAILED:
            reason = excerpt(task.error_message or "no reason given", 300)
            raise TaskFailedError(
                f"task {task.task_id} failed: {reason}",
                handle=self.handle,
                task=task,
                error_message=task.error_message,
            )

    def _timeout(self) -> TaskTimeoutError:
        """The error of a wait whose deadline passed, with what it last saw."""
        last = self.last
        state = "never read" if last is None else last.status.value
        if last is not None and last.status is TaskStatus.UNKNOWN:
            state += f" {self._said(last)}"
        if last is not None and last.progress is not None:
            state += f", {last.progress:g}%"
        return TaskTimeoutError(
            f"task {self.handle.task_id} did not finish before the deadline (last seen: "
            f"{state}); it keeps running on the server - wait on the error's handle to resume",
            handle=self.handle,
            task=last,
        )


def _unseen_until(policy: PollPolicy, submitted_at: float | None, elsewhere: bool) -> float:
    """Until when (``time.monotonic()``) a task's 404s before a first answer are no news:
    the API may not show a task it has just created. One this client submitted: always
    (within the wait's deadline); one submitted elsewhere: for ``unseen_grace``; a task
    known by a bare id (maybe mistyped, maybe long gone): never."""
    if submitted_at is not None:
        return math.inf
    return time.monotonic() + policy.unseen_grace if elsewhere else 0.0
