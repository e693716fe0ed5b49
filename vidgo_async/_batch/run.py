"""``convert_many``: thousands of conversions, streamed, bounded, resumable.

How a batch schedules its pairs. One task per distinct pair, under three
semaphores: ``concurrency`` bounds the batch's requests in flight (submits,
status reads, downloads), and its submits (one waiting out a 429's pause holds
no request's permit: the accepted pairs' polls go on); the third its pairs in
flight, at most ``concurrency + max_waiting`` (the input is read only while
there is room) and at most what the poll cap can serve (a task accepted, then
timed out unpolled, was paid for nothing). A pair keeps its room until the consumer
takes its result (a result the feeder knows at once takes a room too), so the
result queue never outgrows the rooms and a slow consumer slows the intake;
its journal row is settled as the consumer takes the result
(:meth:`_Batch._settle`). A waiting pair costs one sleeping task, each of its
status reads a slot of the poll rate cap. One pair's steps are in ``pair.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Any

import attrs
from yarl import URL

from .._events import EventHook, call_back, operation
from .._lifecycle import Lifecycle, cancel_after_grace
from .._models import WAV_MODEL, ConversionResult
from .._ops.submit import Submitter
from .._ops.wait import Waits
from .._timing.deadline import Deadline
from .._validate import check_count, check_folder, check_options, check_timeout
from ..errors import ClientClosedError
from .intake import Key, Pairs, check_pairs, describe_pair, each_pair, pair_key, result_of
from .journal import JournalSource, JournalWriteError, LostClaim, State
from .journals import checked_journal, open_journal
from .pair import Download, PairSteps

__all__ = ["BatchProgress", "Pairs", "start_batch"]

logger = logging.getLogger("vidgo_async")

_END = object()  # the last item of the result queue
_STOPPED = object()  # ... of a batch stopped from outside (the client closed)
_ENDING = 2.0  # seconds past the submits' grace to wait for an ending batch's SQLite journal
_OTHERS = (
    "%d pairs not reported here: another worker (or a run that ended less than a lease"
    " ago) settled and reported them; a run started a lease later reports them again"
)


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
    """The input (or a look at other workers' pairs) failed: the batch ends with it."""

    error: BaseException


def start_batch(
    lifecycle: Lifecycle,
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
    check_pairs(pairs)
    concurrency = check_count("concurrency", concurrency)
    room = concurrency + check_count("max_waiting", max_waiting)
    check_options(on_progress=on_progress)
    journal = checked_journal(journal)
    steps = PairSteps(
        submitter,
        waits,
        download,
        asyncio.Semaphore(concurrency),
        asyncio.Semaphore(concurrency),
        timeout=check_timeout(timeout),
        download_to=check_folder("download_to", download_to),
    )
    batch = _Batch(
        lifecycle,
        steps,
        pairs,
        room=room,
        journal_source=journal,
        api=submitter.transport.base_url,
        hook=hook,
    )
    return batch.results(on_progress)


@attrs.define(eq=False)  # compared by identity: the client keeps its running batches in a set
class _Batch:
    """One ``convert_many`` run: its pairs' tasks, its bookkeeping and its result queue."""

    lifecycle: Lifecycle  # the client's: it stops the batch before it closes
    steps: PairSteps
    pairs: Pairs
    room: int = attrs.field(kw_only=True)
    # What convert_many was given; once open, the journal is the steps' (steps.journal).
    journal_source: str | os.PathLike[str] | JournalSource | None = attrs.field(kw_only=True)
    api: URL = attrs.field(kw_only=True)  # the API, whose host the journal is tied to
    hook: EventHook | None = attrs.field(kw_only=True, default=None)
    # Results for the consumer. Each holds a slot until it is taken, as each pair in
    # flight does: the queue never outgrows the slots, and a put never waits.
    queue: asyncio.Queue[Any] = attrs.field(init=False, factory=asyncio.Queue)
    slots: asyncio.Semaphore = attrs.field(init=False)  # pairs in flight, results not taken
    feeder: asyncio.Task[None] | None = attrs.field(init=False, default=None)
    tasks: set[asyncio.Task[None]] = attrs.field(init=False, factory=set)
    stopping: asyncio.Future[None] | None = attrs.field(init=False, default=None)
    in_flight: dict[Key, int] = attrs.field(init=False, factory=dict)  # -> repeats seen
    # -> its result; None: another worker holds the pair and reports it
    done: dict[Key, ConversionResult | None] = attrs.field(init=False, factory=dict)
    # Pairs another worker held when claimed, looked at again at the end -> repeats seen
    aside: dict[Key, int] = attrs.field(init=False, factory=dict)
    settling: asyncio.Lock = attrs.field(init=False, factory=asyncio.Lock)  # a journal write
    # Results reported whose journal write failed (the database away longer than it is
    # waited for): written again before the batch waits for other workers' pairs, and
    # before it closes the journal. Until then the rows stay claimed and unsettled.
    unwritten: list[_Outcome] = attrs.field(init=False, factory=list)
    read: int = attrs.field(init=False, default=0)
    input_done: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self.slots = asyncio.Semaphore(min(self.room, _pollable(self.steps.waits)))

    async def results(
        self, on_progress: Callable[[BatchProgress], object] | None
    ) -> AsyncGenerator[ConversionResult, None]:
        """Run the batch; yield each result as it is queued."""
        self.lifecycle.check()  # first iterated after the client closed: nothing to run
        if self.journal_source is not None:
            await self._open_journal(self.journal_source)
        self.feeder = asyncio.create_task(self._feed())
        self.lifecycle.started(self)
        done = succeeded = 0
        try:
            while (item := await self.queue.get()) is not _END:
                if item is _STOPPED:
                    raise ClientClosedError("the client was closed during the batch")
                if isinstance(item, _InputFailed):
                    raise item.error
                self.slots.release()  # the result is taken
                if isinstance(item, _Outcome):
                    result, times = item.result, await self._settle(item)
                else:
                    result, times = item, 1
                for _ in range(times):
                    done += 1
                    succeeded += result.ok
                    if on_progress is not None:
                        self._tell(on_progress, done, succeeded)
                    yield result
        finally:
            await self._stop_once(closing=False)

    async def _open_journal(self, source: str | os.PathLike[str] | JournalSource) -> None:
        """Open the journal (once a batch of this process ending with it let go) and start
        warm with the task durations it kept."""
        ending = self.steps.submitter.grace + _ENDING
        journal = await open_journal(source, wait=ending, api=self.api)
        self.steps.journal = journal
        try:
            for model, seen in (await journal.learned()).items():
                self.steps.waits.learner.durations(model).restore(seen)
            self.lifecycle.check()  # the client closed while the journal opened
        except BaseException:
            await journal.close()
            raise

    def _tell(self, on_progress: Callable[[BatchProgress], object], done: int, ok: int) -> None:
        """Call ``on_progress`` with the counts, ``done`` results and ``ok`` of them so far."""
        progress = BatchProgress(
            read=self.read,
            done=done,
            succeeded=ok,
            failed=done - ok,
            in_flight=len(self.in_flight),
            input_done=self.input_done,
        )
        call_back(on_progress, progress, "on_progress callback")

    async def stop(self) -> None:
        """The client closes: read no more input, and let the pairs in flight end as the
        closed client ends them (a wait with ClientClosedError naming its task, a submit
        in flight once answered and journalled), each reported to a loop still iterating,
        which then gets ClientClosedError. Pairs still running after the submits' grace
        (:attr:`Submitter.grace`) are cancelled unreported (their journal rows say where
        they stand)."""
        await self._stop_once(closing=True)

    async def _stop_once(self, *, closing: bool) -> None:
        """Stop once, in a task of its own: neither a second cancel of the consumer (a
        second Ctrl-C) nor the other way of stopping, which awaits it too, cuts it short.
        Left by its consumer, the batch cancels its pairs at once, except those with a
        submit in flight (:meth:`PairSteps.stop`)."""
        if self.stopping is None:
            self.stopping = asyncio.ensure_future(self._stop(closing))
        await asyncio.shield(self.stopping)

    async def _stop(self, closing: bool) -> None:
        journal = self.steps.journal
        try:
            if journal is not None:
                journal.ending()
            assert self.feeder is not None  # a batch stops once it started
            self.feeder.cancel()
            pending = [self.feeder, *self.tasks]
            if closing:  # the closed client ends them: a submit in flight once answered
                await cancel_after_grace(pending, self.steps.submitter.grace)
            else:
                await self.steps.stop(pending)
            await asyncio.gather(*pending, return_exceptions=True)
            if journal is not None:
                await self._write_again()
                await self.steps.keep_learned()
                async with self.settling:  # not closed under a result being settled
                    self.steps.journal = None  # results taken from now on are not settled in it
                await journal.close()
        finally:
            self.lifecycle.stopped(self)
            self.queue.put_nowait(_STOPPED)  # after the results queued, for a loop still iterating

    async def _feed(self) -> None:
        """Read the input while there is room, start a task per new pair, then end the
        queue: always, with the input's failure if it failed, unless the batch's stop
        cancelled this task (the stop ends the queue then).

        The batch's operation events come from here: the pairs' tasks start inside it.
        """
        failed: BaseException | None = None
        try:
            with operation(self.hook, "batch") as scope:
                try:
                    async for pair in each_pair(self.pairs):
                        self.read += 1
                        await self._admit(pair)
                    self.input_done = True
                # The input itself failed (with whatever it raises: an await of its own
                # may raise CancelledError without this task being cancelled, a timeout of
                # gevent or a test framework is no Exception): the batch ends with it,
                except BaseException as exc:
                    if isinstance(exc, (KeyboardInterrupt, SystemExit)) or (
                        isinstance(exc, asyncio.CancelledError) and _cancelled()
                    ):
                        raise
                    failed = exc
                try:
                    await self._finish()  # once the pairs read before (paid for) are reported
                except Exception as exc:  # a journal failing its recheck
                    failed = failed or exc
                if others := sum(result is None for result in self.done.values()):
                    logger.warning(_OTHERS, others)
                if failed is not None:
                    scope.note(error=type(failed).__name__)
        except BaseException as exc:  # cancelled, or what no batch goes on after
            failed = exc
            raise
        finally:
            if self.stopping is None:  # else the stop ends the queue, after what it ends
                self.queue.put_nowait(_END if failed is None else _InputFailed(failed))

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
            await self._write_again()  # others may be waiting for those pairs
            aside, journal = self.aside, self.steps.journal
            if not aside or journal is None:
                return
            if patience is None:
                lease = 3 * journal.recheck_every
                timeout = self.steps.timeout
                patience = Deadline.after(None if timeout is None else timeout + lease)
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
            await self._report(ConversionResult(source_task_id=source, audio_id=audio, error=exc))
            return
        if key in self.done:
            if (known := self.done[key]) is not None:
                await self._report(known)
        elif key in self.in_flight:
            self.in_flight[key] += 1
        elif key in self.aside:
            self.aside[key] += 1
        else:
            await self._take(key, repeats=0)

    async def _take(self, key: Key, *, repeats: int) -> None:
        """Start the pair's task once there is room."""
        await self.slots.acquire()
        await self.steps.submitting.acquire()  # released once the pair's submit ends
        self.in_flight[key] = repeats
        self._spawn(self._carry(key))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _report(self, result: ConversionResult) -> None:
        """Queue a result the feeder knows at once (a malformed pair, a repeat of a
        finished one) under a slot of its own, as a pair's outcome is."""
        await self.slots.acquire()
        self.queue.put_nowait(result)

    async def _carry(self, key: Key) -> None:
        """Convert one pair and queue its outcome for the consumer, who settles and reports
        it (and frees the pair's slot when it takes it)."""
        ids = {"model": WAV_MODEL, "source_task_id": key[0], "audio_id": key[1]}
        queued = False
        try:
            try:
                with operation(self.hook, "pair", **ids) as scope:
                    converted = await self.steps.convert(key)
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
                result = result_of(key, error=exc)
                state = None
            self.queue.put_nowait(_Outcome(key, result, state))
            queued = True
        finally:
            if not queued:
                self.slots.release()

    async def _settle(self, outcome: _Outcome) -> int:
        """Settle the pair in the journal (:meth:`PairSteps.settle`) as the consumer
        takes its result; how many times to report it (once per occurrence read so
        far; none: another worker reports it now).

        Settled only now, a pair whose worker stops or dies first is still accepted:
        another worker of the run (or a re-run) polls its task once more and reports
        it. The pair stays in flight until then (a repeat read meanwhile is counted).
        The journal closes between two settlings, never under one.
        """
        key, result = outcome.key, outcome.result
        try:
            async with self.settling:
                await self.steps.settle(key, result, outcome.state)
        except LostClaim as exc:
            self._drop(key, exc)
            return 0
        except JournalWriteError as exc:  # the result stands; written again later
            logger.error("could not journal the result of %s/%s: %s", *key, exc)
            self.unwritten.append(outcome)
        except Exception:  # a bug must cost the journal row, not the result
            logger.exception("could not journal the result of %s/%s", *key)
        self.done[key] = result
        return 1 + self.in_flight.pop(key)

    async def _write_again(self) -> None:
        """Write the results whose journal write failed, in order, while the journal
        takes them (a database back from an outage): other workers wait for those pairs
        meanwhile, and once this worker's claims lapse they would report them again."""
        async with self.settling:  # one writer at a time; others only append
            while self.unwritten:
                outcome = self.unwritten[0]
                try:
                    await self.steps.settle(outcome.key, outcome.result, outcome.state)
                except JournalWriteError:  # still away: tried again later
                    return
                except LostClaim as exc:  # reported here and by the taker: one too many
                    logger.warning("could not journal the result of %s/%s: %s", *outcome.key, exc)
                except Exception:  # a bug must cost the journal row, not the journal's close
                    logger.exception("could not journal the result of %s/%s", *outcome.key)
                else:
                    logger.info("journalled the result of %s/%s after all", *outcome.key)
                del self.unwritten[0]

    def _drop(self, key: Key, exc: LostClaim) -> None:
        """Another worker holds the pair now: its result is that worker's to report."""
        logger.warning("dropped %s/%s: %s (its result is the other worker's to report)", *key, exc)
        self.in_flight.pop(key)
        self.done[key] = None


def _cancelled() -> bool:
    """Whether the current task was cancelled, rather than meeting a CancelledError of an
    await of its own (before Python 3.11, which cannot tell: taken as cancelled)."""
    cancelling = getattr(asyncio.current_task(), "cancelling", None)
    return cancelling is None or cancelling() > 0


def _pollable(waits: Waits) -> int:
    """Waits the client's poll rate cap can serve a poll each at least every
    ``max_interval`` (each second, for shorter intervals): more waiting tasks
    than this would miss their polls, and maybe their deadlines."""
    return max(1, int(waits.reader.limiter.rate * max(waits.policy.max_interval, 1.0)))
