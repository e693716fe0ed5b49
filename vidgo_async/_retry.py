"""All timing: retry delays, the retry budget, poll intervals and the poll rate cap.

Delays come from ``backoff``'s wait generators and jitter functions, shaped
by the policy objects; tests pass zero-wait policies rather than switching
anything off globally.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import backoff

from ._config import PollPolicy, RetryPolicy
from ._models import Task, TaskStatus

__all__ = [
    "PollSchedule",
    "RateLimiter",
    "RetryBudget",
    "backoff_delays",
    "parse_retry_after",
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


def backoff_delays(policy: RetryPolicy) -> Iterator[float]:
    """Endless full-jitter exponential delays: ``U(0, min(max, base * 2**n))``."""
    wait = backoff.expo(base=2, factor=policy.base_delay, max_value=policy.max_delay)
    next(wait)  # backoff's generators start with a priming yield
    for ceiling in wait:
        yield backoff.full_jitter(ceiling)


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
        self._tokens = min(self._max, self._tokens + self._ratio)


class PollSchedule:
    """The intervals between status checks of one wait.

    Starts at ``initial`` and grows by ``factor`` up to ``max_interval``,
    each interval jittered downwards by up to ``jitter`` of itself. When the
    task reports ``progress``, the next check is aimed at the estimated
    finish instead (never sooner than ``initial``, never later than the
    blind interval would be, times four).
    """

    def __init__(self, policy: PollPolicy, *, rng: random.Random | None = None) -> None:
        self._policy = policy
        self._rng = rng or random
        self._blind = backoff.expo(
            base=policy.factor, factor=policy.initial, max_value=policy.max_interval
        )
        next(self._blind)
        self._samples: list[tuple[float, float]] = []

    def first(self) -> float:
        """Delay before the first check after a submit."""
        return self._jittered(self._policy.initial)

    def next(self, task: Task | None, now: float | None = None) -> float:
        """Delay before the check that follows ``task`` (``None``: a failed check)."""
        blind = next(self._blind)
        estimate = self._estimate(task, time.monotonic() if now is None else now)
        if estimate is None:
            return self._jittered(blind)
        return min(max(estimate, self._policy.initial), 4 * self._policy.max_interval)

    def _estimate(self, task: Task | None, now: float) -> float | None:
        if not self._policy.use_progress or task is None or task.progress is None:
            return None
        if task.status is not TaskStatus.RUNNING or task.progress <= 0:
            return None
        self._samples.append((now, task.progress))
        del self._samples[:-2]
        if len(self._samples) < 2:
            return None
        (t0, p0), (t1, p1) = self._samples
        if p1 <= p0 or t1 <= t0:
            return None
        rate = (p1 - p0) / (t1 - t0)
        return (100.0 - p1) / rate

    def _jittered(self, interval: float) -> float:
        return interval * (1 - self._policy.jitter * self._rng.random())


class RateLimiter:
    """A shared cap on requests per second (GCRA: a token bucket by arrival times).

    ``acquire`` reserves the next free slot and sleeps until it; a burst of
    up to one second's worth is allowed. ``slow_down`` pushes every later
    slot back, which is how one 429 slows the whole client.
    """

    def __init__(self, rate: float) -> None:
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"max_polls_per_second must be a finite number > 0, got {rate!r}")
        self._interval = 1.0 / rate
        self._tolerance = self._interval * (max(1.0, rate) - 1)
        self._tat = 0.0

    def reserve(self) -> float:
        """Take the next slot; the seconds to wait until it starts."""
        now = time.monotonic()
        tat = max(self._tat, now)
        self._tat = tat + self._interval
        return max(0.0, tat - self._tolerance - now)

    async def acquire(self) -> None:
        """Wait for the next slot."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)

    def slow_down(self, seconds: float) -> None:
        """Let no request start for ``seconds`` (beyond what is already reserved)."""
        self._tat = max(self._tat, time.monotonic() + self._tolerance + seconds)
