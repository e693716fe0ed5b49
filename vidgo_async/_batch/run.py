"""``convert_many``: thousands of conversions, streamed, bounded, resumable.

One task per distinct pair, under two semaphores: ``concurrency`` bounds the
batch's requests in flight (submits, status reads, downloads); the other its
pairs in flight, at most ``concurrency + max_waiting`` (the input is read
only while there is room) and at most what the poll cap can serve (a task
accepted, then timed out unpolled, was paid for nothing). A pair keeps its
room until its result is queued, and the result queue is bounded, so a slow
consumer slows the intake; its journal row is settled as the consumer takes
the result (:meth:`_Batch._settle`). A pair waiting on its task costs one sleeping
task; every status read also goes through the client-wide poll rate cap.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import attrs

from .._events import EventHook, operation
from .._models import WAV_MODEL, ConversionResult, TaskHandle
from .._ops.submit import Submitter
from .._ops.wait import Waits
from .._timing.classify import ends_the_task, refuses_the_account
from .._timing.deadline import Deadline
from .._validate import check_count, check_folder, check_timeout
from ..errors import (
    VidgoError,
)
from .intake import Key, Pairs, describe_pair, each_pair, pair_key, wav_file_name
from .journal import Entry, Journal, State, journalled_error, state_after_failed_submit
from .journals import BatchJournal, JournalSource, LostClaim, open_journal

__all__ = ["BatchProgress", "Download", "Pairs", "start_batch"]

logger = logging.getLogger("vidgo_async")

#: ``download(url, dest, overwrite=...)``: the client's download.
Download = Callable[..., Awaitable[Path]]

_END = object()  # the last item of the result queue
#: Seconds a stopped batch waits for its submits in flight to be answered.
SUBMIT_GRACE = 10.0
_KEEP_LEARNED_EVERY = 20  # finished pairs between saves of the learned durations to the journal


@attrs.frozen(kw_only=True)
class BatchProgress:
    """Counts of a running batch, passed to ``on_progress`` after each result.

    Attributes:
        read: Input pairs read so far.
        done: Results delivered so far.
        succeeded: Results that are ``ok``.
        failed: Results that are not.
        in_flight: Distinct pairs being submitted, waited on, downloaded, or
            waiting to be reported.
        input_done: Whether the whole input has been read.
    """

    read: int
    done: int
    succeeded: int
    failed: int
    in_flight: int
    input_done: bool


@attrs.frozen
class _Outcome:
    """A pair's result, and the state the journal learns from it right before it is
    reported (None: nothing new; a result that is not ok is reported only once the
    claim on the pair is confirmed)."""

    key: Key
    result: ConversionResult
    state: State | None


@attrs.frozen
class _InputFailed:
    """The input itself failed: the batch ends with this error."""

    error: BaseException


def start_batch(
    submitter: Submitter,
    waits: Waits,
    download: Download,
    pairs: Pairs,
    *,
    concurrency: object,
    max_waiting: object,
    timeout: object,
    journal: str | os.PathLike[str] | JournalSource | None,
    download_to: str | os.PathLike[str] | None,
    on_progress: Callable[[BatchProgress], object] | None,
    hook: EventHook | None = None,
) -> AsyncGenerator[ConversionResult, None]:
    """Check the arguments of ``convert_many`` (before any request), then run it.

    Raises:
        TypeError, ValueError: A bad argument.
        ConfigurationError: ``journal`` cannot be used.
    """
    concurrency = check_count("concurrency", concurrency)
    room = concurrency + check_count("max_waiting", max_waiting)
    if journal is not None and not isinstance(journal, JournalSource):
        Journal.check(journal)  # a PostgreSQL journal is checked when the batch starts
    batch = _Batch(
        submitter,
        waits,
        download,
        pairs,
        concurrency=concurrency,
        room=room,
        timeout=check_timeout(timeout),
        journal_path=journal,
        download_to=check_folder(download_to),
        hook=hook,
    )
    return batch.results(on_progress)


@attrs.define
class _Batch:
    """One ``convert_many`` run: its pairs' tasks, its bookkeeping and its result queue."""

    submitter: Submitter
    waits: Waits
    download: Download
    pairs: Pairs
    concurrency: int = attrs.field(kw_only=True)
    room: int = attrs.field(kw_only=True)
    timeout: float | None = attrs.field(kw_only=True)
    journal_path: str | os.PathLike[str] | JournalSource | None = attrs.field(kw_only=True)
    download_to: Path | None = attrs.field(kw_only=True)
    hook: EventHook | None = attrs.field(kw_only=True, default=None)
    journal: BatchJournal | None = attrs.field(init=False, default=None)
    queue: asyncio.Queue[Any] = attrs.field(init=False)
    slots: asyncio.Semaphore = attrs.field(init=False)  # pairs in flight
    busy: asyncio.Semaphore = attrs.field(init=False)  # requests in flight
    tasks: set[asyncio.Task[None]] = attrs.field(init=False, factory=set)
    in_flight: dict[Key, int] = attrs.field(init=False, factory=dict)  # -> repeats seen
    # -> its result; None: another worker holds the pair and reports it
    done: dict[Key, ConversionResult | None] = attrs.field(init=False, factory=dict)
    # Pairs another worker held when claimed, looked at again at the end -> repeats seen
    aside: dict[Key, int] = attrs.field(init=False, factory=dict)
    read: int = attrs.field(init=False, default=0)
    input_done: bool = attrs.field(init=False, default=False)
    refused: VidgoError | None = attrs.field(init=False, default=None)
    # The pairs' tasks with a submit in flight: a stop leaves them to finish it.
    submits: set[asyncio.Task[Any]] = attrs.field(init=False, factory=set)
    stopping: bool = attrs.field(init=False, default=False)  # no new waits once set
    unsaved: int = attrs.field(init=False, default=0)  # pairs finished since the last save

    def __attrs_post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.concurrency)
        self.slots = asyncio.Semaphore(min(self.room, self.waits.capacity()))
        self.busy = asyncio.Semaphore(self.concurrency)

    async def results(
        self, on_progress: Callable[[BatchProgress], object] | None
    ) -> AsyncGenerator[ConversionResult, None]:
        """Run the batch; yield each result as it is queued."""
        if self.journal_path is not None:
            self.journal = await open_journal(self.journal_path)
            for model, seen in (await self.journal.learned()).items():  # start warm
                self.waits.learner.durations(model).restore(seen)
        feeder = asyncio.create_task(self._feed())
        done = succeeded = 0
        try:
            while (item := await self.queue.get()) is not _END:
                if isinstance(item, _InputFailed):
                    raise item.error
                if isinstance(item, _Outcome):
                    result, times = item.result, await self._settle(item)
                else:
                    result, times = item, 1
                for _ in range(times):
                    done += 1
                    succeeded += result.ok
                    if on_progress is not None:
                        on_progress(
                            BatchProgress(
                                read=self.read,
                                done=done,
                                succeeded=succeeded,
                                failed=done - succeeded,
                                in_flight=len(self.in_flight),
                                input_done=self.input_done,
                            )
                        )
                    yield result
        finally:
            self.stopping = True
            pending = [feeder, *self.tasks]
            for task in pending:
                if task not in self.submits:
                    task.cancel()
            await self._finish_submits()
            await asyncio.gather(*pending, return_exceptions=True)
            if self.journal is not None:
                await self._keep_learned()
                await self.journal.close()

    async def _finish_submits(self) -> None:
        """Give the submits in flight a moment to be answered and journalled, so that a
        stopped batch's re-run waits on their tasks: a 409 that names no task could
        not tell it which one its track was converted into."""
        if self.submits:
            _, late = await asyncio.wait(set(self.submits), timeout=SUBMIT_GRACE)
            for task in late:
                task.cancel()

    async def _feed(self) -> None:
        """Read the input while there is room, start a task per new pair, then end the queue.

        The batch's operation events come from here: the pairs' tasks start inside it.
        """
        with operation(self.hook, "batch") as scope:
            try:
                async for pair in each_pair(self.pairs):
                    self.read += 1
                    await self._admit(pair)
            except Exception as exc:  # the input itself failed: the batch ends with it
                scope.note(error=type(exc).__name__)
                await self.queue.put(_InputFailed(exc))
                return
            self.input_done = True
            await self._finish()
        await self.queue.put(_END)

    async def _finish(self) -> None:
        """Wait for this worker's pairs, then for those another worker held: each ends
        settled by its holder (who reports it) or free, when this worker takes it over
        (its holder let go, or died and its lease ran out). A holder's pair takes
        ``timeout`` at most, and a dead holder is seen a lease later: waited for no
        longer than that, then left to its holder."""
        patience: Deadline | None = None
        while True:
            while self.tasks:
                await asyncio.wait(set(self.tasks))
            aside, journal = self.aside, self.journal
            if not aside or journal is None:
                return
            if patience is None:
                lease = 3 * journal.recheck_every
                patience = Deadline.after(None if self.timeout is None else self.timeout + lease)
            if patience.expired():
                logger.warning("%d pairs still held by other workers: left to them", len(aside))
                return
            free, held = await journal.recheck(list(aside))
            for key in aside.keys() - {*free, *held}:  # settled: its holder reports it
                del aside[key]
                self.done[key] = None
            for key in free:
                await self._take(key, repeats=aside.pop(key))
            if not free and aside:
                await asyncio.sleep(journal.recheck_every)

    async def _admit(self, pair: Any) -> None:
        try:
            key = pair_key(pair)
        except (TypeError, ValueError) as exc:
            source, audio = describe_pair(pair)
            await self.queue.put(ConversionResult(source_task_id=source, audio_id=audio, error=exc))
            return
        if key in self.done:
            if (known := self.done[key]) is not None:
                await self.queue.put(known)
        elif key in self.in_flight:
            self.in_flight[key] += 1
        elif key in self.aside:
            self.aside[key] += 1
        else:
            await self._take(key, repeats=0)

    async def _take(self, key: Key, *, repeats: int) -> None:
        """Start the pair's task once there is room."""
        await self.slots.acquire()
        await self.busy.acquire()  # the pair's submit goes out under this permit
        self.in_flight[key] = repeats
        self._spawn(self._carry(key))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _carry(self, key: Key) -> None:
        """Convert one pair and queue its outcome for the consumer, who settles and reports it."""
        ids = {"model": WAV_MODEL, "source_task_id": key[0], "audio_id": key[1]}
        try:
            try:
                with operation(self.hook, "pair", **ids) as scope:
                    converted = await self._convert(key)
                    if converted is None:  # another worker holds it: look again at the end
                        self.aside[key] = self.in_flight.pop(key)
                        return
                    result, state = converted
                    error = None if result.error is None else type(result.error).__name__
                    scope.note(task_id=result.task_id, error=error)
            except LostClaim as exc:
                self._drop(key, exc)
                return
            except Exception as exc:  # a bug must cost one result, not the batch
                logger.exception("conversion of %s failed unexpectedly", key)
                result = ConversionResult(source_task_id=key[0], audio_id=key[1], error=exc)
                state = None
            await self.queue.put(_Outcome(key, result, state))
        finally:
            self.slots.release()

    async def _settle(self, outcome: _Outcome) -> int:
        """Write what the journal must know of a pair right before its result is
        reported, as the consumer takes it; how many times to report it (once per
        occurrence read so far; none: another worker reports it now).

        Settled only now, a pair whose worker stops or dies first is still
        accepted: another worker of the run (or a re-run) polls its task once more
        and reports it, where a settled pair would go unreported until a re-run.
        The pair stays in flight until then, so a repeat read meanwhile is counted.
        """
        key, result = outcome.key, outcome.result
        if self.journal is not None:
            try:
                if outcome.state is not None:
                    error = None if outcome.state is State.FINISHED else result.error
                    await self._record(
                        key,
                        outcome.state,
                        task_id=result.task_id,
                        wav_url=result.wav_url,
                        path=result.path,
                        error=error,
                    )
                elif not result.ok:
                    await self.journal.hold(*key)
            except LostClaim as exc:
                self._drop(key, exc)
                return 0
            except Exception:  # the journal failed: the result stands, a re-run polls again
                logger.exception("could not journal the result of %s/%s", *key)
        self.done[key] = result
        return 1 + self.in_flight.pop(key)

    def _drop(self, key: Key, exc: LostClaim) -> None:
        """Another worker holds the pair now: its result is that worker's to report."""
        logger.warning("dropped %s/%s: %s (its result is the other worker's to report)", *key, exc)
        self.in_flight.pop(key)
        self.done[key] = None

    async def _convert(self, key: Key) -> tuple[ConversionResult, State | None] | None:
        """The pair's result and the state its journal row is to settle in (see
        :class:`_Outcome`); None if another worker holds the pair."""
        deadline = Deadline.after(self.timeout)
        try:
            started = await self._start(key, deadline)
        finally:
            self.busy.release()  # the permit the feeder took for this pair's submit
        if started is None:  # another worker holds the pair
            return None
        if isinstance(started, Entry):
            return await self._from_journal(key, started)
        if isinstance(started, ConversionResult):
            return started, None
        task_id, submitted_at = started
        handle = TaskHandle(task_id=task_id, source_task_id=key[0], audio_id=key[1])
        poller = self.waits.poller(handle, deadline, submitted_at=submitted_at, gate=self.busy)
        try:
            wav_url = await self.waits.wav_url(poller)
        except VidgoError as exc:
            failed = ConversionResult(
                source_task_id=key[0], audio_id=key[1], task_id=task_id, error=exc
            )
            # Unless the task ended, (deadline, account trouble ...) it stays accepted:
            # a re-run waits again.
            return failed, State.FAILED if ends_the_task(exc) else None
        self.unsaved += 1
        if self.unsaved >= _KEEP_LEARNED_EVERY:
            await self._keep_learned()
        result = ConversionResult(
            source_task_id=key[0], audio_id=key[1], task_id=task_id, wav_url=wav_url
        )
        return await self._download(result), State.FINISHED

    async def _start(
        self, key: Key, deadline: Deadline
    ) -> Entry | ConversionResult | tuple[str, float | None] | None:
        """What the journal knows of the pair, its result if no task is known, or
        the task to wait on and when this run submitted it (``None``: an earlier run);
        ``None`` if another worker holds the pair, or the batch stopped during the submit."""
        claimed, entry = await self.journal.claim(*key) if self.journal else (True, None)
        if not claimed:
            return None
        if entry is not None and entry.state in (State.FINISHED, State.FAILED, State.UNKNOWN):
            return entry
        if entry is not None and entry.state is State.ACCEPTED and entry.task_id:
            return entry.task_id, None  # an earlier run's task: its 404 is news
        if self.refused is not None:  # the account cannot submit: not attempted
            return ConversionResult(source_task_id=key[0], audio_id=key[1], error=self.refused)
        resumed = entry is not None and entry.state is State.SUBMITTING
        # Stopping the batch must not leave a track converted and its task unknown:
        # a pair's task is not cancelled during its submit (see :meth:`_finish_submits`).
        this = asyncio.current_task()
        assert this is not None  # the pairs run in tasks of their own
        self.submits.add(this)
        try:
            started = await self._submit(key, deadline, resumed=resumed)
        finally:
            self.submits.discard(this)
        return None if self.stopping else started

    async def _submit(
        self, key: Key, deadline: Deadline, *, resumed: bool
    ) -> ConversionResult | tuple[str, float]:
        """Submit the pair, journalled before and after; its task, or its result."""
        await self._record(key, State.SUBMITTING)  # only now may the request go out
        input = {"task_id": key[0], "audio_id": key[1]}
        # The paid step: each attempt goes out only while this worker holds the pair.
        hold = None if self.journal is None else functools.partial(self.journal.hold, *key)
        try:
            accepted = await self.submitter.submit(
                WAV_MODEL,
                input,
                callback_url=None,
                deadline=deadline,
                adopt=True,
                resumed=resumed,
                before_send=hold,
            )
        except VidgoError as exc:
            if refuses_the_account(exc) and self.refused is None:
                self.refused = exc
                logger.info("batch submits stopped: %s", exc)
            await self._record(key, state_after_failed_submit(exc), error=exc)
            return ConversionResult(source_task_id=key[0], audio_id=key[1], error=exc)
        await self._record(key, State.ACCEPTED, task_id=accepted.task_id)
        return accepted.task_id, time.monotonic()

    async def _download(self, result: ConversionResult) -> ConversionResult:
        """The result with its file in ``download_to`` (if asked), or the download's error."""
        if self.download_to is None or result.wav_url is None:
            return result
        dest = self.download_to / wav_file_name(result.audio_id)
        try:
            async with self.busy:
                path = await self.download(result.wav_url, dest, overwrite=True)
        except (VidgoError, OSError, ValueError) as exc:  # ValueError: a refused URL
            return attrs.evolve(result, error=exc)
        return attrs.evolve(result, path=path)

    async def _from_journal(self, key: Key, entry: Entry) -> tuple[ConversionResult, State | None]:
        """An earlier run's result, downloaded again if its file is gone."""
        result = ConversionResult(
            source_task_id=key[0], audio_id=key[1], task_id=entry.task_id, wav_url=entry.wav_url
        )
        if entry.state is not State.FINISHED:
            return attrs.evolve(result, error=journalled_error(entry, *key)), None
        if entry.path and Path(entry.path).is_file():  # noqa: ASYNC240 - one stat per re-run pair
            return attrs.evolve(result, path=Path(entry.path)), None
        downloaded = await self._download(result)
        return downloaded, State.FINISHED if downloaded.path is not None else None

    async def _keep_learned(self) -> None:
        """Save to the journal what the client learned of task durations."""
        self.unsaved = 0
        if self.journal is not None:
            learner = self.waits.learner
            for model in learner.models():
                await self.journal.keep_learned(model, learner.durations(model).observations())

    async def _record(
        self,
        key: Key,
        state: State,
        *,
        task_id: str | None = None,
        wav_url: str | None = None,
        path: Path | None = None,
        error: BaseException | None = None,
    ) -> None:
        if self.journal is not None:
            await self.journal.record(
                *key,
                state,
                task_id=task_id,
                wav_url=wav_url,
                path=None if path is None else str(path),
                error=error,
            )
