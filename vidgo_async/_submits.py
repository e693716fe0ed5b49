"""The submit that precedes a wait: callback URL added, a 409 naming a task resumed."""

from __future__ import annotations

from typing import Any

from ._callbacks import Registry, with_callback
from ._calls import Calls
from ._models import WAV_MODEL, Task, TaskStatus
from .errors import ConflictError

__all__ = ["submit_for_wait"]


async def submit_for_wait(
    calls: Calls,
    registry: Registry | None,
    input: dict[str, Any],
    callback_url: str | None,
    deadline: float | None,
    *,
    resumed: bool,
) -> Task:
    """Submit a WAV conversion about to be waited on.

    With a callback ``registry`` and no ``callback_url``, the submit carries
    a fresh callback URL. A 409 that names a task gives that task (status
    ``UNKNOWN``), to be waited on instead.
    """

    async def send(url: str | None) -> Task:
        try:
            return await calls.submit(WAV_MODEL, input, url, deadline, resumed=resumed)
        except ConflictError as exc:
            if exc.task_id is None:
                raise
            return Task(task_id=exc.task_id, status=TaskStatus.UNKNOWN)

    return await with_callback(registry, callback_url, send)
