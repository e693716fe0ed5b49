"""``VidgoClient``: the public face of the SDK."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp

from ._batch.journal import JournalSource
from ._batch.run import BatchProgress, Pairs, start_batch
from ._config import DEFAULT_TIMEOUT, PollPolicy, RetryPolicy, Timeouts
from ._events import EventHook, operation
from ._lifecycle import Lifecycle
from ._models import WAV_MODEL, Balance, ConversionResult, Task, TaskHandle
from ._ops.callbacks import Registry
from ._ops.inflight import InFlight
from ._ops.reads import Reader
from ._ops.submit import Submitter
from ._ops.wait import Poller, Waits
from ._timing.budget import RetryBudget
from ._timing.learned import Learner
from ._timing.limits import Quota
from ._timing.uncapped import limiters_for
from ._validate import (
    api_key_from,
    base_url_from,
    check_callback_url,
    check_count,
    check_id,
    check_input,
    check_options,
    check_rate,
    deadline_after,
    handle_from,
    is_loopback,
    wav_input,
)
from ._wire.download import DOWNLOAD_TIMEOUT, download_file
from ._wire.transport import Transport

if TYPE_CHECKING:
    from .webhooks import CallbackReceiver

__all__ = ["VidgoClient"]


class VidgoClient:
    """An asyncio client of the Vidgo task API.

    Use it as an async context manager, or call :meth:`aclose` when done::

        async with VidgoClient() as client:          # key from VIDGO_API_KEY
            url = await client.convert_to_wav(task_id, audio_id)

    Args:
        api_key: The API key; defaults to the ``VIDGO_API_KEY`` variable.
        base_url: The API origin; defaults to ``VIDGO_BASE_URL``, then
            ``https://api.vidgo.ai``.
        retry: How single calls retry transient failures.
        poll: How waits space their status requests.
        timeouts: Per-request timeouts.
        max_connections: Size of each connection pool the client creates:
            one for its API requests, one for its downloads (so that large
            downloads never hold up status requests).
        max_polls_per_second: Client-wide cap on status requests.
        max_submits_per_second: Client-wide cap on submits (every attempt counts),
            for an account whose plan limits them; ``None`` (the default): none,
            but a 429 pauses them all (see the README). With ``quota``, give the
            cap to the :class:`~vidgo_async.postgres.SharedQuota` instead.
        session: An ``aiohttp.ClientSession`` to use; the client never
            closes a session it did not create. (aiohttp may send a status
            read again on a borrowed session when a kept-alive connection
            fails, past the rate cap: the client's own sessions do not.)
        callbacks: A :class:`~vidgo_async.webhooks.CallbackReceiver`: submits
            then carry a callback URL (unless given one), and waits return
            on a confirmed callback or a poll, whichever comes first.
        on_event: Called with an :class:`Event` at each submit, poll, retry,
            status change and callback hint, and at the start and end of each
            operation and HTTP request (for metrics and tracing, such as
            :class:`vidgo_async.otel.Telemetry`); it must be quick and must not block.
        quota: A quota shared with other processes
            (:class:`vidgo_async.postgres.SharedQuota`): the status requests of
            all its clients together stay under ``max_polls_per_second`` (their
            submits under its own cap, if it has one), and a 429 seen by one
            slows them all. ``None``: this client's own cap, in process.

    Raises:
        ConfigurationError: No API key, or an unusable base URL.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, so a shared default is safe
        poll: PollPolicy = PollPolicy(),  # noqa: B008
        timeouts: Timeouts = Timeouts(),  # noqa: B008
        max_connections: int = 32,
        max_polls_per_second: float = 10.0,
        max_submits_per_second: float | None = None,
        session: aiohttp.ClientSession | None = None,
        callbacks: CallbackReceiver | None = None,
        on_event: EventHook | None = None,
        quota: Quota | None = None,
    ) -> None:
        max_connections = check_count("max_connections", max_connections)
        rate = check_rate("max_polls_per_second", max_polls_per_second)
        submit_rate = None
        if max_submits_per_second is not None:
            submit_rate = check_rate("max_submits_per_second", max_submits_per_second)
            if quota is not None:
                raise ValueError(
                    "max_submits_per_second: with a quota, give the cap to the SharedQuota"
                    " (SharedQuota(..., max_submits_per_second=...)), which shares it"
                )
        check_options(retry=retry, poll=poll, timeouts=timeouts, session=session, on_event=on_event)
        registry = _registry_of(callbacks)
        self._base_url = base_url_from(base_url)
        self._retry = retry
        self._hook = on_event
        self._lifecycle = Lifecycle()
        self._closing: asyncio.Future[None] | None = None  # aclose()'s work, done once
        self._transport = Transport(
            self._base_url,
            api_key_from(api_key),
            timeouts,
            self._lifecycle,
            session,
            max_connections,
            on_event,
            shared_cap=quota is not None,
        )
        # Last of the checks: a shared quota's limiters are live from here on.
        self._limiter, self._submit_limiter = limiters_for(quota, rate, submit_rate, retry)
        budget = RetryBudget(retry)
        self._reader = Reader(self._transport, retry, self._limiter, budget, on_event)
        # The attempts on the wire a caller gave up on, and the tasks this client created.
        self._inflight = InFlight(self._submit_limiter, retry.max_retry_after, on_event)
        self._submitter = Submitter(
            self._transport,
            retry,
            budget,
            self._lifecycle,
            self._submit_limiter,
            registry,
            on_event,
            self._inflight,
        )
        # What this client learns of how long tasks take, per model, shared by its waits.
        self._waits = Waits(self._reader, self._lifecycle, poll, Learner(), registry)

    def __repr__(self) -> str:
        return f"VidgoClient(base_url={str(self._base_url)!r})"

    async def __aenter__(self) -> VidgoClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client: pending waits end with :class:`ClientClosedError`, running
        batches stop (their submits in flight are answered and journalled, as are the
        submits whose callers were cancelled in flight: never cut short, each ends by
        its answer or its request timeout, ``Timeouts.total``), then the HTTP
        sessions the client created are closed (not a borrowed one). Safe
        to call twice; runs once, in a task of its own, which a cancel of the caller (a
        third Ctrl-C) does not cut short."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        # Pauses and requests queued for a slot end first, so that the batches' pairs
        # end at once (a submit in flight once answered), then the batches stop.
        self._lifecycle.close()
        self._limiter.close()
        self._submit_limiter.close()
        try:
            await self._lifecycle.stop_running()
        finally:
            await self._transport.close()

    @property
    def base_url(self) -> str:
        """The API origin this client talks to."""
        return str(self._base_url)

    async def submit(
        self, model: str, input: Mapping[str, Any], *, callback_url: str | None = None
    ) -> Task:
        """Submit a task of any model; one attempt unless a retry is provably safe.

        Args:
            model: The model, e.g. ``"convert-to-wav"`` or ``"separate-vocals"``.
            input: The model's input, e.g. ``{"task_id": ..., "audio_id": ...}``.
            callback_url: Where the API should POST the result.

        Returns:
            The new task (status ``not_started``, or ``UNKNOWN`` when the
            answer named the task without its status).

        Raises:
            AlreadyConvertedError: The track was converted to WAV before.
            SubmitOutcomeUnknownError: An attempt may have been accepted.
            APIError: The server refused the task.
            TransportError: No attempt reached the server.
        """
        model = check_id("model", model)
        body = check_input(input)
        callback_url = check_callback_url(callback_url)
        accepted = await self._submitter.submit(
            model, body, callback_url=callback_url, deadline=None
        )
        return accepted.task()

    async def submit_wav(
        self, task_id: str, audio_id: str, *, callback_url: str | None = None
    ) -> Task:
        """Submit a ``convert-to-wav`` task for one track of a music task.

        Args:
            task_id: The parent music-generation task.
            audio_id: The track of it to convert.
            callback_url: Where the API should POST the result.

        Returns:
            The new conversion task; its id is not ``task_id``.

        Raises:
            Same as :meth:`submit`.
        """
        return await self.submit(WAV_MODEL, wav_input(task_id, audio_id), callback_url=callback_url)

    async def get_task(self, task_id: str) -> Task:
        """The current state of a music task (Query Music Detail).

        Raises:
            NotFoundError: No such task.
            APIError, TransportError, InvalidResponseError: The call failed.
        """
        task_id = check_id("task_id", task_id)
        self._lifecycle.check()
        return await self._reader.detail(task_id)

    async def get_status(self, task_id: str) -> Task:
        """The current state of an image or video task (generic status endpoint).

        Music tasks, WAV conversions included, are read with :meth:`get_task`.
        """
        task_id = check_id("task_id", task_id)
        self._lifecycle.check()
        return await self._reader.status(task_id)

    async def balance(self) -> Balance:
        """The account's remaining credits."""
        self._lifecycle.check()
        return await self._reader.balance()

    async def wait(
        self,
        task_id: str | TaskHandle,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        poll: PollPolicy | None = None,
    ) -> Task:
        """Poll a task until it finishes.

        Args:
            task_id: The task's id, or a :class:`TaskHandle`. The API may not show a
                task it has just created: 404s before a first answer are no news
                for a task this client submitted, and for ``poll.unseen_grace``
                (30 s) on a handle; a bare id's 404 is final.
            timeout: Deadline in seconds (default 15 minutes); ``None`` waits forever.
            poll: Overrides the client's poll policy for this wait.

        Returns:
            The finished task.

        Raises:
            TaskFailedError: The task failed; carries the server's message.
            TaskTimeoutError: The deadline passed; the task still runs.
            APIError: A definitive error (the task is unknown, forbidden ...).
            InvalidResponseError: Three answers in a row were about another task.
        """
        poller = self._poller(task_id, timeout, poll)
        return await self._waits.until_done(poller)

    async def await_task(
        self,
        task_id: str | TaskHandle,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        poll: PollPolicy | None = None,
    ) -> str:
        """Like :meth:`wait`, but returns the finished task's WAV URL.

        Raises:
            InvalidResponseError: The task finished without a ``wav_url``.
            Same as :meth:`wait` otherwise.
        """
        poller = self._poller(task_id, timeout, poll)
        return await self._waits.wav_url(poller)

    async def convert_to_wav(
        self,
        task_id: str,
        audio_id: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        callback_url: str | None = None,
    ) -> str:
        """Convert one track to WAV: submit, wait, return the WAV URL.

        Transient failures are retried until ``timeout``; a submit is repeated
        only where that cannot convert the track twice.

        Raises:
            AlreadyConvertedError: The track was converted before (no task id known).
            SubmitOutcomeUnknownError: A submit may have been accepted.
            TaskFailedError: The conversion failed.
            TaskTimeoutError: The deadline passed; the task still runs.
            VidgoError: Any other error; once the task was accepted, its
                ``handle`` names the task (wait on it with ``await_task``).
        """
        input = wav_input(task_id, audio_id)
        callback_url = check_callback_url(callback_url)
        deadline = deadline_after(timeout)
        ids = {"model": WAV_MODEL, "source_task_id": task_id, "audio_id": audio_id}
        with operation(self._hook, "convert_to_wav", **ids) as scope:
            accepted = await self._submitter.submit(
                WAV_MODEL, input, callback_url=callback_url, deadline=deadline, adopt=True
            )
            scope.note(task_id=accepted.task_id)
            handle = TaskHandle(task_id=accepted.task_id, source_task_id=task_id, audio_id=audio_id)
            poller = self._waits.poller(handle, deadline, submitted_at=time.monotonic())
            return await self._waits.wav_url(poller)  # an error ending it names the task

    def convert_many(
        self,
        pairs: Pairs,
        *,
        concurrency: int = 32,
        timeout: float | None = DEFAULT_TIMEOUT,
        journal: str | os.PathLike[str] | JournalSource | None = None,
        download_to: str | os.PathLike[str] | None = None,
        on_progress: Callable[[BatchProgress], object] | None = None,
        max_waiting: int = 10_000,
    ) -> AsyncGenerator[ConversionResult, None]:
        """Convert many tracks; yield one result per input pair as each completes.

        Args:
            pairs: ``(task_id, audio_id)`` pairs, any iterable or async
                iterable, read lazily. Duplicates are converted once and
                reported for each occurrence; malformed pairs get a result
                carrying a ``TypeError``/``ValueError``.
            concurrency: The batch's requests in flight at most (submits,
                status reads, downloads); status reads also go through the
                client's ``max_polls_per_second``.
            timeout: Deadline of each pair's submit and wait, in seconds.
            journal: A SQLite file recording every submit before and after
                its request; a re-run with it never submits an accepted track
                again, resumes waiting on known tasks, reports finished pairs
                from the journal and starts with the learned task durations.
                One batch at a time uses it (a ``flock`` on ``<journal>.lock``;
                a batch of this process that is ending is waited for, 12 s).
                A ``postgresql://`` (or ``postgres://``) DSN instead: a journal
                shared by workers on several hosts given the same input (extra
                ``postgres``); each pair is claimed by one worker under a
                lease, converted once, and reported by that worker only (a
                pair another live worker holds is skipped, not reported).
                ``vidgo_async.postgres.SharedJournal(dsn, lease_seconds=...)``:
                the same, with its options (the DSN alone: a 30 s lease). A
                worker that lost a pair's lease to another (paused, cut off)
                drops it: no submit, no journal write, no result (a WARNING).
            download_to: A directory to download each WAV into (as
                ``<audio_id>.wav``, replacing a file of that name; an id that is
                not a safe file name is cleaned up and given a short hash of itself).
            on_progress: Called with a :class:`BatchProgress` before each result;
                what it raises is logged, and the batch goes on.
            max_waiting: Pairs in flight beyond ``concurrency``; the input is
                read only while fewer than ``concurrency + max_waiting`` are.
                Accepted, unfinished tasks are also kept within what the poll
                cap can check once per ``PollPolicy.max_interval``.
                Under a ``SharedQuota`` that cap is the sharers' together,
                and each process counts with all of it: with N processes
                busy at once, keep ``concurrency + max_waiting`` within
                ``max_polls_per_second * max_interval / N`` for checks to
                stay within ``max_interval``.

        Each task is first checked after the poll policy's ``initial`` pause
        (``PollPolicy(initial=0)`` for tasks that finish at once). One pair's
        failure never stops the batch, but a 401, 402 or 403 on a submit
        stops its submits (the pairs left get that error, not attempted).
        Leaving the loop early (or cancelling it) stops all work, after the
        submits in flight were answered and journalled (each within its
        request timeout, ``Timeouts.total``; a second cancel does not cut
        that short). That happens when the
        iterator is closed: at once under ``contextlib.aclosing``, else when
        it is collected or the client closes, whichever comes first; until
        then the batch goes on ahead of the loop, within its bounds.

        Raises:
            ValueError, TypeError: Bad arguments (``download_to`` that cannot
                be a folder among them), before any request.
            ConfigurationError: ``journal`` is a folder, not a SQLite file this
                version can read (another shape, unknown states, damaged); at
                the first iteration, before any request: another batch uses
                it, it belongs to another API host (every server on this
                machine counts as one), or a PostgreSQL journal cannot be opened.
        """
        self._lifecycle.check()
        return start_batch(
            self._lifecycle,
            self._submitter,
            self._waits,
            self.download,
            pairs,
            concurrency=concurrency,
            max_waiting=max_waiting,
            timeout=timeout,
            journal=journal,
            download_to=download_to,
            on_progress=on_progress,
            hook=self._hook,
        )

    async def download(
        self,
        url: str,
        dest: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        on_progress: Callable[[int, int | None], object] | None = None,
        timeout: float | None = DOWNLOAD_TIMEOUT,
    ) -> Path:
        """Stream a WAV file to ``dest`` (via ``dest.part``, renamed when complete).

        The API key is never sent to the storage host. Only https URLs to
        public addresses are accepted, unless the client's own base URL is on
        loopback (testing against the fake server).

        Args:
            url: The file's URL, e.g. a task's ``wav_url``.
            dest: The file to write, or an existing directory to write into.
            overwrite: Replace an existing file.
            on_progress: Called with ``(bytes_done, total_or_None)`` per chunk.
            timeout: Seconds for the whole download, retries included (default
                an hour; ``None``: no limit). A partial ``.part`` file is kept
                for the next call to resume, with ``.part.version`` beside it
                (the file's version and URL: a call for another URL, or another
                version, starts afresh).

        Returns:
            The path written.

        Raises:
            ValueError: A refused URL, before any request.
            FileExistsError: ``dest`` exists and ``overwrite`` is false, or another
                download (of this process or another) is writing it.
            TransportError, APIError, InvalidResponseError: The download failed
                (``RequestTimeoutError`` when ``timeout`` passed).
            ClientClosedError: The client is closed, or was closed meanwhile
                (the ``.part`` file is kept).
        """
        check_options(on_progress=on_progress)
        return await download_file(
            self._transport.storage_session,
            url,
            dest,
            overwrite=overwrite,
            on_progress=on_progress,
            retry=self._retry,
            timeouts=self._transport.timeouts,
            allow_private=is_loopback(self._base_url),
            timeout=timeout,
            secret=self._transport.secret,
            hook=self._hook,
            lifecycle=self._lifecycle,
        )

    def watch(
        self,
        task_id: str | TaskHandle,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        poll: PollPolicy | None = None,
    ) -> AsyncGenerator[Task, None]:
        """Yield a snapshot whenever the status or progress changes; end on a terminal one.

        A failed task is yielded, not raised. ``TaskTimeoutError`` ends the
        iteration when ``timeout`` passes. Arguments are checked at once.
        """
        poller = self._poller(task_id, timeout, poll)
        return self._waits.changes(poller)

    def _poller(
        self, task_id: str | TaskHandle, timeout: float | None, poll: PollPolicy | None
    ) -> Poller:
        """The poll loop of a wait the caller asked for by id or handle, its arguments
        checked: the first read at once, and a task this client submitted known as such.

        Raises:
            TypeError, ValueError: A bad argument.
        """
        handle = handle_from(task_id)
        deadline = deadline_after(timeout)
        if poll is not None:
            check_options(poll=poll)
        return self._waits.poller(
            handle,
            deadline,
            policy=poll,
            first_delay=0.0,
            submitted_at=self._inflight.submitted.get(handle.task_id),
            elsewhere=isinstance(task_id, TaskHandle),  # a handle comes from some submit
        )


def _registry_of(receiver: object) -> Registry | None:
    """The registry of a :class:`~vidgo_async.webhooks.CallbackReceiver` (None for None).

    Raises:
        TypeError: ``receiver`` is something else.
    """
    if receiver is None:
        return None
    from .webhooks import CallbackReceiver  # the receiver's aiohttp.web only when used

    if not isinstance(receiver, CallbackReceiver):
        raise TypeError(f"callbacks must be a CallbackReceiver, got {type(receiver).__name__}")
    return receiver._registry
