"""``convert_many``: thousands of conversions, streamed, bounded, resumable.

Each distinct pair runs as one task (submit, wait, download) admitted only
while fewer than ``concurrency + max_waiting`` are in flight, so the input
is read lazily and memory stays bounded. Submits and downloads each have
their own ``concurrency`` slots; waits share the client's poll rate cap.
Results go through a bounded queue, so a slow consumer slows the intake.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ._journal import Entry, Journal, State, journalled_error
from ._models import ConversionResult, TaskHandle
from ._validate import check_count, check_folder, check_id, check_timeout
from .errors import (
    APIError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    SubmitOutcomeUnknownError,
    TaskFailedError,
    VidgoError,
)

if TYPE_CHECKING:
    from ._engine import Engine

#: ``download(url, dest, overwrite=...)``: the client's download.
Download = Callable[..., Awaitable[Path]]

__all__ = ["BatchProgress", "Pairs", "run_batch", "start_batch"]

logger = logging.getLogger("vidgo_async")

Pairs = Iterable[Any] | AsyncIterable[Any]
Key = tuple[str, str]
_END = object()
_PAIR_REFUSED = frozenset({400, 404, 409, 422})
# Answers after which waiting on the same task again is pointless.
_TASK_IS_DONE_FOR = (TaskFailedError, BadRequestError, NotFoundError, PermissionDeniedError)


@attrs.frozen(kw_only=True)
class BatchProgress:
    """Counts of a running batch, passed to ``on_progress`` after each result.

    Attributes:
        read: Input pairs read so far.
        done: Results delivered so far.
        succeeded: Results that are ``ok``.
        failed: Results that are not.
        in_flight: Distinct pairs being submitted, waited on or downloaded.
        input_done: Whether the whole input has been read.
    """

    read: int
    done: int
    succeeded: int
    failed: int
    in_flight: int
    input_done: bool


@attrs.define
class _Failure:
    error: BaseException


class _Run:
    def __init__(
        self,
        engine: Engine,
        download: Download,
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
        self.queue: asyncio.Queue[object] = asyncio.Queue(maxsize=max(1, concurrency))
        self.submit_slots = asyncio.Semaphore(concurrency)
        self.download_slots = asyncio.Semaphore(concurrency)
        self.admission = asyncio.Semaphore(concurrency + max_waiting)
        self.tasks: set[asyncio.Task[None]] = set()
        self.extra: dict[Key, int] = {}  # in-flight pair -> duplicate occurrences seen
        self.done: dict[Key, ConversionResult] = {}
        self.read = 0
        self.input_done = False

    async def feed(self, pairs: Pairs) -> None:
        try:
            async for pair in _iterate(pairs):
                self.read += 1
                await self._admit(pair)
            self.input_done = True
            while self.tasks:
                await asyncio.wait(set(self.tasks))
            await self.queue.put(_END)
        except Exception as exc:  # the input itself failed: end the batch with it
            await self.queue.put(_Failure(exc))

    async def _admit(self, pair: Any) -> None:
        try:
            key = _key(pair)
        except (TypeError, ValueError) as exc:
            source, audio = _describe(pair)
            await self.queue.put(ConversionResult(source_task_id=source, audio_id=audio, error=exc))
            return
        if key in self.done:
            await self.queue.put(self.done[key])
        elif key in self.extra:
            self.extra[key] += 1
        else:
            await self.admission.acquire()
            self.extra[key] = 0
            task = asyncio.create_task(self._item(key))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _item(self, key: Key) -> None:
        try:
            try:
                result = await self._convert(key)
            except Exception as exc:  # a bug must cost one result, not the batch
                logger.exception("conversion of %s failed unexpectedly", key)
                result = ConversionResult(source_task_id=key[0], audio_id=key[1], error=exc)
            self.done[key] = result
            for _ in range(1 + self.extra.pop(key)):
                await self.queue.put(result)
        finally:
            self.admission.release()

    async def _convert(self, key: Key) -> ConversionResult:
        source, audio = key
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        entry = self.journal.get(source, audio) if self.journal else None
        base = ConversionResult(source_task_id=source, audio_id=audio)
        if entry is not None and entry.state in (State.FINISHED, State.FAILED, State.UNKNOWN):
            return await self._from_journal(base, entry.state, entry)
        if entry is not None and entry.state is State.ACCEPTED and entry.task_id:
            task_id = entry.task_id
        else:
            resumed = entry is not None and entry.state is State.SUBMITTING
            submitted = await self._submit(base, deadline, resumed=resumed)
            if isinstance(submitted, ConversionResult):
                return submitted
            task_id = submitted
        with_task = ConversionResult(source_task_id=source, audio_id=audio, task_id=task_id)
        return await self._finish(with_task, deadline, time.monotonic())

    async def _submit(
        self, base: ConversionResult, deadline: float | None, *, resumed: bool
    ) -> str | ConversionResult:
        source, audio = base.source_task_id, base.audio_id
        try:
            async with self.submit_slots:
                self._record(base, State.SUBMITTING)  # only now may the request go out
                task = await self.engine.submit_for_wait(
                    {"task_id": source, "audio_id": audio}, None, deadline, resumed=resumed
                )
        except VidgoError as exc:
            self._record(base, _state_after_failed_submit(exc), error=exc)
            return attrs.evolve(base, error=exc)
        self._record(base, State.ACCEPTED, task_id=task.task_id)
        return task.task_id

    async def _finish(
        self, base: ConversionResult, deadline: float | None, started: float
    ) -> ConversionResult:
        assert base.task_id is not None
        handle = TaskHandle(
            task_id=base.task_id, source_task_id=base.source_task_id, audio_id=base.audio_id
        )
        try:
            url = await self.engine.await_wav(handle, deadline, started)
        except VidgoError as exc:
            if isinstance(exc, _TASK_IS_DONE_FOR):
                self._record(base, State.FAILED, task_id=base.task_id, error=exc)
            # Otherwise (deadline, account trouble, ...) it stays accepted: a re-run waits again.
            return attrs.evolve(base, error=exc)
        result = ConversionResult(  # not attrs.evolve: this runs once per pair
            source_task_id=base.source_task_id,
            audio_id=base.audio_id,
            task_id=base.task_id,
            wav_url=url,
        )
        self._record(result, State.FINISHED)
        return await self._download(result)

    async def _download(self, result: ConversionResult) -> ConversionResult:
        if self.download_to is None or result.wav_url is None:
            return result
        dest = self.download_to / _file_name(result.audio_id)
        try:
            async with self.download_slots:
                path = await self.fetch(result.wav_url, dest, overwrite=True)
        except (VidgoError, OSError, ValueError) as exc:  # ValueError: a refused URL
            return attrs.evolve(result, error=exc)
        result = attrs.evolve(result, path=path)
        self._record(result, State.FINISHED)
        return result

    async def _from_journal(
        self, base: ConversionResult, state: State, entry: Entry
    ) -> ConversionResult:
        result = attrs.evolve(base, task_id=entry.task_id, wav_url=entry.wav_url)
        if state is State.FINISHED:
            if entry.path and _exists(entry.path):
                return attrs.evolve(result, path=Path(entry.path))
            return await self._download(result)
        return attrs.evolve(
            result, error=journalled_error(entry, base.source_task_id, base.audio_id)
        )

    def _record(
        self,
        result: ConversionResult,
        state: State,
        *,
        task_id: str | None = None,
        error: BaseException | None = None,
    ) -> None:
        if self.journal is None:
            return
        self.journal.record(
            result.source_task_id,
            result.audio_id,
            state,
            task_id=task_id or result.task_id,
            wav_url=result.wav_url,
            path=str(result.path) if result.path else None,
            error=error,
        )

    def progress(self, done: int, succeeded: int) -> BatchProgress:
        return BatchProgress(
            read=self.read,
            done=done,
            succeeded=succeeded,
            failed=done - succeeded,
            in_flight=len(self.extra),
            input_done=self.input_done,
        )

    async def close(self, feeder: asyncio.Task[None]) -> None:
        pending = [feeder, *self.tasks]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


def _state_after_failed_submit(exc: VidgoError) -> State:
    """What a failed submit leaves: ``Calls.submit`` raises a plain error only when
    no attempt can have been accepted, so only answers about the pair itself
    (400, 404, 409, 422) are final; account trouble (401, 402, 403), rate
    limits and outages leave the pair to be submitted by a re-run."""
    if isinstance(exc, SubmitOutcomeUnknownError):
        return State.UNKNOWN
    if isinstance(exc, APIError) and exc.status in _PAIR_REFUSED:
        return State.FAILED
    return State.UNSENT


def start_batch(
    engine: Engine,
    download: Download,
    pairs: Pairs,
    *,
    concurrency: object,
    max_waiting: object,
    timeout: object,
    journal: str | os.PathLike[str] | None,
    download_to: str | os.PathLike[str] | None,
    on_progress: Callable[[BatchProgress], object] | None,
) -> AsyncGenerator[ConversionResult, None]:
    """Check the arguments of ``convert_many`` (before any request), then run it."""
    return run_batch(
        engine,
        download,
        pairs,
        concurrency=check_count("concurrency", concurrency),
        max_waiting=check_count("max_waiting", max_waiting),
        timeout=check_timeout(timeout),
        journal=journal,
        download_to=check_folder(download_to),
        on_progress=on_progress,
    )


async def run_batch(
    engine: Engine,
    download: Download,
    pairs: Pairs,
    *,
    concurrency: int,
    max_waiting: int,
    timeout: float | None,
    journal: str | os.PathLike[str] | None,
    download_to: Path | None,
    on_progress: Callable[[BatchProgress], object] | None,
) -> AsyncGenerator[ConversionResult, None]:
    """The engine behind :meth:`VidgoClient.convert_many` (arguments already checked)."""
    book = Journal(journal) if journal is not None else None  # opened on first iteration
    run = _Run(
        engine,
        download,
        concurrency=concurrency,
        max_waiting=max_waiting,
        timeout=timeout,
        journal=book,
        download_to=download_to,
    )
    feeder = asyncio.create_task(run.feed(pairs))
    done = succeeded = 0
    try:
        while True:
            item = await run.queue.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            assert isinstance(item, ConversionResult)
            done += 1
            succeeded += item.ok
            if on_progress is not None:
                on_progress(run.progress(done, succeeded))
            yield item
    finally:
        await run.close(feeder)
        if book is not None:
            book.close()


async def _iterate(pairs: Pairs) -> AsyncIterator[Any]:
    if isinstance(pairs, AsyncIterable):
        async for pair in pairs:
            yield pair
    else:
        for pair in pairs:
            yield pair


def _key(pair: Any) -> Key:
    if isinstance(pair, (str, bytes)) or not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"each pair must be a (task_id, audio_id) tuple, got {pair!r:.80}")
    return check_id("task_id", pair[0]), check_id("audio_id", pair[1])


def _describe(pair: Any) -> tuple[str, str]:
    if isinstance(pair, (tuple, list)) and len(pair) == 2:
        return str(pair[0]), str(pair[1])
    return repr(pair)[:80], ""


def _exists(path: str) -> bool:
    return Path(path).is_file()


def _file_name(audio_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", audio_id).lstrip(".")[:200] + ".wav"
