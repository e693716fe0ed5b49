"""Structured hook points: what the client did or learnt, for metrics and tracing."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal

import attrs

from ._models import TaskStatus

__all__ = [
    "Event",
    "EventHook",
    "EventKind",
    "Scope",
    "call_back",
    "emit",
    "operation",
    "request",
    "retrying",
]

logger = logging.getLogger("vidgo_async")

#: Failures in a row after which a retry loop says so, once (a WARNING).
WARN_AFTER = 5

#: ``submit`` (a submit answered or gave up), ``poll`` (a status read),
#: ``retry`` (a failed attempt about to be repeated), ``status`` (a task's
#: status changed), ``callback`` (a callback hint woke a wait),
#: ``operation_start`` / ``operation_end`` (an operation began / ended),
#: ``request_start`` / ``request_end`` (one HTTP request was sent / answered or failed).
EventKind = Literal[
    "submit",
    "poll",
    "retry",
    "status",
    "callback",
    "operation_start",
    "operation_end",
    "request_start",
    "request_end",
]


@attrs.frozen(kw_only=True)
class Event:
    """One event, passed to the client's ``on_event`` hook.

    Start and end events come in pairs, from the same asyncio task, properly
    nested within it: everything an operation emits in between (its requests,
    retries, polls) comes from that task too, so a hook may keep what it
    needs in a context variable, as ``vidgo_async.otel`` does. Operations
    (``operation`` names them): ``convert_to_wav`` (its submit and wait inside),
    ``submit``, ``wait`` (of ``wait``, ``await_task``, ``convert_to_wav`` and a
    batch pair; ``watch`` has none, as it yields to your code between polls),
    ``download``, ``batch`` (from the start of ``convert_many`` until its last
    pair is done, in a task of its own that starts each pair's task) and
    ``pair`` (one distinct pair of a batch, in its own task, inside the batch's).

    No event carries the API key or a URL's query: requests name their route
    template (API requests) or their path (storage, the key redacted).

    Attributes:
        kind: What happened.
        task_id: The task concerned, when there is one (on an operation's end,
            the task its submit created).
        status: The task's status, for ``poll`` and ``status`` events.
        attempt: The attempt number, for ``submit`` and ``retry`` events.
        delay: Seconds until the next attempt, for ``retry`` events.
        error: The error's class name, when the step failed.
        path: The request's path, without its query (a storage path has the
            key redacted), for ``retry`` events and storage requests.
        operation: The operation, for ``operation_start`` / ``operation_end``.
        model: The task's model, for a submit's, a conversion's and a pair's operation.
        source_task_id: The music task a track belongs to (conversions, pairs).
        audio_id: The track converted (conversions, pairs, waits on a pair's task).
        method: The HTTP method, for request events.
        route: The API route template (``/api/generate/status/{task_id}``),
            for request events of API requests.
        server_address: The host a request went to, for request events and downloads.
        server_port: Its port.
        status_code: The HTTP status of the answer, for ``request_end``.
        duration: Seconds the operation or request took, for the ``_end`` events
            (a request: until the answer's headers and, for API requests, its body).
    """

    kind: EventKind
    task_id: str | None = None
    status: TaskStatus | None = None
    attempt: int | None = None
    delay: float | None = None
    error: str | None = None
    path: str | None = None
    operation: str | None = None
    model: str | None = None
    source_task_id: str | None = None
    audio_id: str | None = None
    method: str | None = None
    route: str | None = None
    server_address: str | None = None
    server_port: int | None = None
    status_code: int | None = None
    duration: float | None = None


EventHook = Callable[[Event], object]


def emit(hook: EventHook | None, kind: EventKind, **fields: Any) -> None:
    """Call ``hook`` with an event (see :func:`call_back`)."""
    if hook is not None:
        call_back(hook, Event(kind=kind, **fields), "on_event hook", f" on a {kind} event")


def call_back(callback: Callable[[Any], object], value: object, name: str, on: str = "") -> None:
    """Call the user's ``callback`` (``on_event``, a batch's ``on_progress``) with ``value``.

    Whatever it raises is logged, never raised into the SDK, which may hold a paid
    task's answer or a pair's result at that point: a CancelledError too (a plain
    function's is no cancel of ours), but not Ctrl-C or SystemExit. A coroutine (or
    another awaitable but a Future) it returns, as a lambda around an ``async def``
    does, is closed, with a RuntimeWarning: nothing awaits it.
    """
    try:
        returned = callback(value)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:
        logger.exception("the %s raised%s", name, on)
        return
    # A Future (a task the callback started) runs by itself; any other awaitable waits
    # to be awaited, as a coroutine or aiohttp's lazy request does: closed, if it can be,
    # and a RuntimeWarning in place of Python's "never awaited" (shown once per place).
    if inspect.isawaitable(returned) and not isinstance(returned, asyncio.Future):
        close = getattr(returned, "close", None)
        if callable(close):
            close()
        with contextlib.suppress(Warning):  # an error under -W error: not into the SDK
            warnings.warn(
                f"the {name} returned an awaitable, which nothing awaits: pass a plain"
                " function (it may start async work with asyncio.create_task)",
                RuntimeWarning,
                stacklevel=2,
            )


def retrying(
    hook: EventHook | None,
    what: str,
    exc: BaseException,
    *,
    attempt: int,
    delay: float,
    path: str,
    task_id: str | None = None,
) -> None:
    """``what`` failed with ``exc`` for the ``attempt``-th time in a row and is tried
    again in ``delay`` seconds: a DEBUG line and a ``retry`` event, and one WARNING when
    the failures in a row reach :data:`WARN_AFTER` (a persistent failure says so once)."""
    name = type(exc).__name__
    if attempt == WARN_AFTER:
        logger.warning(
            "%s: %d attempts have failed in a row (last: %s: %s); retrying until the deadline",
            what,
            attempt,
            name,
            exc,
        )
    logger.debug("%s: attempt %d failed (%s); retrying in %.2fs", what, attempt, name, delay)
    emit(hook, "retry", task_id=task_id, attempt=attempt, delay=delay, error=name, path=path)


class Scope:
    """Emits a start event on entry and the matching end event on exit, with the
    duration and, if the block raised, the exception's class name as ``error``.

    Without a hook it does nothing (and :func:`operation` / :func:`request`
    hand out one shared idle scope).
    """

    __slots__ = ("_end", "_fields", "_hook", "_start", "_started")

    def __init__(
        self, hook: EventHook | None, start: EventKind, end: EventKind, fields: dict[str, Any]
    ) -> None:
        self._hook = hook
        self._start = start
        self._end = end
        self._fields = fields
        self._started = 0.0

    def __enter__(self) -> Scope:
        if self._hook is not None:
            self._started = time.monotonic()
            emit(self._hook, self._start, **self._fields)
        return self

    def note(self, **fields: Any) -> None:
        """Fields for the end event only (what became known meanwhile)."""
        if self._hook is not None:
            self._fields.update(fields)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._hook is None:
            return
        if exc_type is not None:
            self._fields.setdefault("error", exc_type.__name__)
        emit(self._hook, self._end, duration=time.monotonic() - self._started, **self._fields)


_IDLE = Scope(None, "operation_start", "operation_end", {})


def operation(hook: EventHook | None, name: str, **fields: Any) -> Scope:
    """A scope emitting ``operation_start`` and ``operation_end`` for operation ``name``."""
    if hook is None:
        return _IDLE
    return Scope(hook, "operation_start", "operation_end", {"operation": name, **fields})


def request(
    hook: EventHook | None,
    method: str,
    *,
    route: str | None = None,
    path: str | None = None,
    server_address: str | None,
    server_port: int | None,
) -> Scope:
    """A scope emitting ``request_start`` and ``request_end`` for one HTTP request
    (an API request names its ``route``, a storage request its ``path``)."""
    if hook is None:
        return _IDLE
    fields = {
        "method": method,
        "route": route,
        "path": path,
        "server_address": server_address,
        "server_port": server_port,
    }
    return Scope(hook, "request_start", "request_end", fields)
