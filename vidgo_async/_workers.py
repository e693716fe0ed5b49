"""The workers of one ``convert_many`` run.

``concurrency`` workers each take a pair and carry it as far as it goes
without sleeping: journal, submit, the polls due at once, the download. A
pair whose task is not done yet is parked in a waiting room (one timer for
all of them) and handed back to a worker when its next poll is due; the
worker meanwhile takes other pairs. So every request goes out through the
``concurrency`` workers, a pair costs no task, timer or lock of its own,
and the input is read only while fewer than ``concurrency + max_waiting``
pairs are in flight. Results go through a bounded queue, so a slow
consumer slows the intake.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import attrs

from ._first_check import FirstCheck
from ._intake import END, Intake, Kept, Key, Pairs, describe_pair, keep, pair_key, recall
from ._journal import Entry, Journal, State, journalled_error, state_after_failed_submit
from ._models import ConversionResult
from ._urls import wav_file_name
from ._waiter import Poller, poll_while_due, wait_until_done
from ._waiting_room import WaitingRoom
from .errors import (
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    TaskFailedError,
    VidgoError,
)

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["Download", "Failure", "Run"]

logger = logging.getLogger("vidgo_async")

#: ``download(url, dest, overwrite=...)``: the client's download.
Download = Callable[..., Awaitable[Path]]

_STOP = object()  # tells a worker the batch is over (it passes it on)
_ADMIT = object()  # tells an idle worker there is room for another input pair
# Answers after which waiting on the same task again is pointless.
_TASK_IS_DONE_FOR = (TaskFailedError, BadRequestError, NotFoundError, PermissionDeniedError)


@attrs.define
class Failure:
    """The input itself failed: the batch ends with this error."""

    error: BaseException


class _Parked(NamedTuple):
    """A pair in the waiting room: what a worker needs to poll on."""

    key: Key
    poller: Poller


class Run:
    """One batch: its workers, waiting room, bookkeeping and result queue."""

    def __init__(
        self,
        engine: Engine,
        download: Download,
        pairs: Pairs,
        *,
        concurrency: int,
        max_waiting: int,
        timeout: float | None,
        journal: Journal | None,
        download_to: Path | None,
    ) -> None:
        self.engine = engine
        self.fetch = download
        self.timeout = timeout
        self.journal = journal
        self.download_to = download_to
        self.intake = Intake(pairs)
        self.workers = concurrency
        self.room_for = concurrency + max_waiting  # pairs in flight at most
        self.queue: asyncio.Queue[object] = asyncio.Queue(maxsize=max(1, concurrency))
        self.work: asyncio.Queue[object] = asyncio.Queue()  # parked pairs come due, signals
        self.idle = 0  # workers waiting on ``work``
        self.waiting_room: WaitingRoom[_Parked] = WaitingRoom(self._come_due)
        self.reading = 0  # workers reading the input (each holds a slot in flight)
        self.download_slots = asyncio.Semaphore(concurrency)
        self.tasks: set[asyncio.Task[None]] = set()  # workers and callback-paced waits
        self.extra: dict[Key, int] = {}  # in-flight pair -> duplicate occurrences seen
        self.done: dict[Key, Kept] = {}  # finished pairs, for repeats read later
        # With callbacks, the callback tells when a task is done: nothing to learn.
        self.first_check = FirstCheck(learning=engine.callbacks is None)

    async def supervise(self) -> None:
        """Run the workers (and the waits they leave); end the results with ``END``."""
        for _ in range(self.workers):
            self._spawn(self._work())
        while self.tasks:
            await asyncio.wait(set(self.tasks))
        await self.queue.put(END)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _work(self) -> None:
        try:
            while (item := await self._next_item()) is not None:
                await self._carry(*item)
        except Exception as exc:  # the input itself failed: end the batch with it
            await self.queue.put(Failure(exc))

    async def _carry(self, key: Key, parked: _Parked | None) -> None:
        """Take a pair (new, or back from the waiting room) as far as it goes without sleeping."""
        try:
            if parked is None:
                result = await self._convert(key)
            else:
                parked.poller.slept()  # its pause passed in the waiting room
                result = await self._wait(key, parked.poller, sleep=False)
        except Exception as exc:  # a bug must cost one result, not the batch
            result = _unexpected(key, exc)
        if result is not None:
            await self._deliver(key, result)

    def _come_due(self, parked: _Parked) -> None:
        """A parked pair's poll is due: for an idle worker, else for a task of its own,
        so that workers busy submitting, reading a slow input, backing off or
        waiting on a slow consumer hold up no check."""
        if self.idle > self.work.qsize():
            self.work.put_nowait(parked)
        else:
            self._spawn(self._carry(parked.key, parked))

    async def _next_item(self) -> tuple[Key, _Parked | None] | None:
        """A parked pair come due, else a new pair while there is room; ``None`` at the end."""
        work = self.work
        while True:
            if work.empty():
                if self._may_read():
                    self.reading += 1
                    try:
                        key = await self._next_key()
                    finally:
                        self.reading -= 1
                    if key is not None:
                        if self.intake.is_async and self.idle and self._may_read():
                            work.put_nowait(_ADMIT)  # the next reader
                        return key, None
                    self._maybe_over()
                    continue
                self.idle += 1
                try:
                    item = await work.get()
                finally:
                    self.idle -= 1
            else:
                item = work.get_nowait()
            if item is _STOP:
                work.put_nowait(_STOP)  # for the next worker
                return None
            if isinstance(item, _Parked):
                return item.key, item

    def _may_read(self) -> bool:
        """Whether a worker may read the input now: there is room in flight, and
        no other worker waits on an async input (the rest wait for parked pairs)."""
        intake = self.intake
        if intake.done or len(self.extra) + self.reading >= self.room_for:
            return False
        return not (intake.is_async and self.reading)

    def _maybe_over(self) -> None:
        if self.intake.done and not self.extra:
            self.work.put_nowait(_STOP)

    async def _next_key(self) -> Key | None:
        """The next distinct pair to convert; malformed and repeated pairs are answered here."""
        intake = self.intake
        while (pair := await intake.next() if intake.is_async else intake.next_now()) is not END:
            try:
                key = pair_key(pair)
            except (TypeError, ValueError) as exc:
                source, audio = describe_pair(pair)
                await self.queue.put(
                    ConversionResult(source_task_id=source, audio_id=audio, error=exc)
                )
                continue
            if key in self.done:
                await self.queue.put(recall(key, self.done[key]))
            elif key in self.extra:
                self.extra[key] += 1
            else:
                self.extra[key] = 0
                return key
        return None

    async def _deliver(self, key: Key, result: ConversionResult) -> None:
        # The pair keeps its slot in flight until its result is queued: a slow
        # consumer must slow the intake. Repeats read meanwhile find it in ``done``.
        self.done[key] = keep(result)
        queue = self.queue
        for _ in range(1 + self.extra[key]):
            try:
                queue.put_nowait(result)  # no coroutine for the usual case
            except asyncio.QueueFull:
                await queue.put(result)
        del self.extra[key]
        if self.idle and not self.intake.done:
            self.work.put_nowait(_ADMIT)  # room for another pair, and a worker waiting
        self._maybe_over()

    async def _convert(self, key: Key) -> ConversionResult | None:
        """Carry a pair as far as it goes without sleeping; ``None`` if its wait sleeps on."""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        entry = self.journal.get(*key) if self.journal else None
        if entry is not None and entry.state in (State.FINISHED, State.FAILED, State.UNKNOWN):
            return await self._from_journal(key, entry)
        started: float | None = None  # an earlier run's task: its 404 is news
        if entry is not None and entry.state is State.ACCEPTED and entry.task_id:
            task_id, at_once = entry.task_id, False  # an earlier run's task teaches nothing
        else:
            resumed = entry is not None and entry.state is State.SUBMITTING
            submitted = await self._submit(key, deadline, resumed=resumed)
            if isinstance(submitted, ConversionResult):
                return submitted
            task_id, at_once = submitted, self.first_check.check_at_once()
            started = time.monotonic()
        poller = self.engine.poller(
            (task_id, *key), deadline, started=started, first_delay=0.0 if at_once else None
        )
        return await self._wait(key, poller, sleep=False, learn=at_once)

    async def _submit(
        self, key: Key, deadline: float | None, *, resumed: bool
    ) -> str | ConversionResult:
        """The accepted task's id, or the pair's result if the submit failed."""
        journal = self.journal
        if journal is not None:
            journal.record(*key, State.SUBMITTING)  # only now may the request go out
        try:
            task_id = await self.engine.submit_for_wait(
                {"task_id": key[0], "audio_id": key[1]}, None, deadline, resumed=resumed
            )
        except VidgoError as exc:
            self._record(key, state_after_failed_submit(exc), error=exc)
            return ConversionResult(source_task_id=key[0], audio_id=key[1], error=exc)
        if journal is not None:
            journal.record(*key, State.ACCEPTED, task_id=task_id)
        return task_id

    async def _wait(
        self, key: Key, poller: Poller, *, sleep: bool, learn: bool = False
    ) -> ConversionResult | None:
        """Wait for the task, then download; ``None`` if the wait goes on elsewhere.

        Without ``sleep`` only the polls due at once are made; a task not
        done by then is parked in the waiting room (or, paced by callbacks,
        left to a task of its own), and its worker moves on. ``learn``: the
        first check was made at once, and tells whether tasks are instant.
        """
        try:
            if sleep:
                task = await wait_until_done(poller, wav=True)
            else:
                done = await poll_while_due(poller, wav=True)
                if learn:
                    # A check that was made but brought no answer (not visible yet,
                    # a transient error) says the task is not done at once.
                    self._learn(done is not None if poller.polled else None)
                    if poller.last is None:  # no answer yet: the policy's pause
                        poller.defer()
                if done is None:
                    self._wait_elsewhere(key, poller)
                    return None
                task = done
        except BaseException as exc:
            if learn:
                self._learn(None)
            if not isinstance(exc, VidgoError):
                raise
            if isinstance(exc, _TASK_IS_DONE_FOR):
                self._record(key, State.FAILED, task_id=poller.task_id, error=exc)
            # Otherwise (deadline, account trouble, ...) it stays accepted: a re-run waits again.
            return ConversionResult(
                source_task_id=key[0], audio_id=key[1], task_id=poller.task_id, error=exc
            )
        wav_url = task.wav_url
        if self.journal is not None:
            self.journal.record(*key, State.FINISHED, task_id=task.task_id, wav_url=wav_url)
        result = ConversionResult(
            source_task_id=key[0], audio_id=key[1], task_id=poller.task_id, wav_url=wav_url
        )
        return result if self.download_to is None else await self._download(key, result)

    def _wait_elsewhere(self, key: Key, poller: Poller) -> None:
        if (pause := poller.pause) > 0 and not poller.paced:
            self.waiting_room.park(_Parked(key, poller), pause)
        else:
            # Callbacks may cut its pause short, or its poll must queue for the
            # rate cap: either way it waits in a task of its own, not in a worker.
            self._spawn(self._sleep_on(key, poller))

    def _learn(self, done: bool | None) -> None:
        if self.first_check.learn(done):
            # Tasks are done at once: first checks parked meanwhile need not wait.
            # They go to the workers, which take them before any new pair: no
            # task of their own each, and no more requests at once than workers.
            for parked in self.waiting_room.take(lambda parked: not parked.poller.polled):
                self.work.put_nowait(parked)

    async def _sleep_on(self, key: Key, poller: Poller) -> None:
        try:
            result = await self._wait(key, poller, sleep=True)
        except Exception as exc:  # a bug must cost one result, not the batch
            result = _unexpected(key, exc)
        assert result is not None  # sleep=True waits to the end
        await self._deliver(key, result)

    async def _download(self, key: Key, result: ConversionResult) -> ConversionResult:
        if self.download_to is None or result.wav_url is None:
            return result
        dest = self.download_to / wav_file_name(result.audio_id)
        try:
            async with self.download_slots:
                path = await self.fetch(result.wav_url, dest, overwrite=True)
        except (VidgoError, OSError, ValueError) as exc:  # ValueError: a refused URL
            return attrs.evolve(result, error=exc)
        self._record(key, State.FINISHED, task_id=result.task_id, wav_url=result.wav_url, path=path)
        return attrs.evolve(result, path=path)

    async def _from_journal(self, key: Key, entry: Entry) -> ConversionResult:
        result = ConversionResult(
            source_task_id=key[0], audio_id=key[1], task_id=entry.task_id, wav_url=entry.wav_url
        )
        if entry.state is State.FINISHED:
            if entry.path and _exists(entry.path):
                return attrs.evolve(result, path=Path(entry.path))
            return await self._download(key, result)
        return attrs.evolve(result, error=journalled_error(entry, *key))

    def _record(
        self,
        key: Key,
        state: State,
        *,
        task_id: str | None = None,
        wav_url: str | None = None,
        path: Path | None = None,
        error: BaseException | None = None,
    ) -> None:
        if self.journal is None:
            return
        self.journal.record(
            *key,
            state,
            task_id=task_id,
            wav_url=wav_url,
            path=str(path) if path else None,
            error=error,
        )

    async def close(self, supervisor: asyncio.Task[None]) -> None:
        self.waiting_room.close()
        pending = [supervisor, *self.tasks]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _unexpected(key: Key, exc: Exception) -> ConversionResult:
    logger.exception("conversion of %s failed unexpectedly", key)
    return ConversionResult(source_task_id=key[0], audio_id=key[1], error=exc)


def _exists(path: str) -> bool:
    return Path(path).is_file()  # one stat, once per pair a re-run finds finished
