"""Reads: idempotent GETs retried by backoff, and the single rate-capped poll a wait makes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import attrs
import backoff

from .._config import RetryPolicy
from .._events import EventHook, emit, retrying
from .._models import Balance, Task
from .._timing.budget import RetryBudget
from .._timing.classify import retryable
from .._timing.deadline import Deadline
from .._timing.limits import Limiter, holding
from .._timing.schedules import retry_waits
from .._wire.convert import parse_balance, parse_task
from .._wire.transport import Transport
from ..errors import VidgoError

__all__ = ["DETAIL_PATH", "Reader"]

logger = logging.getLogger("vidgo_async")

DETAIL_PATH = "/api/generate/detail/music"
BALANCE_PATH = "/api/user/balance"
#: The template of the generic status endpoint's path, as events name it.
STATUS_ROUTE = "/api/generate/status/{task_id}"


@attrs.define
class Reader:
    """The client's reads, sharing one transport, retry budget and poll rate cap.

    Status reads (detail and status, whether a call's or a wait's) count
    against the client-wide ``max_polls_per_second``; a 429 on one slows
    them all.
    """

    transport: Transport
    retry: RetryPolicy
    limiter: Limiter
    budget: RetryBudget
    hook: EventHook | None = None
    _retried: Callable[..., Awaitable[Any]] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:  # _get_once, retried by backoff
        self._retried = backoff.on_exception(
            retry_waits,
            VidgoError,
            max_tries=self.retry.max_attempts,
            giveup=self._gives_up,
            on_backoff=self._note_retry,
            jitter=None,  # retry_waits jitters, and stretches pauses to Retry-After
            logger=None,
            policy=self.retry,
        )(self._get_once)

    async def get(
        self,
        path: str,
        params: dict[str, str] | None = None,
        *,
        limited: bool,
        route: str | None = None,
    ) -> Any:
        """An idempotent GET, retried within ``max_attempts`` and the retry budget.

        ``limited`` GETs (status reads) take a slot under the poll rate cap;
        ``route`` is the path's template (default: the path).
        """
        return await self._retried(path, params, limited, route)

    async def _get_once(
        self, path: str, params: dict[str, str] | None, limited: bool, route: str | None
    ) -> Any:
        limiter = self.limiter if limited else None
        cap = self.retry.max_retry_after
        async with holding(limiter, None, "a poll slot", cap) as slot:
            try:
                data = await self.transport.request(
                    "GET", path, params=params, route=route, slot=slot
                )
            except VidgoError as exc:
                if retryable(exc):
                    self.budget.record_failure()
                raise
        self.budget.record_success()
        return data

    def _gives_up(self, exc: Exception) -> bool:
        return not retryable(exc) or not self.budget.allows_retry()

    def _note_retry(self, details: Any) -> None:
        path = details["args"][0]
        retrying(
            self.hook,
            f"GET {path}",
            details["exception"],
            attempt=details["tries"],
            delay=details["wait"],
            path=path,
        )

    async def detail(self, task_id: str) -> Task:
        """Query Music Detail for ``task_id``, retried like any GET."""
        data = await self.get(DETAIL_PATH, {"task_id": task_id}, limited=True)
        return parse_task(data, task_id=task_id, secret=self.transport.secret)

    async def status(self, task_id: str) -> Task:
        """The generic status endpoint (image and video tasks)."""
        path = "/api/generate/status/" + quote(task_id, safe="")
        data = await self.get(path, limited=True, route=STATUS_ROUTE)
        return parse_task(data, task_id=task_id, secret=self.transport.secret)

    async def balance(self) -> Balance:
        """The account's balance, retried like any GET; not under the poll rate cap."""
        return parse_balance(await self.get(BALANCE_PATH, limited=False))

    async def poll(
        self, task_id: str, deadline: Deadline, gate: asyncio.Semaphore | None = None
    ) -> Task:
        """One rate-capped Query Music Detail request, bounded by ``deadline``.

        ``gate`` (a batch's bound on its requests in flight) is taken after the
        slot under the rate cap, so that no poll queued on the cap holds it.

        Raises:
            RequestTimeoutError: The deadline came first.
            VidgoError: Whatever the single attempt met; the wait decides.
        """
        cap = self.retry.max_retry_after
        async with holding(self.limiter, deadline.remaining(), "the next poll slot", cap) as slot:
            try:
                async with gate or contextlib.nullcontext():
                    data = await self.transport.request(
                        "GET",
                        DETAIL_PATH,
                        params={"task_id": task_id},
                        timeout=deadline.remaining(),
                        slot=slot,
                    )
                task = parse_task(data, task_id=task_id, secret=self.transport.secret)
            except VidgoError as exc:
                emit(self.hook, "poll", task_id=task_id, error=type(exc).__name__)
                raise
        # A failed poll is its wait's to repeat (until the deadline), not the retry
        # budget's to allow: only its success counts there, as news of a healthy server.
        self.budget.record_success()
        emit(self.hook, "poll", task_id=task_id, status=task.status)
        return task
