"""One batch pair's steps: its journal row, its submit, its wait, its download.

:meth:`PairSteps.convert` takes a pair from its journal row to its result:
answered from the journal, waited on (an earlier run's task), or submitted
(journalled before and after) and waited on; then downloaded if asked. Every
request goes out under ``busy``, the batch's ``concurrency`` semaphore, taken
once the request may go (past its rate cap or a 429's pause), for the request only.
:meth:`PairSteps.settle` writes what the journal must know of the result
right before it is reported. How many pairs run at once, and in what order,
is the run's business (``run.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import attrs

from .._lifecycle import cancel_after_grace
from .._models import WAV_MODEL, ConversionResult, TaskHandle
from .._ops.submit import Submitter
from .._ops.wait import Waits
from .._timing.classify import Failure, classify, ends_the_task, refuses_the_account
from .._timing.deadline import Deadline
from .._wire.wavfile import owned, part_of
from ..errors import ClientClosedError, ConfigurationError, SubmitOutcomeUnknownError, VidgoError
from .intake import Key, result_of, wav_file_name
from .journal import REPORTED, BatchJournal, Entry, JournalWriteError, State
from .verdicts import (
    journalled_error,
    kept_task,
    kept_url,
    state_after_failed_submit,
    task_to_wait_on,
)

__all__ = ["Download", "PairSteps"]

logger = logging.getLogger("vidgo_async")

#: ``download(url, dest, overwrite=...)``: the client's download.
Download = Callable[..., Awaitable[Path]]

_KEEP_LEARNED_EVERY = 20  # finished pairs between saves of the learned durations to the journal
_UNCLEAR = "the batch stopped as the submit of %s/%s may have been accepted (%s)"
_ACCEPTED = "the batch stopped as the server accepted task %s for %s/%s (%s)"
_LEFT = "the batch stopped and no journal keeps task %s of %s/%s, paid for and %s"
_RUNNING = "still running: wait on it by its id"


@attrs.define
class PairSteps:
    """The steps of the batch's pairs, and what they share: the clients' operations,
    the journal, the semaphores, the account's refusal and the stop."""

    submitter: Submitter
    waits: Waits
    download: Download
    busy: asyncio.Semaphore  # the batch's requests in flight
    submitting: asyncio.Semaphore  # its submits (their journal rows, pauses and attempts)
    timeout: float | None = attrs.field(kw_only=True)
    download_to: Path | None = attrs.field(kw_only=True)
    journal: BatchJournal | None = attrs.field(kw_only=True, default=None)
    # A 401, 402 or 403 on a submit: the batch's submits stop.
    refused: VidgoError | None = attrs.field(init=False, default=None)
    # The pairs' tasks with a submit attempt out, or answered: a stop leaves them to finish.
    submits: set[asyncio.Task[Any]] = attrs.field(init=False, factory=set)
    stopping: bool = attrs.field(init=False, default=False)  # no new waits once set
    # Pairs the journal failed before their submit: their results confirm no claim.
    unjournalled: set[Key] = attrs.field(init=False, factory=set)
    unsaved: int = attrs.field(init=False, default=0)  # pairs finished since the last save
    # Files being downloaded -> the lock of their writers (gone with its last user).
    writers: weakref.WeakValueDictionary[Path, asyncio.Lock] = attrs.field(
        init=False, factory=weakref.WeakValueDictionary
    )

    async def convert(self, key: Key) -> tuple[ConversionResult, State | None] | None:
        """The pair's result and the state its journal row is to settle in (``None``:
        nothing new; see :meth:`settle`); ``None`` if another worker holds the pair.

        Called holding a permit of ``submitting``, which it releases.
        """
        deadline = Deadline.after(self.timeout)
        try:
            started = await self._start(key, deadline)
        finally:
            self.submitting.release()
        if started is None:  # another worker holds the pair
            return None
        if isinstance(started, Entry):
            return await self._from_journal(key, started)
        if isinstance(started, ConversionResult):
            return started, None
        task_id = started.task_id
        handle = TaskHandle(task_id=task_id, source_task_id=key[0], audio_id=key[1])
        poller = self.waits.poller(
            handle,
            deadline,
            submitted_at=started.submitted_at,
            elsewhere=started.submitted_at is None,
            gate=self.busy,
        )
        try:
            wav_url = await self.waits.wav_url(poller)
        except asyncio.CancelledError:  # a stop
            self._unkept(key, task_id, _RUNNING)
            raise
        except VidgoError as exc:
            if isinstance(exc, ClientClosedError):  # its result may reach no loop
                self._unkept(key, task_id, _RUNNING)
            failed = result_of(key, task_id=task_id, error=exc)
            # Unless the server said the task failed, it stays accepted (a deadline, a
            # 404 or a proxy's 403 on a read of a paid task): a re-run waits again.
            return failed, State.FAILED if ends_the_task(exc) else None
        self.unsaved += 1
        if self.unsaved >= _KEEP_LEARNED_EVERY:
            await self.keep_learned()
        result = result_of(key, task_id=task_id, wav_url=wav_url)
        try:
            downloaded = await self._download(result)
        except asyncio.CancelledError:  # a stop
            self._unkept(key, task_id, f"finished, not downloaded: {wav_url}")
            raise
        if isinstance(downloaded.error, ClientClosedError):  # its result may reach no loop
            self._unkept(key, task_id, f"finished, not downloaded: {wav_url}")
        return downloaded, State.FINISHED

    async def settle(self, key: Key, result: ConversionResult, state: State | None) -> None:
        """Write what the journal must know of the pair right before its result is
        reported: ``state`` (finished or failed), or, for a result that is not ok
        and changes nothing, that this worker still holds the pair (unless the
        journal failed the pair before its submit: nothing to confirm then).

        Raises:
            LostClaim: Another worker holds the pair now: its result is that
                worker's to report.
            JournalWriteError: The journal failed (the result stands).
        """
        if self.journal is None:
            return
        if key in self.unjournalled:  # nothing to confirm: the journal failed the pair
            self.unjournalled.discard(key)
        elif state is not None:
            error = None if state is State.FINISHED else result.error
            row = Entry.written(
                state, task_id=result.task_id, wav_url=result.wav_url, path=result.path, error=error
            )
            await self.journal.record(*key, row)
        elif not result.ok:
            await self.journal.hold(*key, reported=True)

    async def stop(self, tasks: Iterable[asyncio.Task[Any]]) -> None:
        """Cancel ``tasks``, except those whose submit has an attempt out (or one
        answered, its task not yet journalled): they get a moment to be answered and
        journalled, so that a stopped batch's re-run waits on their tasks (a 409 that
        names no task could not tell it which one its track was converted into); they
        wait on nothing after it. A submit waiting for its first attempt, or after one
        refused (a 429's pause), has nothing to lose: cancelled at once."""
        self.stopping = True
        for task in tasks:
            if task not in self.submits:
                task.cancel()
        await cancel_after_grace(self.submits, self.submitter.grace)

    async def keep_learned(self) -> None:
        """Save to the journal what the client learned of task durations."""
        self.unsaved = 0
        if self.journal is not None:
            learner = self.waits.learner
            for model in learner.models():
                await self.journal.keep_learned(model, learner.durations(model).observations())

    async def _start(
        self, key: Key, deadline: Deadline
    ) -> Entry | ConversionResult | _ToWait | None:
        """What the journal knows of the pair, its result if no task is known, or
        the task to wait on and when this run submitted it (``None``: an earlier run);
        ``None`` if another worker holds the pair, or the batch stopped during the submit."""
        try:
            claimed, entry = await self.journal.claim(*key) if self.journal else (True, None)
        except JournalWriteError as exc:
            return self._not_sent(key, f"the journal could not claim the pair ({exc})")
        if not claimed:
            return None
        if entry is not None and (task_id := task_to_wait_on(entry)) is not None:
            return _ToWait(task_id, None)  # an earlier run's task (submitted elsewhere)
        if entry is not None and entry.state in REPORTED:
            return entry
        if self.refused is not None:  # the account cannot submit: not attempted
            return result_of(key, error=self.refused)
        # Caught mid-submit, or accepted under a task id the row no longer keeps (an
        # edit by hand): the submit rule settles what an earlier attempt did.
        resumed = entry is not None and entry.state in (State.SUBMITTING, State.ACCEPTED)
        sending = _Sending(self, key)
        try:
            started = await self._submit(key, deadline, sending, resumed=resumed)
        except asyncio.CancelledError:  # by a stop: between attempts, or past its grace
            if sending.unclear or _current() in self.submits:
                logger.warning(_UNCLEAR, *key, self._kept())
            raise
        finally:  # kept from a stop's cancel since an attempt went out (see _Sending)
            self.submits.discard(_current())
        if not self.stopping:
            return started
        if isinstance(started, _ToWait):  # paid for, and never waited on: say which task
            logger.warning(_ACCEPTED, started.task_id, *key, f"not waited on; {self._kept()}")
        elif isinstance(started.error, SubmitOutcomeUnknownError):
            logger.warning(_UNCLEAR, *key, self._kept())
        return None

    def _unkept(self, key: Key, task_id: str, where: str) -> None:
        """Name a paid task the batch stopped (left, cancelled or its client closed)
        before its result was reported: without a journal, nothing else keeps it."""
        if self.journal is None:
            logger.warning(_LEFT, task_id, *key, where)

    def _kept(self) -> str:
        return "its journal keeps it for a re-run" if self.journal else "there is no journal"

    async def _submit(
        self, key: Key, deadline: Deadline, sending: _Sending, *, resumed: bool
    ) -> ConversionResult | _ToWait:
        """Submit the pair, journalled before and after; its task, or its result."""
        try:
            await self._record(key, State.SUBMITTING)  # only now may it go out
        except JournalWriteError as exc:
            return self._not_sent(key, f"the journal could not record the submit ({exc})")
        input = {"task_id": key[0], "audio_id": key[1]}
        try:
            accepted = await self.submitter.submit(
                WAV_MODEL,
                input,
                callback_url=None,
                deadline=deadline,
                adopt=True,
                resumed=resumed,
                shield=False,  # not cancelled while an attempt is out: see stop()
                gate=sending,
            )
        except VidgoError as exc:
            # An unclear submit carries the refusal that ended it as its answer.
            refusal = exc.answer if isinstance(exc, SubmitOutcomeUnknownError) else exc
            if refusal is not None and refuses_the_account(refusal) and self.refused is None:
                self.refused = refusal
                logger.info("batch submits stopped: %s", refusal)
            try:
                await self._record(key, state_after_failed_submit(exc), error=exc)
            except JournalWriteError as failure:  # the submit's own error says more
                logger.error("could not journal the failed submit of %s/%s (%s)", *key, failure)
            if self.refused is not None and _withheld(exc):  # why it was not sent
                return result_of(key, error=self.refused)
            return result_of(key, error=exc)
        try:
            await self._record(key, State.ACCEPTED, task_id=accepted.task_id)
        except JournalWriteError as exc:  # a full disk, a locked file: the paid task is ours
            logger.error(
                "could not journal task %s of %s/%s (%s); waiting on it anyway",
                accepted.task_id,
                *key,
                exc,
            )
        except asyncio.CancelledError:  # a stop's grace ran out during the write: name it
            logger.warning(_ACCEPTED, accepted.task_id, *key, "not journalled")
            sending.unclear = False  # named: nothing left unclear for _start to say
            self.submits.discard(_current())
            raise
        return _ToWait(accepted.task_id, time.monotonic())

    def _not_sent(self, key: Key, reason: str) -> ConversionResult:
        """The result of a pair the journal failed before its submit."""
        self.unjournalled.add(key)
        error = ConfigurationError(f"{reason}: nothing was sent for it")
        return result_of(key, error=error)

    async def may_send(self, key: Key) -> None:
        """Before each attempt of the pair's submit (the paid step): none once the batch
        stops (an attempt in flight is answered, no new one starts), and none unless
        this worker still holds the pair.

        Raises:
            ClientClosedError: The batch stopped, or a submit met the account's refusal
                (``sent=False``).
            ConfigurationError: The journal could not confirm the claim.
            LostClaim: Another worker holds the pair now.
        """
        if self.stopping:
            raise ClientClosedError("the batch stopped before this attempt", sent=False)
        if self.refused is not None:  # met by another pair's submit while this one waited
            raise ClientClosedError(f"the account was refused ({self.refused})", sent=False)
        if self.journal is not None:
            try:
                await self.journal.hold(*key)
            except JournalWriteError as exc:  # another worker may hold it: not sent
                raise ConfigurationError(
                    f"the journal could not confirm the claim ({exc}): nothing more was sent"
                    " for the pair"
                ) from None

    async def _download(self, result: ConversionResult) -> ConversionResult:
        """The result with its file in ``download_to`` (if asked), or the download's error."""
        if self.download_to is None or result.wav_url is None:
            return result
        dest = self._dest(result.audio_id)
        try:
            async with self._only_writer(dest), self.busy:
                path = await self.download(result.wav_url, dest, overwrite=True)
        except (VidgoError, OSError, ValueError) as exc:  # ValueError: a refused URL
            return attrs.evolve(result, error=exc)
        return attrs.evolve(result, path=path)

    def _dest(self, audio_id: str) -> Path:
        """The file of ``audio_id``'s WAV in ``download_to``."""
        assert self.download_to is not None
        return self.download_to / wav_file_name(audio_id)

    @contextlib.asynccontextmanager
    async def _only_writer(self, dest: Path) -> AsyncIterator[None]:
        """One download at a time into ``dest``: pairs of one track under two parent
        ids name one file (and one ``.part`` to resume from)."""
        async with self.writers.setdefault(dest, asyncio.Lock()):
            yield

    async def _from_journal(self, key: Key, entry: Entry) -> tuple[ConversionResult, State | None]:
        """An earlier run's result, its file in this run's folder: the earlier file if it
        is there, else a copy of it, else downloaded again."""
        result = result_of(key, task_id=kept_task(entry), wav_url=kept_url(entry))
        if entry.state is not State.FINISHED or result.wav_url is None:  # (an edited row)
            return attrs.evolve(result, error=journalled_error(entry, *key)), None
        earlier = Path(entry.path) if entry.path else None
        wanted = earlier if self.download_to is None else self._dest(key[1])
        if earlier is not None and earlier.is_file():
            if wanted == earlier:
                return attrs.evolve(result, path=earlier), None
            if wanted is not None:  # another folder (or working directory) than the earlier run's
                result = await self._copied(result, earlier, wanted)
                return result, State.FINISHED if result.path is not None else None
        downloaded = await self._download(result)
        return downloaded, State.FINISHED if downloaded.path is not None else None

    async def _copied(self, result: ConversionResult, source: Path, dest: Path) -> ConversionResult:
        """The result with ``source`` copied to ``dest`` (whole, or not at all), or the error."""
        try:
            async with self._only_writer(dest):
                await asyncio.to_thread(_copy, source, dest)
        except OSError as exc:
            return attrs.evolve(result, error=exc)
        return attrs.evolve(result, path=dest)

    async def _record(
        self,
        key: Key,
        state: State,
        *,
        task_id: str | None = None,
        error: BaseException | None = None,
    ) -> None:
        if self.journal is not None:
            await self.journal.record(*key, Entry.written(state, task_id=task_id, error=error))


