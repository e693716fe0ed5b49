"""API calls with their retry rules: idempotent reads, polls, and the unsafe submit.

Which failures are worth another attempt, and what a failed submit may have
done on the server, is decided here and nowhere else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import quote

from ._config import RetryPolicy
from ._events import EventHook, emit
from ._http import Transport
from ._models import WAV_MODEL, Task, TaskStatus
from ._retry import RateLimiter, RetryBudget, retry_delay
from ._serde import parse_accepted, parse_submitted, parse_task
from .errors import (
    AlreadyConvertedError,
    ConflictError,
    InvalidResponseError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    SubmitOutcomeUnknownError,
    TransportError,
    VidgoError,
)

__all__ = ["DETAIL_PATH", "Accepted", "Calls", "is_transient", "remaining"]

logger = logging.getLogger("vidgo_async")

DETAIL_PATH = "/api/generate/detail/music"
SUBMIT_PATH = "/api/generate/submit"
_RETRIED_5XX = frozenset({500, 502, 503, 504})
# Answers that prove the server did not process the request.
_REFUSED_5XX = frozenset({503})


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is worth another attempt (the rest are definitive answers)."""
    if isinstance(exc, ServerError):
        return exc.status in _RETRIED_5XX
    return isinstance(exc, (TransportError, RateLimitError, InvalidResponseError))


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (a ``time.monotonic`` instant), or ``None``."""
    return None if deadline is None else deadline - time.monotonic()


def _retry_after(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, (RateLimitError, ServerError)) else None


def _submit_was_refused(exc: VidgoError) -> bool:
    """Whether a failed submit provably was not processed (safe to repeat)."""
    if isinstance(exc, TransportError):
        return not exc.sent
    if isinstance(exc, ServerError):
        return exc.status in _REFUSED_5XX
    return isinstance(exc, RateLimitError)


class Accepted(NamedTuple):
    """The task a submit settled on: its id, and the answer's task object
    (``None`` when a 409 named a task an earlier attempt had created)."""

    task_id: str
    answer: Mapping[str, Any] | None

    def task(self) -> Task:
        """The task as the answer described it; ``UNKNOWN`` when a 409 named it."""
        if self.answer is None:
            return Task(task_id=self.task_id, status=TaskStatus.UNKNOWN)
        return parse_submitted(self.answer, self.task_id)


class Calls:
    """The client's calls, sharing one transport, retry budget and poll rate cap."""

    def __init__(
        self,
        transport: Transport,
        retry: RetryPolicy,
        limiter: RateLimiter,
        hook: EventHook | None = None,
    ) -> None:
        self.transport = transport
        self.retry = retry
        self.limiter = limiter
        self.budget = RetryBudget(retry)
        self.hook = hook

    def _slow_down(self, exc: RateLimitError) -> None:
        """Slow every status read after a 429: pause for its Retry-After, else halve the rate."""
        if exc.retry_after:
            self.limiter.slow_down(min(exc.retry_after, self.retry.max_retry_after))
        else:
            self.limiter.back_off()

    def delay_after(self, exc: BaseException, attempt: int) -> float:
        """Seconds to wait after ``exc``: the backoff, lengthened by any ``Retry-After``."""
        delay = retry_delay(self.retry, attempt)
        retry_after = _retry_after(exc)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry.max_retry_after))
        return delay

    async def get(
        self, path: str, params: dict[str, str] | None = None, *, limited: bool = False
    ) -> Any:
        """An idempotent GET, retried within ``max_attempts`` and the retry budget.

        ``limited`` GETs (status reads) count against the client-wide poll rate cap.
        """
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                if limited:
                    await self.limiter.acquire()
                data = await self.transport.request("GET", path, params=params)
            except VidgoError as exc:
                if limited and isinstance(exc, RateLimitError):
                    self._slow_down(exc)
                if not is_transient(exc):
                    raise
                self.budget.record_failure()
                if attempt == self.retry.max_attempts or not self.budget.allows_retry():
                    raise
                await self._pause(exc, attempt, "GET", path, self.delay_after(exc, attempt))
            else:
                self.budget.record_success()
                return data
        raise AssertionError("unreachable")  # pragma: no cover

    async def detail(self, task_id: str) -> Task:
        """Query Music Detail for ``task_id``, retried like any GET."""
        data = await self.get(DETAIL_PATH, {"task_id": task_id}, limited=True)
        return parse_task(data, task_id=task_id)

    async def status(self, task_id: str) -> Task:
        """The generic status endpoint (image and video tasks)."""
        path = "/api/generate/status/" + quote(task_id, safe="")
        return parse_task(await self.get(path, limited=True), task_id=task_id)

    async def poll(self, task_id: str, deadline: float | None, *, claimed: bool = False) -> Task:
        """One rate-capped Query Music Detail request, bounded by ``deadline``;
        ``claimed``: its slot under the rate cap is already taken.

        Raises:
            RequestTimeoutError: The deadline came first.
            VidgoError: Whatever the single attempt met; the waiter decides.
        """
        if not (claimed or self.limiter.try_acquire()):
            try:
                await self.limiter.acquire(remaining(deadline))
            except TimeoutError:
                raise RequestTimeoutError("deadline reached before the next poll slot") from None
        try:
            data = await self.transport.request(
                "GET",
                DETAIL_PATH,
                params={"task_id": task_id},
                timeout=None if deadline is None else deadline - time.monotonic(),
            )
            task = parse_task(data, task_id=task_id)
        except VidgoError as exc:
            emit(self.hook, "poll", task_id=task_id, error=type(exc).__name__)
            if isinstance(exc, RateLimitError):
                self._slow_down(exc)
            raise
        self.budget.record_success()
        if self.hook is not None:  # spares building the event's fields on every poll
            emit(self.hook, "poll", task_id=task_id, status=task.status)
        return task

    async def submit(
        self,
        model: str,
        input: dict[str, Any],
        callback_url: str | None,
        deadline: float | None,
        *,
        resumed: bool = False,
    ) -> Accepted:
        """Submit a task, repeating it only where that cannot convert a track twice.

        Only the answer's task id is read here: a wait needs nothing more,
        and :meth:`Accepted.task` reads the rest for those who want it.

        Without a deadline, at most ``max_attempts`` attempts within the retry
        budget; with one, attempts go on until it passes. ``resumed`` says an
        earlier submit of the same input (another run's) may have been accepted.

        Raises:
            AlreadyConvertedError: 409 on a clean first attempt of a WAV conversion.
            ConflictError: 409 on a clean first attempt of another model.
            SubmitOutcomeUnknownError: An attempt may have been accepted and
                no later one settled it.
            VidgoError: The last failure, when no attempt can have been accepted.
        """
        body: dict[str, Any] = {"model": model, "input": input}
        if callback_url is not None:
            body["callback_url"] = callback_url
        ambiguous: VidgoError | None = None
        if resumed:
            ambiguous = TransportError("an earlier run was interrupted during this submit")
        attempt = 0
        while True:
            attempt += 1
            try:
                data = await self.transport.request(
                    "POST", SUBMIT_PATH, body=body, timeout=remaining(deadline)
                )
                accepted = Accepted(*parse_accepted(data))
            except ConflictError as exc:
                emit(self.hook, "submit", attempt=attempt, error=type(exc).__name__)
                return self._after_conflict(exc, model, input, ambiguous)
            except VidgoError as exc:
                if not is_transient(exc):
                    emit(self.hook, "submit", attempt=attempt, error=type(exc).__name__)
                    raise
                if not _submit_was_refused(exc):
                    ambiguous = exc
                self.budget.record_failure()
                delay = self.delay_after(exc, attempt)
                if self._gives_up(attempt, deadline, delay):
                    emit(self.hook, "submit", attempt=attempt, error=type(exc).__name__)
                    if ambiguous is not None:
                        raise _unknown(model, input, ambiguous) from exc
                    raise
                await self._pause(exc, attempt, "POST", SUBMIT_PATH, delay)
            else:
                self.budget.record_success()
                if logger.isEnabledFor(logging.DEBUG):  # one call, not two, when quiet
                    logger.debug("submitted %s: task %s", model, accepted.task_id)
                if self.hook is not None:
                    emit(self.hook, "submit", task_id=accepted.task_id, attempt=attempt)
                return accepted

    def _gives_up(self, attempt: int, deadline: float | None, delay: float) -> bool:
        if deadline is None:
            return attempt >= self.retry.max_attempts or not self.budget.allows_retry()
        # With a deadline: stop when the next attempt could only start at or past it.
        return deadline - time.monotonic() <= delay

    def _after_conflict(
        self,
        exc: ConflictError,
        model: str,
        input: dict[str, Any],
        ambiguous: VidgoError | None,
    ) -> Accepted:
        if ambiguous is None:
            kind = AlreadyConvertedError if model == WAV_MODEL else ConflictError
            raise kind(exc.message, status=exc.status, code=exc.code, task_id=exc.task_id) from exc
        if exc.task_id is not None:
            # The server named the task our earlier, unanswered attempt created.
            return Accepted(exc.task_id, None)
        raise _unknown(model, input, ambiguous) from exc

    async def _pause(
        self, exc: VidgoError, attempt: int, method: str, path: str, delay: float
    ) -> None:
        logger.debug(
            "%s %s attempt %d failed (%s); retrying in %.2fs",
            method,
            path,
            attempt,
            type(exc).__name__,
            delay,
        )
        emit(self.hook, "retry", attempt=attempt, delay=delay, error=type(exc).__name__, path=path)
        await asyncio.sleep(delay)


def _unknown(model: str, input: dict[str, Any], cause: VidgoError) -> SubmitOutcomeUnknownError:
    return SubmitOutcomeUnknownError(
        f"{model} submit for {input!r:.200} may have been accepted: an attempt failed after "
        f"it was sent ({type(cause).__name__}: {cause}) and a retry could not settle it; "
        "do not resubmit blindly, look the task up instead",
        model=model,
        input=input,
    )
