"""``VidgoClient``: the public face of the SDK."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from types import TracebackType
from typing import Any

import aiohttp
from yarl import URL

from ._calls import Calls
from ._config import DEFAULT_TIMEOUT, PollPolicy, RetryPolicy, Timeouts
from ._http import Transport
from ._models import WAV_MODEL, Balance, Task, TaskHandle, TaskStatus
from ._retry import RateLimiter
from ._serde import parse_balance
from ._validate import check_callback_url, check_id, check_input, check_timeout
from ._waiter import snapshots
from .errors import (
    ConfigurationError,
    ConflictError,
    InvalidResponseError,
    TaskFailedError,
)

__all__ = ["VidgoClient"]

DEFAULT_BASE_URL = "https://api.vidgo.ai"
_WAV_URL_GRACE = 3  # re-reads of a finished task whose wav_url is not there yet


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
        max_connections: Size of the connection pool the client creates.
        max_polls_per_second: Client-wide cap on status requests.
        session: An ``aiohttp.ClientSession`` to use; the client never
            closes a session it did not create.
        callbacks: A callback receiver to race against polling.

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
        session: aiohttp.ClientSession | None = None,
        callbacks: Any = None,
    ) -> None:
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise TypeError("max_connections must be an int")
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        self._base_url = _base_url(base_url)
        self._poll = poll
        self._callbacks = callbacks
        self._transport = Transport(
            base_url=self._base_url,
            api_key=_api_key(api_key),
            timeouts=timeouts,
            session=session,
            max_connections=max_connections,
        )
        self._calls = Calls(self._transport, retry, RateLimiter(max_polls_per_second))
        self._closed = False

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
        """Close the HTTP session if the client created it. Safe to call twice."""
        self._closed = True
        await self._transport.close()

    @property
    def base_url(self) -> str:
        """The API origin this client talks to."""
        return str(self._base_url)

    def _open(self) -> Calls:
        if self._closed:
            raise RuntimeError("this VidgoClient is closed")
        return self._calls

    async def submit(
        self, model: str, input: Mapping[str, Any], *, callback_url: str | None = None
    ) -> Task:
        """Submit a task of any model; one attempt unless a retry is provably safe.

        Args:
            model: The model, e.g. ``"convert-to-wav"`` or ``"separate-vocals"``.
            input: The model's input, e.g. ``{"task_id": ..., "audio_id": ...}``.
            callback_url: Where the API should POST the result.

        Returns:
            The new task (status ``not_started``).

        Raises:
            AlreadyConvertedError: The track was converted to WAV before.
            SubmitOutcomeUnknownError: An attempt may have been accepted.
            APIError: The server refused the task.
            TransportError: No attempt reached the server.
        """
        model = check_id("model", model)
        body = check_input(input)
        callback_url = check_callback_url(callback_url)
        return await self._open().submit(model, body, callback_url, None)

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
        input = _wav_input(task_id, audio_id)
        callback_url = check_callback_url(callback_url)
        return await self._open().submit(WAV_MODEL, input, callback_url, None)

    async def get_task(self, task_id: str) -> Task:
        """The current state of a music task (Query Music Detail).

        Raises:
            NotFoundError: No such task.
            APIError, TransportError, InvalidResponseError: The call failed.
        """
        return await self._open().detail(check_id("task_id", task_id))

    async def get_status(self, task_id: str) -> Task:
        """The current state of an image or video task (generic status endpoint).

        Music tasks, WAV conversions included, are read with :meth:`get_task`.
        """
        return await self._open().status(check_id("task_id", task_id))

    async def balance(self) -> Balance:
        """The account's remaining credits."""
        return parse_balance(await self._open().get("/api/user/balance"))

    async def wait(
        self,
        task_id: str | TaskHandle,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        poll: PollPolicy | None = None,
    ) -> Task:
        """Poll a task until it finishes.

        Args:
            task_id: The task's id, or a :class:`TaskHandle`.
            timeout: Deadline in seconds (default 15 minutes); ``None`` waits forever.
            poll: Overrides the client's poll policy for this wait.

        Returns:
            The finished task.

        Raises:
            TaskFailedError: The task failed; carries the server's message.
            TaskTimeoutError: The deadline passed; the task still runs.
            APIError: A definitive error (the task is unknown, forbidden ...).
        """
        handle = _handle(task_id)
        deadline = _deadline(check_timeout(timeout))
        return await self._wait(handle, deadline, poll or self._poll, first_delay=0.0)

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
        handle = _handle(task_id)
        deadline = _deadline(check_timeout(timeout))
        task = await self._wait(handle, deadline, poll or self._poll, first_delay=0.0, wav=True)
        return _wav_url(task)

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
        """
        input = _wav_input(task_id, audio_id)
        callback_url = check_callback_url(callback_url)
        deadline = _deadline(check_timeout(timeout))
        task = await self._submit_for_wait(input, callback_url, deadline)
        handle = TaskHandle(task_id=task.task_id, source_task_id=task_id, audio_id=audio_id)
        done = await self._wait(handle, deadline, self._poll, wav=True)
        return _wav_url(done)

    async def _submit_for_wait(
        self, input: dict[str, Any], callback_url: str | None, deadline: float | None
    ) -> Task:
        """Submit a WAV conversion about to be waited on; a 409 naming a task resumes it."""
        try:
            return await self._open().submit(WAV_MODEL, input, callback_url, deadline)
        except ConflictError as exc:
            if exc.task_id is None:
                raise
            return Task(task_id=exc.task_id, status=TaskStatus.UNKNOWN)

    async def watch(
        self,
        task_id: str | TaskHandle,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        poll: PollPolicy | None = None,
    ) -> AsyncIterator[Task]:
        """Yield a snapshot whenever the status or progress changes; end on a terminal one.

        A failed task is yielded, not raised. ``TaskTimeoutError`` ends the
        iteration when ``timeout`` passes.
        """
        handle = _handle(task_id)
        deadline = _deadline(check_timeout(timeout))
        calls = self._open()
        previous: Task | None = None
        policy = poll or self._poll
        async with aclosing(
            snapshots(calls, handle, deadline=deadline, policy=policy, first_delay=0.0)
        ) as stream:
            async for task in stream:
                if previous is None or (task.status, task.progress) != (
                    previous.status,
                    previous.progress,
                ):
                    yield task
                previous = task

    async def _wait(
        self,
        handle: TaskHandle,
        deadline: float | None,
        policy: PollPolicy,
        *,
        first_delay: float | None = None,
        wav: bool = False,
    ) -> Task:
        calls = self._open()
        grace = _WAV_URL_GRACE if wav else 0
        delay = policy.initial if first_delay is None else first_delay
        stream = snapshots(calls, handle, deadline=deadline, policy=policy, first_delay=delay)
        async with aclosing(stream):
            async for task in stream:
                if task.status is TaskStatus.FAILED:
                    raise TaskFailedError(
                        f"task {task.task_id} failed: {task.error_message or 'no reason given'}",
                        handle=handle,
                        task=task,
                        error_message=task.error_message,
                    )
                if task.status is TaskStatus.FINISHED and (task.wav_url or grace <= 0):
                    return task
                if task.status is TaskStatus.FINISHED:
                    grace -= 1
        raise AssertionError("snapshots ended without a terminal task")  # pragma: no cover


def _api_key(value: str | None) -> str:
    key = os.environ.get("VIDGO_API_KEY") if value is None else value
    if not isinstance(key, str) or not key.strip():
        raise ConfigurationError(
            "no API key: pass api_key=... or set the VIDGO_API_KEY environment variable"
        )
    if any(ord(char) < 33 or ord(char) == 127 for char in key):
        raise ConfigurationError("the API key contains whitespace or control characters")
    return key


def _base_url(value: str | None) -> URL:
    text = value if value is not None else os.environ.get("VIDGO_BASE_URL") or DEFAULT_BASE_URL
    try:
        url = URL(text)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"base_url is not a URL: {text!r:.80}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"base_url must be an absolute http(s) URL, got {text!r:.80}")
    if url.user or url.password or url.query_string or url.fragment:
        raise ConfigurationError("base_url must not carry credentials, a query or a fragment")
    return url.with_path(url.path.rstrip("/") or "/")


def _wav_input(task_id: str, audio_id: str) -> dict[str, Any]:
    return {"task_id": check_id("task_id", task_id), "audio_id": check_id("audio_id", audio_id)}


def _handle(task_id: str | TaskHandle) -> TaskHandle:
    if isinstance(task_id, TaskHandle):
        return task_id
    return TaskHandle(task_id=check_id("task_id", task_id))


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _wav_url(task: Task) -> str:
    if task.wav_url is None:
        raise InvalidResponseError(
            f"task {task.task_id} finished without a wav_url (files: {len(task.files)})"
        )
    return task.wav_url