@attrs.frozen
class _ToWait:
    """A pair's task to wait on, and when this run submitted it (``None``: elsewhere)."""

    task_id: str
    submitted_at: float | None


@attrs.define
class _Sending:
    """The gate of each attempt of a pair's submit: one of the batch's request permits
    while it is out, taken once its slot under the submit limiter is granted (a
    submit waiting out a pause holds none). From then on the pair's task is kept from
    a stop's cancel (in ``submits``) until its submit ends, so that a paid task is
    journalled. An attempt that failed (refused, or unclear: a stop lets no other
    attempt settle it) leaves nothing to wait for: once the batch stops, its task
    cancels itself rather than sleep out a retry's pause. An unclear one is
    remembered (``unclear``): the stop says the pair may have been paid for.
    Before an attempt goes, :meth:`PairSteps.may_send` may stop it."""

    steps: PairSteps
    key: Key
    unclear: bool = False

    async def __aenter__(self) -> None:
        await self.steps.busy.acquire()
        try:
            await self.steps.may_send(self.key)
        except BaseException:
            self.steps.busy.release()
            raise
        self.steps.submits.add(_current())

    async def __aexit__(self, kind: object, exc: BaseException | None, trace: object) -> None:
        self.steps.busy.release()
        if exc is not None:
            self.steps.submits.discard(_current())
            self.unclear = self.unclear or classify(exc) is Failure.AMBIGUOUS
            if self.steps.stopping and not isinstance(exc, asyncio.CancelledError):
                _current().cancel()


def _copy(source: Path, dest: Path) -> None:
    """``source`` copied to ``dest`` whole, or not at all: through a ``.part`` beside it,
    held as a download holds it (another writer of the file, in any process, is
    refused: FileExistsError), on disk before it is renamed."""
    part = part_of(dest)
    with owned(part):
        try:
            shutil.copyfile(source, part)
            with part.open("rb") as copied:
                os.fsync(copied.fileno())
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)


def _current() -> asyncio.Task[Any]:
    task = asyncio.current_task()
    assert task is not None  # the pairs run in tasks of their own
    return task


def _withheld(exc: VidgoError) -> bool:
    """Whether the submit that failed with ``exc`` sent nothing: stopped before its first
    attempt by :meth:`PairSteps.may_send`. (After an unclear attempt, its error is
    SubmitOutcomeUnknownError, which says more than the refusal that stopped it.)"""
    return isinstance(exc, ClientClosedError) and not exc.sent
