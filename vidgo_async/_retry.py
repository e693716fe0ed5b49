"""All timing: retry delays, the retry budget, poll intervals and the poll rate cap.

Delays come from ``backoff``'s wait generators and jitter functions, shaped
by the policy objects; tests pass zero-wait policies rather than switching
anything off globally.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import itertools
import math
import random
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import backoff

from ._config import PollPolicy, RetryPolicy
from ._models import Task, TaskStatus

_RANDOM = random.Random()
_MIN_GROWTH = 0.01  # seconds: a zero initial interval still grows, never a busy loop
_MAX_WINDOW = 10_000  # grants remembered by the rate limiter's sliding window
_MIN_SHARE = 1 / 16  # the rate limiter never backs off below this share of its rate
_RECOVERY = 0.1  # share of the rate won back per second after a back-off

__all__ = [
    "PollSchedule",
    "RateLimiter",
    "RetryBudget",
    "backoff_delays",
    "parse_retry_after",
    "retry_delay",
]


def parse_retry_after(value: str | None, *, cap: float, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for, capped; ``None`` if unusable.

    Accepts delta-seconds (``"120"``, ``"1.5"``) and HTTP dates. Negative
    values and past dates mean "now" (0); junk, NaN and infinities are
    ignored (``None``), so the caller's own backoff applies.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds: float | None
    try:
        seconds = float(text)
    except ValueError:
        seconds = _seconds_until_http_date(text, now)
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def _seconds_until_http_date(text: str, now: float | None) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    reference = datetime.now(timezone.utc).timestamp() if now is None else now
    return when.timestamp() - reference


def retry_delay(policy: RetryPolicy, attempt: int) -> float:
    """The pause after the ``attempt``-th failure (1-based), with full jitter:
    ``U(0, min(max_delay, base_delay * 2**(attempt - 1)))``."""
    exponent = min(attempt - 1, 64)  # past this the cap has long been reached
    return backoff.full_jitter(min(policy.max_delay, policy.base_delay * 2**exponent))


def backoff_delays(policy: RetryPolicy) -> Iterator[float]:
    """The pauses after the 1st, 2nd, 3rd ... failure (see :func:`retry_delay`)."""
    for attempt in itertools.count(1):
        yield retry_delay(policy, attempt)


class RetryBudget:
    """A client-wide allowance of retries (after gRPC's retry throttling).

    Every retryable failure costs a token, every success earns
    ``ratio`` back; retries are allowed only while more than half the
    tokens remain. A dead API therefore sees a handful of retries, then one
    request per call, instead of ``max_attempts`` requests per call.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self._max = policy.budget
        self._ratio = policy.budget_ratio
        self._tokens = policy.budget

    def allows_retry(self) -> bool:
        """Whether a retry may be made now."""
        return self._tokens > self._max / 2

    def record_failure(self) -> None:
        """Note a retryable failure."""
        self._tokens = max(0.0, self._tokens - 1)

    def record_success(self) -> None:
        """Note a successful answer."""
        if self._tokens < self._max:  # full most of the time: no work then
            self._tokens = min(self._max, self._tokens + self._ratio)


class PollSchedule:
    """The intervals between status checks of one wait.

    Blind, it starts at ``initial`` and grows by ``factor`` up to
    ``max_interval``, each interval jittered by up to ``jitter`` of itself
    either way (so waits started together spread out, at no extra cost).
    When a running task reports ``progress``, the next check is aimed from
    the estimated finish instead:

    - the rate is measured over the widest span available: from the first
      running sample once progress has moved 5 points since it, else from
      0 % at ``started`` (the submit, or the last time it was seen queued);
    - a reported whole-number percentage is read as the middle of its step;
    - while the estimate is unsure (``1 / points moved`` relative error
      exceeds 3 % of the task's estimated length) the check aims short, at
      ``remaining * (1 - error)``; then at the estimated finish plus 1 %.

    Measured in ``benchmarks/poll_economy.py``: about 3 requests per task and
    a p95 detection delay near 3 % of the task's duration.
    """

    __slots__ = ("_blind", "_first", "_policy", "_rng", "_started")

    def __init__(
        self, policy: PollPolicy, *, started: float | None = None, rng: random.Random | None = None
    ) -> None:
        self._policy = policy
        self._started = started
        self._rng = rng or _RANDOM
        self._blind = policy.initial
        self._first: tuple[float, float] | None = None

    def next(self, task: Task | None, now: float | None = None) -> float:
        """Delay before the check that follows ``task`` (``None``: a failed check)."""
        blind = self._blind * (1 + self._policy.jitter * (2 * self._rng.random() - 1))
        policy = self._policy
        self._blind = min(max(self._blind, _MIN_GROWTH) * policy.factor, policy.max_interval)
        if task is None or not policy.use_progress:
            return blind
        estimate = self._estimate(task, time.monotonic() if now is None else now)
        return blind if estimate is None else estimate

    def _estimate(self, task: Task, now: float) -> float | None:
        if task.status is TaskStatus.NOT_STARTED:
            self._started = now  # it cannot have started running before now
            return None
        if task.status is not TaskStatus.RUNNING or not task.progress or task.progress >= 100:
            return None
        progress = task.progress + 0.5
        if self._first is None:
            self._first = (now, progress)
        start, base = self._first
        if progress - base < 5:
            if self._started is None:
                return None
            start, base = self._started, 0.0
        moved = progress - base
        if moved <= 0 or now <= start:
            return None
        left = (100 - progress) * (now - start) / moved
        error = 1 / max(moved, 0.5)
        length = now - (self._started if self._started is not None else start) + left
        if left * error > 0.03 * length:
            return max(self._policy.initial, left * (1 - error))
        return max(self._policy.initial / 4, left + 0.01 * length)


class RateLimiter:
    """A client-wide cap on requests per second, over a sliding window.

    At most ``limit`` grants in any ``window`` seconds (``rate`` per second,
    windows of at least one second), first come first served: a request
    goes at once while the window has room and nobody queues; otherwise it
    queues and one timer hands out grants as old ones leave the window.
    Queued requests that are cancelled or time out take nothing, and a stall
    never lets more than ``limit`` through in a window. ``slow_down`` holds
    every grant back, which is how one 429 slows the whole client.
    """

    __slots__ = (
        "_limit",
        "_paused",
        "_queue",
        "_share",
        "_shared_at",
        "_timer",
        "_times",
        "_window",
    )

    def __init__(self, rate: float) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise TypeError(f"max_polls_per_second must be a number, got {type(rate).__name__}")
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"max_polls_per_second must be a finite number > 0, got {rate!r}")
        # A window of one second (longer for rates under 1/s), at most _MAX_WINDOW grants.
        self._limit = max(1, min(_MAX_WINDOW, int(rate)))
        self._window = self._limit / rate
        self._times: collections.deque[float] = collections.deque()
        self._paused = 0.0
        self._share = 1.0  # of the rate in force, below 1 after back_off()
        self._shared_at = 0.0
        self._queue: collections.deque[asyncio.Future[None]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    async def acquire(self, timeout: float | None = None) -> None:
        """Wait for a grant, at most ``timeout`` seconds.

        Raises:
            TimeoutError: No grant came within ``timeout``.
        """
        if self.try_acquire():
            return
        if timeout is not None and timeout <= 0:
            raise TimeoutError("no request slot before the deadline")
        loop = asyncio.get_running_loop()
        grant: asyncio.Future[None] = loop.create_future()
        self._queue.append(grant)
        self._arm(loop)
        expiry = None if timeout is None else loop.call_later(timeout, _expire, grant)
        try:
            await grant
        finally:
            if expiry is not None:
                expiry.cancel()

    def try_acquire(self) -> bool:
        """Take a grant if one is free now and nobody queues; never waits."""
        return not self._queue and self._take(time.monotonic())

    def back_off(self) -> None:
        """Halve the rate after a 429 that named no delay; it recovers by 10 % a second."""
        self._share = max(_MIN_SHARE, self._current_share(time.monotonic()) / 2)
        self._shared_at = time.monotonic()

    def _current_share(self, now: float) -> float:
        if self._share >= 1.0:
            return 1.0
        return min(1.0, self._share + (now - self._shared_at) * _RECOVERY)

    def slow_down(self, seconds: float) -> None:
        """Let no request start for ``seconds`` from now."""
        self._paused = max(self._paused, time.monotonic() + seconds)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._queue:
            self._arm(asyncio.get_running_loop())

    def _take(self, now: float) -> bool:
        if not self._room(now):
            return False
        self._times.append(now)
        return True

    def _room(self, now: float) -> bool:
        if now < self._paused:
            return False
        times = self._times
        while times and now - times[0] >= self._window:
            times.popleft()
        limit = self._limit if self._share >= 1.0 else self._effective_limit(now)
        return len(times) < limit

    def _effective_limit(self, now: float) -> int:
        if self._share >= 1.0:
            return self._limit
        self._share = self._current_share(now)
        self._shared_at = now
        return max(1, int(self._limit * self._share))

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            return
        due = self._paused
        times, limit = self._times, self._effective_limit(time.monotonic())
        if len(times) >= limit:
            # Room comes when enough of the oldest grants have left the window.
            due = max(due, times[len(times) - limit] + self._window)
        self._timer = loop.call_later(max(0.0, due - time.monotonic()), self._grant)

    def _grant(self) -> None:
        self._timer = None
        now = time.monotonic()
        queue = self._queue
        while queue:
            if queue[0].done():  # cancelled or expired: takes nothing
                del queue[0]
            elif self._take(now):
                grant = queue.popleft()
                grant.set_result(None)
            else:
                break
        if queue:
            self._arm(asyncio.get_running_loop())


def _expire(grant: asyncio.Future[None]) -> None:
    if not grant.done():
        grant.set_exception(TimeoutError("no request slot before the deadline"))
