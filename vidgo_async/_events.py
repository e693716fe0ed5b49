"""Structured hook points: what the client did or learnt, for metrics and tracing."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal

import attrs

from ._models import TaskStatus

__all__ = ["Event", "EventHook", "EventKind", "emit"]

logger = logging.getLogger("vidgo_async")

#: ``submit`` (a submit answered or gave up), ``poll`` (a status read),
#: ``retry`` (a failed attempt about to be repeated), ``status`` (a task's
#: status changed), ``callback`` (a callback hint woke a wait).
EventKind = Literal["submit", "poll", "retry", "status", "callback"]


@attrs.frozen(kw_only=True)
class Event:
    """One event, passed to the client's ``on_event`` hook.

    Attributes:
        kind: What happened.
        task_id: The task concerned, when there is one.
        status: The task's status, for ``poll`` and ``status`` events.
        attempt: The attempt number, for ``submit`` and ``retry`` events.
        delay: Seconds until the next attempt, for ``retry`` events.
        error: The error's class name, when the step failed.
        path: The API path, for ``retry`` events.
    """

    kind: EventKind
    task_id: str | None = None
    status: TaskStatus | None = None
    attempt: int | None = None
    delay: float | None = None
    error: str | None = None
    path: str | None = None


EventHook = Callable[[Event], object]


def emit(hook: EventHook | None, kind: EventKind, **fields: Any) -> None:
    """Call ``hook`` with an event; a failing hook is logged, never raised into the SDK."""
    if hook is None:
        return
    try:
        hook(Event(kind=kind, **fields))
    except Exception:
        logger.exception("the on_event hook raised on a %s event", kind)
