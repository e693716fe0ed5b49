"""Callback delivery of the fake: the vendor's POST when a task ends, retries, misbehaviour.

When a submit carries ``callback_url``, a timer fires at the task's end and
POSTs its detail answer there (``{"code": 200, "data": {...}}``, or the bare
``data`` object as a sister platform sends), retrying after 1, 2 and 4
seconds, scaled to the fake's clock, while the receiver does not answer
2xx. A task that has already ended when it is accepted (zero queue and run
time) has its first attempt written to the receiver's socket *before* the
submit is answered: the race of a fast task. The submit never waits for the
receiver's answer (the vendor's callback cannot hold up its submit answer).
:class:`CallbackFaults` scripts drops, repeats, delays and reordering.

Timers run in real seconds. When a task's timing changes (``set_duration``)
its timer moves with it; when the fake runs on a clock of its own, a callback
that falls due on that clock goes out as the fake handles its next request
(:meth:`CallbackDelivery.catch_up`), or when its real-seconds timer fires if
that comes first.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import ipaddress
import json
import random
from collections.abc import Callable, Iterable
from types import SimpleNamespace
from typing import Literal

import aiohttp
import attrs
from yarl import URL

from ._state import FakeTask

__all__ = ["CallbackAttempt", "CallbackBody", "CallbackDelivery", "CallbackFaults"]

CallbackBody = Literal["wrapped", "bare"]
Outcome = Literal["answered", "failed", "dropped", "skipped"]

_RETRY_DELAYS = (1.0, 2.0, 4.0)  # the vendor's documented retry schedule
_MIN_RECHECK = 0.005
# How long a submit waits for the first attempt of an ended task to be written.
# Writing needs only a connection; a connect slower than this (an unreachable
# host with callback_hosts="any") is not the race this ordering is about.
_SEND_WAIT = 1.0


def _fraction(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be within [0, 1], got {value!r}")


def _seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class CallbackFaults:
    """Scripted misbehaviour of callback delivery, drawn per task from the fake's seed.

    Attributes:
        drop: Fraction of tasks whose callbacks are all lost (1.0: every one).
        duplicate: Fraction of tasks whose callback is delivered a second time.
        delay: Seconds every delivery starts after its task ends.
        reorder: Up to this many further seconds, drawn per task, so that
            callbacks arrive in another order than their tasks ended.
    """

    drop: float = attrs.field(default=0.0, validator=_fraction)
    duplicate: float = attrs.field(default=0.0, validator=_fraction)
    delay: float = attrs.field(default=0.0, validator=_seconds)
    reorder: float = attrs.field(default=0.0, validator=_seconds)


@attrs.frozen(kw_only=True)
class CallbackAttempt:
    """One callback the fake sent, or decided not to send.

    Attributes:
        task_id: The task it reports.
        url: The callback URL.
        attempt: 1 for the first delivery, 2 to 4 for the vendor's retries.
        outcome: ``"answered"`` (see ``status``), ``"failed"`` (no answer),
            ``"dropped"`` (by :class:`CallbackFaults`), ``"skipped"`` (not a
            loopback URL while the fake delivers only to loopback).
        status: The receiver's HTTP status, when it answered.
        duplicate: Whether this is the scripted second delivery.
    """

    task_id: str
    url: str
    attempt: int
    outcome: Outcome
    status: int | None = None
    duplicate: bool = False


class CallbackDelivery:
    """Fires a timer at each task's end and POSTs its callback; closes everything it opens.

    Attributes:
        body: ``"wrapped"`` or ``"bare"`` bodies, for deliveries from now on.
        faults: Scripted misbehaviour, for tasks ending from now on.
        attempts: Every callback sent (or dropped, or skipped), in order.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        body: CallbackBody,
        retry_scale: float,
        timeout: float,
        loopback_only: bool,
        seed: int | None,
        proxy: str | None = None,
    ) -> None:
        if body not in ("wrapped", "bare"):
            raise ValueError(f"callback_body must be 'wrapped' or 'bare', got {body!r}")
        if not retry_scale >= 0 or not timeout > 0:
            raise ValueError("callback_retry_scale must be >= 0 and callback_timeout > 0")
        self.clock = clock
        self.body: CallbackBody = body
        self.faults = CallbackFaults()
        self.base_url = ""
        self.attempts: list[CallbackAttempt] = []
        self._scale = retry_scale
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._loopback_only = loopback_only
        self._proxy = None if proxy is None else URL(proxy)
        self._rng = random.Random(seed)
        self._tasks: dict[str, FakeTask] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # (end on the fake's clock, task id) of armed tasks; stale entries are skipped.
        self._ends: list[tuple[float, str]] = []
        self._running: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        """Timers and deliveries not finished yet."""
        return len(self._timers) + len(self._running)

    async def accepted(self, task: FakeTask) -> None:
        """Schedule the callback of a task just accepted (called before the submit answer).

        A task that has ended already gets its first attempt at once: this returns
        once that request is written (or could not be), at most ``_SEND_WAIT``
        seconds, and never waits for the receiver's answer.
        """
        if task.callback_url is None or self._closed:
            return
        if self._left(task) > 0:
            self._tasks[task.task_id] = task
            self._arm(task.task_id, self._left(task))
            heapq.heappush(self._ends, (self._end(task), task.task_id))
            return
        sent = asyncio.Event()
        if self._start(task, sent):
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(sent.wait(), _SEND_WAIT)

    def catch_up(self) -> None:
        """Start the callbacks of armed tasks that have ended on the fake's clock.

        The fake calls it on every request: with a clock of its own, tasks end
        sooner (in real seconds) than their timers fire.
        """
        now = self.clock()
        while self._ends and self._ends[0][0] <= now:
            _, task_id = heapq.heappop(self._ends)
            task = self._tasks.get(task_id)
            if task is None:
                continue  # delivered already, or an entry from before a retime
            if self._left(task) > 0:  # lengthened since
                heapq.heappush(self._ends, (self._end(task), task_id))
                continue
            self._fire(task_id)

    def retimed(self, task_ids: Iterable[str]) -> None:
        """Move the timers of ``task_ids``, whose timing just changed, to their new end."""
        for task_id in task_ids:
            task = self._tasks.get(task_id)
            if task is None:
                continue
            timer = self._timers.pop(task_id, None)
            if timer is not None:
                timer.cancel()
            self._arm(task_id, max(self._left(task), 0.0))
            heapq.heappush(self._ends, (self._end(task), task_id))

    async def close(self) -> None:
        """Cancel every timer and delivery; close the HTTP session. Safe to call twice."""
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._ends.clear()
        running = list(self._running)
        for job in running:
            job.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- scheduling -------------------------------------------------------------------------

    def _end(self, task: FakeTask) -> float:
        return task.accepted_at + task.queue_time + task.run_time

    def _left(self, task: FakeTask) -> float:
        return self._end(task) - self.clock()

    def _arm(self, task_id: str, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._timers[task_id] = loop.call_later(delay, self._due, task_id)

    def _fire(self, task_id: str) -> None:
        timer = self._timers.pop(task_id, None)
        if timer is not None:
            timer.cancel()
        self._due(task_id)

    def _due(self, task_id: str) -> None:
        self._timers.pop(task_id, None)
        task = self._tasks.pop(task_id, None)
        if task is None or self._closed:
            return
        if task.status(self.clock()) not in ("finished", "failed"):
            # Its timing changed, or the fake runs on a clock of its own: look again later.
            self._tasks[task_id] = task
            self._arm(task_id, max(self._left(task), _MIN_RECHECK))
            return
        self._start(task)

    def _start(self, task: FakeTask, sent: asyncio.Event | None = None) -> bool:
        """Start the delivery of an ended task; whether its first attempt goes out now.

        ``sent`` is set once that first attempt is written or has failed.
        """
        plan = self._draw()
        if plan is None:
            self._record(task, 1, "dropped")
            return False
        wait, duplicate = plan
        self._spawn(task, wait, duplicate, sent=None if wait > 0 else sent)
        return wait <= 0

    def _draw(self) -> tuple[float, bool] | None:
        """``(extra wait, duplicate)`` for one task's delivery; None when it is dropped."""
        faults = self.faults
        if faults.drop and self._rng.random() < faults.drop:
            return None
        wait = faults.delay + (self._rng.uniform(0, faults.reorder) if faults.reorder else 0.0)
        duplicate = bool(faults.duplicate) and self._rng.random() < faults.duplicate
        return wait, duplicate

    def _spawn(
        self, task: FakeTask, wait: float, duplicate: bool, *, sent: asyncio.Event | None
    ) -> None:
        job = asyncio.create_task(self._deliver(task, wait, duplicate, sent=sent))
        self._running.add(job)
        job.add_done_callback(self._running.discard)

    # -- sending ----------------------------------------------------------------------------

    async def _deliver(
        self, task: FakeTask, wait: float, duplicate: bool, *, sent: asyncio.Event | None
    ) -> None:
        if wait > 0:
            await asyncio.sleep(wait)
        body = self._body(task)
        await self._with_retries(task, body, duplicate=False, sent=sent)
        if duplicate:
            await asyncio.sleep(_RETRY_DELAYS[0] * self._scale)
            await self._with_retries(task, body, duplicate=True)

    async def _with_retries(
        self, task: FakeTask, body: bytes, *, duplicate: bool, sent: asyncio.Event | None = None
    ) -> None:
        for attempt in range(1, len(_RETRY_DELAYS) + 2):
            if attempt > 1:
                await asyncio.sleep(_RETRY_DELAYS[attempt - 2] * self._scale)
            if await self._attempt(task, body, attempt, duplicate=duplicate, sent=sent):
                return
            sent = None

    async def _attempt(
        self,
        task: FakeTask,
        body: bytes,
        attempt: int,
        *,
        duplicate: bool,
        sent: asyncio.Event | None = None,
    ) -> bool:
        """POST once; whether the receiver answered 2xx (or the URL is out of bounds).

        ``sent`` is set as soon as the request is written, or when the attempt ends.
        """
        try:
            return await self._post(task, body, attempt, duplicate=duplicate, sent=sent)
        finally:
            if sent is not None:
                sent.set()

    async def _post(
        self, task: FakeTask, body: bytes, attempt: int, *, duplicate: bool, sent: object
    ) -> bool:
        url: str | URL | None = task.callback_url
        assert isinstance(url, str)
        if self._proxy is not None:  # a reverse proxy: same path and query, another origin
            url = URL(f"{self._proxy.origin()}{URL(url).raw_path_qs}", encoded=True)
        elif self._loopback_only and not _is_loopback(url):
            self._record(task, attempt, "skipped", duplicate=duplicate)
            return True
        if self._session is None:
            tracing = aiohttp.TraceConfig()
            tracing.on_request_chunk_sent.append(_on_chunk_sent)
            self._session = aiohttp.ClientSession(timeout=self._timeout, trace_configs=[tracing])
        headers = {"Content-Type": "application/json"}
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False, trace_request_ctx=sent
            ) as response:
                await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            self._record(task, attempt, "failed", duplicate=duplicate)
            return False
        self._record(task, attempt, "answered", status=response.status, duplicate=duplicate)
        return 200 <= response.status < 300

    def _body(self, task: FakeTask) -> bytes:
        data = task.data(self.clock(), self.base_url, with_progress=False)
        payload = data if self.body == "bare" else {"code": 200, "data": data}
        return json.dumps(payload).encode()

    def _record(
        self,
        task: FakeTask,
        attempt: int,
        outcome: Outcome,
        *,
        status: int | None = None,
        duplicate: bool = False,
    ) -> None:
        url = task.callback_url or ""
        self.attempts.append(
            CallbackAttempt(
                task_id=task.task_id,
                url=url,
                attempt=attempt,
                outcome=outcome,
                status=status,
                duplicate=duplicate,
            )
        )


async def _on_chunk_sent(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestChunkSentParams,
) -> None:
    """Tell the waiting submit that its first attempt is being written.

    aiohttp signals a chunk just before it hands it to the socket, in the same
    step: by the time the submit resumes, the request is on the wire.
    """
    sent = context.trace_request_ctx
    if isinstance(sent, asyncio.Event):
        sent.set()


def _is_loopback(url: str) -> bool:
    with contextlib.suppress(ValueError):
        host = URL(url).host or ""
        if host == "localhost":
            return True
        return ipaddress.ip_address(host).is_loopback
    return False
