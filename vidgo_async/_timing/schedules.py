"""How long to pause: the retry delays and the poll intervals, shaped by the policies.

backoff's ``expo`` generator is the sequence of both. Retries take backoff's
``full_jitter`` (spread load after an outage); polls take a proportional
jitter instead, since a poll drawn near zero would be wasted. The rest of a
wait's timing (its deadline, the progress estimate) stays ours because
backoff has no notion of either.
"""

from __future__ import annotations

import random
import time
from collections.abc import Generator

import backoff

from .._config import PollPolicy, RetryPolicy
from .._models import Task, TaskStatus
from .classify import stretch
from .learned import Durations
from .planning import blind_steps

__all__ = ["PollSchedule", "retry_pauses", "retry_waits"]

_RANDOM = random.Random()


def retry_waits(policy: RetryPolicy) -> Generator[float, BaseException | None, None]:
    """The pauses of a retry loop, as a backoff wait generator.

    Each failure sent in gives the pause after it: ``full_jitter`` of
    ``expo`` (``base_delay * 2**n``, capped at ``max_delay``), stretched to
    the failure's ``Retry-After`` (capped at ``max_retry_after``). Pass it to
    ``backoff.on_exception`` as ``wait_gen``, or use :func:`retry_pauses` for a loop
    of our own.
    """
    delays = backoff.expo(base=2, factor=policy.base_delay, max_value=policy.max_delay)
    next(delays)  # past expo's priming yield
    failure = yield  # type: ignore[misc]  # backoff primes its wait generators with send(None)
    while True:
        delay = backoff.full_jitter(next(delays))
        if failure is not None:
            delay = stretch(delay, failure, policy.max_retry_after)
        failure = yield delay


def retry_pauses(policy: RetryPolicy) -> Generator[float, BaseException | None, None]:
    """:func:`retry_waits`, primed as backoff primes it: ``send(failure)`` gives each pause."""
    waits = retry_waits(policy)
    waits.send(None)
    return waits


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
      ``remaining * (1 - error)``; then at the estimated finish plus 1 %;
    - a check past the finish estimated when the progress last reached a new
      whole point that finds it no further on (a task sitting at 99 %, or
      flickering below its high mark) ends the estimate until it gets there:
      the checks follow the blind schedule meanwhile.

    Measured in ``benchmarks/poll_economy.py``: about 3 requests per task and
    a p95 detection delay near 3 % of the task's duration.

    Without a progress estimate, a wait on a task submitted at ``started``
    checks at the instants ``learned`` plans (``_timing.learned``) once it
    knows enough, and the plan is no worse than blind, each made earlier by
    up to ``jitter`` of the step before it (one draw per wait, so that waits
    submitted together spread out); and it reports to ``learned`` when its
    task was first seen finished.
    """

    __slots__ = (
        "_aimed",
        "_blind",
        "_first",
        "_learned",
        "_policy",
        "_progressed",
        "_read",
        "_rng",
        "_shift",
        "_started",
        "_submitted",
    )

    def __init__(
        self,
        policy: PollPolicy,
        *,
        started: float | None = None,
        rng: random.Random | None = None,
        learned: Durations | None = None,
    ) -> None:
        self._policy = policy
        self._started = started
        self._rng = rng or _RANDOM
        # Durations count from the submit: a wait that did not submit neither learns nor plans.
        self._learned = learned if policy.learn and started is not None else None
        self._submitted = started  # unlike _started, never moved by a queued answer
        self._read = started  # the last read that saw the task unfinished
        self._progressed = False  # whether the task reported progress while running
        # Only earlier: a step moved so is between two planned steps, so never over the cap.
        self._shift = -policy.jitter * self._rng.random()
        # Made at the first check: waits queued for their first poll slot hold none.
        self._blind: Generator[float, None, None] | None = None
        self._first: tuple[float, float] | None = None
        # The highest progress seen (by whole points), and the finish estimated then.
        self._aimed: tuple[float, float] | None = None

    def first(self, now: float | None = None) -> float:
        """Delay before the first check: the plan's first instant, else ``initial``."""
        planned = self._planned(time.monotonic() if now is None else now)
        return min(self._policy.initial if planned is None else planned, self._policy.max_interval)

    def next(self, task: Task | None, now: float | None = None) -> float:
        """Delay before the check that follows ``task`` (``None``: a failed check);
        never over ``max_interval``. The first finished ``task`` is reported to ``learned``."""
        policy = self._policy
        if self._blind is None:
            self._blind = blind_steps(policy)
        blind = next(self._blind) * (1 + policy.jitter * (2 * self._rng.random() - 1))
        if task is None:
            return min(blind, policy.max_interval)
        now = time.monotonic() if now is None else now
        self._learn(task, now)
        estimate = self._estimate(task, now) if policy.use_progress else None
        if estimate is None:
            estimate = self._planned(now)
        return min(blind if estimate is None else estimate, policy.max_interval)

    def _learn(self, task: Task, now: float) -> None:
        if self._learned is None or self._read is None or self._submitted is None:
            return
        if task.status is TaskStatus.FINISHED:
            low, high = self._read - self._submitted, now - self._submitted
            self._learned.observe(low, high, progress=self._progressed)
            self._read = None  # reported once, even if the wait reads it again
        elif not task.is_terminal:
            self._read = now
            self._progressed |= task.status is TaskStatus.RUNNING and task.progress is not None

    def _planned(self, now: float) -> float | None:
        """The pause to the next instant of the learned plan; None without one."""
        if self._learned is None or self._submitted is None:
            return None
        # The progress estimate is made from a running task's early answers: where tasks
        # report progress, a plan's later first checks would see short ones late.
        if self._policy.use_progress and self._learned.reports_progress:
            return None
        plan = self._learned.plan(self._policy)
        if plan is None:
            return None
        elapsed = now - self._submitted
        return plan.next_after(elapsed, self._shift) - elapsed

    def _estimate(self, task: Task, now: float) -> float | None:
        if task.status is TaskStatus.NOT_STARTED:
            self._started = now  # it cannot have started running before now
            return None
        if task.status is not TaskStatus.RUNNING or not task.progress or task.progress >= 100:
            return None
        progress = task.progress + 0.5
        aimed = self._aimed
        moved_on = aimed is None or progress >= aimed[0] + 1
        if aimed is not None and not moved_on and now >= aimed[1]:
            return None  # past the finish it pointed at, no further on: the estimate failed
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
        if moved_on:
            self._aimed = (progress, now + left)
        if left * error > 0.03 * length:
            return max(self._policy.initial, left * (1 - error))
        return max(self._policy.initial / 4, left + 0.01 * length)
