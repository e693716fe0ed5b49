"""Timing policy units: the poll schedule, backoff delays and the client-wide retry budget.

These classes are pure logic, so they are driven directly: a seeded ``random.Random``
for the jitter and explicit ``now=`` instants for the progress estimate.
"""

from __future__ import annotations

import itertools
import random
import statistics
import time
from collections.abc import Iterator

import pytest

from vidgo_async import PollPolicy, RetryPolicy, Task, TaskStatus
from vidgo_async._timing.budget import RetryBudget
from vidgo_async._timing.schedules import PollSchedule, retry_pauses


def backoff_delays(policy: RetryPolicy) -> Iterator[float]:
    """The retry pauses after the 1st, 2nd, 3rd ... failure (none with a Retry-After)."""
    waits = retry_pauses(policy)
    while True:
        yield waits.send(None)


def retry_delay(policy: RetryPolicy, attempt: int) -> float:
    """The retry pause after the ``attempt``-th failure (1-based)."""
    return next(itertools.islice(backoff_delays(policy), attempt - 1, None))


# No jitter: every blind interval is exact.
EXACT = PollPolicy(initial=1.0, factor=2.0, max_interval=8.0, jitter=0.0)
# Blind intervals capped at 8 s, estimates free to aim anywhere (the cap applies to both).
ROOMY = PollPolicy(initial=1.0, factor=2.0, max_interval=1000.0, jitter=0.0)
BLIND = PollPolicy(initial=1.0, factor=2.0, max_interval=8.0, jitter=0.0, use_progress=False)


def running(progress: float | None) -> Task:
    """A running task at ``progress`` percent."""
    return Task(task_id="t", status=TaskStatus.RUNNING, progress=progress)


def schedule(policy: PollPolicy = EXACT, started: float | None = None) -> PollSchedule:
    """A schedule with a seeded jitter source."""
    return PollSchedule(policy, started=started, rng=random.Random(1))


# ---------------------------------------------------------------- blind schedule


def test_blind_intervals_grow_by_factor_up_to_the_cap() -> None:
    """Without progress, intervals start at initial and grow by factor to max_interval."""
    sched = schedule()
    assert [sched.next(None) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_zero_initial_interval_still_grows() -> None:
    """A zero initial interval grows from a small floor instead of busy-looping."""
    sched = schedule(PollPolicy(initial=0.0, factor=2.0, max_interval=1.0, jitter=0.0))
    assert [sched.next(None) for _ in range(4)] == pytest.approx([0.01, 0.02, 0.04, 0.08])


def test_jitter_keeps_each_interval_within_its_fraction() -> None:
    """Jittered intervals stay within ``jitter`` of the blind interval, and vary."""
    policy = PollPolicy(initial=4.0, factor=1.0, max_interval=8.0, jitter=0.25)
    sched = schedule(policy)
    delays = [sched.next(None) for _ in range(500)]
    assert all(3.0 <= delay <= 5.0 for delay in delays)
    assert max(delays) - min(delays) > 1.5


def test_jittered_intervals_never_pass_the_cap() -> None:
    """At the cap, jitter only shortens an interval: a pause never exceeds max_interval."""
    policy = PollPolicy(initial=4.0, factor=1.0, max_interval=4.0, jitter=0.25)
    sched = schedule(policy)
    delays = [sched.next(None) for _ in range(500)]
    assert all(3.0 <= delay <= 4.0 for delay in delays)


def test_a_progress_estimate_never_passes_the_cap() -> None:
    """However far the estimated finish, the next check comes within max_interval."""
    sched = schedule(EXACT, started=0.0)
    assert sched.next(running(1.0), now=60.0) == 8.0


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    """Two schedules with equally seeded rngs give the same intervals."""
    policy = PollPolicy(initial=1.0, jitter=0.5)
    first, second = (PollSchedule(policy, rng=random.Random(7)) for _ in range(2))
    assert [first.next(None) for _ in range(10)] == [second.next(None) for _ in range(10)]


def test_default_rng_is_used_without_one() -> None:
    """Without an rng the module's own source jitters within bounds."""
    sched = PollSchedule(PollPolicy(initial=2.0, factor=1.0, max_interval=2.0, jitter=0.5))
    assert all(1.0 <= sched.next(None) <= 3.0 for _ in range(50))


def test_progress_is_ignored_when_use_progress_is_off() -> None:
    """With use_progress off, a progressing task still gets the blind schedule."""
    sched = schedule(BLIND, started=0.0)
    assert sched.next(running(50), now=10.0) == 1.0
    assert sched.next(running(90), now=20.0) == 2.0


@pytest.mark.parametrize(
    "task",
    [
        pytest.param(Task(task_id="t", status=TaskStatus.FINISHED), id="finished"),
        pytest.param(Task(task_id="t", status=TaskStatus.FAILED), id="failed"),
        pytest.param(Task(task_id="t", status=TaskStatus.UNKNOWN, progress=50), id="unknown"),
        pytest.param(running(None), id="no-progress"),
        pytest.param(running(0), id="zero-progress"),
        pytest.param(running(100), id="complete-progress"),
    ],
)
def test_tasks_without_usable_progress_get_the_blind_interval(task: Task) -> None:
    """Terminal, unknown and progress-less answers fall back to the blind interval."""
    assert schedule(started=0.0).next(task, now=10.0) == 1.0


def test_not_started_answer_gets_the_blind_interval() -> None:
    """A queued task gets the blind interval."""
    assert schedule(started=0.0).next(Task(task_id="t", status=TaskStatus.NOT_STARTED), 5.0) == 1.0


# ---------------------------------------------------------------- progress estimate


def test_unsure_estimate_aims_short_of_the_finish() -> None:
    """One early sample (10 % after 10 s) aims at ``remaining * (1 - error)``."""
    moved = 10.5
    left = (100 - moved) * 10 / moved
    expected = left * (1 - 1 / moved)
    assert schedule(ROOMY, started=0.0).next(running(10), now=10.0) == pytest.approx(expected)


def test_sure_estimate_aims_just_past_the_finish() -> None:
    """Once progress moved far from the first sample, the check aims at the finish plus 1 %."""
    sched = schedule(ROOMY, started=0.0)
    sched.next(running(10), now=10.0)
    left = (100 - 60.5) * 40 / 50  # rate measured from the first running sample
    length = 50.0 + left  # measured from the submit
    assert sched.next(running(60), now=50.0) == pytest.approx(left + 0.01 * length)


def test_without_start_one_sample_gives_the_blind_interval() -> None:
    """With no known start, a single running sample cannot give a rate."""
    assert schedule(ROOMY, started=None).next(running(40), now=10.0) == 1.0


def test_without_start_two_distant_samples_give_an_estimate() -> None:
    """With no known start, two samples 5+ points apart give a rate and a length."""
    sched = schedule(ROOMY, started=None)
    assert sched.next(running(10), now=10.0) == 1.0
    left = (100 - 40.5) * 10 / 30
    length = 10.0 + left  # measured from the first sample
    assert sched.next(running(40), now=20.0) == pytest.approx(left + 0.01 * length)


def test_close_samples_measure_from_the_start() -> None:
    """A second sample under 5 points from the first is measured from the start at 0 %."""
    sched = schedule(ROOMY, started=0.0)
    sched.next(running(10), now=10.0)
    moved = 12.5
    left = (100 - moved) * 20 / moved
    assert sched.next(running(12), now=20.0) == pytest.approx(left * (1 - 1 / moved))


def test_queued_answer_moves_the_start() -> None:
    """A not-started answer moves the start to its instant, and later estimates use it."""
    sched = schedule(ROOMY, started=0.0)
    sched.next(Task(task_id="t", status=TaskStatus.NOT_STARTED), now=100.0)
    moved = 10.5
    left = (100 - moved) * 10 / moved
    assert sched.next(running(10), now=110.0) == pytest.approx(left * (1 - 1 / moved))


def test_sample_at_the_start_instant_gets_the_blind_interval() -> None:
    """No time elapsed since the start gives no rate."""
    assert schedule(ROOMY, started=5.0).next(running(10), now=5.0) == 1.0


def test_non_positive_progress_movement_gets_the_blind_interval() -> None:
    """Progress that did not move forward from 0 % gives no rate."""
    assert schedule(ROOMY, started=0.0).next(running(-3), now=10.0) == 1.0


def test_unsure_estimate_is_at_least_the_initial_interval() -> None:
    """Aiming short never goes below ``initial``."""
    assert schedule(ROOMY, started=0.0).next(running(1), now=0.01) == 1.0


def test_sure_estimate_is_at_least_a_quarter_initial() -> None:
    """Aiming at an imminent finish never goes below ``initial / 4``."""
    assert schedule(ROOMY, started=0.0).next(running(99), now=1.0) == 0.25


def test_estimate_uses_the_monotonic_clock_by_default() -> None:
    """Without ``now`` the estimate is measured on ``time.monotonic``."""
    sched = schedule(started=time.monotonic() - 10.0)
    assert 5.0 < sched.next(running(50)) < 15.0


def test_estimate_still_advances_the_blind_schedule() -> None:
    """Estimates do not stop the blind interval from growing for later failed checks."""
    sched = schedule(started=0.0)
    sched.next(running(10), now=10.0)
    sched.next(running(12), now=20.0)
    assert sched.next(None) == 4.0


# ---------------------------------------------------------------- backoff delays


def test_backoff_delays_stay_under_their_exponential_ceiling() -> None:
    """The n-th delay lies in ``[0, min(max_delay, base * 2**n)]``."""
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    ceilings = [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    for _ in range(200):
        delays = list(itertools.islice(backoff_delays(policy), len(ceilings)))
        assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))


def test_backoff_delays_are_endless() -> None:
    """The generator never runs out, however many retries are made."""
    delays = list(itertools.islice(backoff_delays(RetryPolicy(base_delay=0.1)), 1000))
    assert len(delays) == 1000
    assert all(0.0 <= delay <= 8.0 for delay in delays)


def test_backoff_first_delay_is_uniform_over_10000_samples() -> None:
    """Full jitter: 10,000 first delays spread uniformly over ``[0, base]``."""
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    samples = [next(backoff_delays(policy)) for _ in range(10_000)]
    assert all(0.0 <= sample <= 1.0 for sample in samples)
    assert statistics.fmean(samples) == pytest.approx(0.5, abs=0.02)
    quartiles = statistics.quantiles(samples, n=4)
    assert quartiles == pytest.approx([0.25, 0.5, 0.75], abs=0.03)


def test_backoff_capped_delays_are_uniform_over_10000_samples() -> None:
    """Past the cap, 10,000 delays spread uniformly over ``[0, max_delay]``."""
    policy = RetryPolicy(base_delay=1.0, max_delay=2.0)
    delays = backoff_delays(policy)
    samples = list(itertools.islice(delays, 3, 10_003))  # ceilings 2.0 from the 2nd on
    assert all(0.0 <= sample <= 2.0 for sample in samples)
    assert statistics.fmean(samples) == pytest.approx(1.0, abs=0.04)
    assert statistics.pstdev(samples) == pytest.approx(2.0 / 12**0.5, abs=0.04)


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(RetryPolicy(base_delay=0.0), id="zero-base"),
        pytest.param(RetryPolicy(base_delay=1.0, max_delay=0.0), id="zero-cap"),
    ],
)
def test_zero_backoff_policies_give_zero_delays(policy: RetryPolicy) -> None:
    """A zero base or a zero cap means every delay is zero (the tests' fast policy)."""
    assert list(itertools.islice(backoff_delays(policy), 20)) == [0.0] * 20


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (5, 2.0), (1_100, 2.0)],  # past 2**1024
)
def test_retry_delay_of_attempt_n_is_under_its_ceiling(attempt: int, ceiling: float) -> None:
    """The pause after the n-th failure lies in ``[0, min(max_delay, base * 2**(n-1))]``."""
    policy = RetryPolicy(base_delay=0.25, max_delay=2.0)
    delays = [retry_delay(policy, attempt) for _ in range(2000)]
    assert all(0.0 <= delay <= ceiling for delay in delays)
    assert max(delays) > 0.9 * ceiling


def test_retry_delay_is_uniform_over_10000_samples() -> None:
    """Full jitter: 10,000 pauses after the 3rd failure spread uniformly over ``[0, 4 * base]``."""
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    samples = [retry_delay(policy, 3) for _ in range(10_000)]
    assert statistics.fmean(samples) == pytest.approx(1.0, abs=0.04)
    assert statistics.quantiles(samples, n=4) == pytest.approx([0.5, 1.0, 1.5], abs=0.06)


# ---------------------------------------------------------------- retry budget


def budget(tokens: float = 4.0, ratio: float = 0.5) -> RetryBudget:
    """A budget of ``tokens`` earning ``ratio`` per success."""
    return RetryBudget(RetryPolicy(budget=tokens, budget_ratio=ratio))


def test_fresh_budget_allows_retries() -> None:
    """A full budget allows a retry."""
    assert budget().allows_retry()


@pytest.mark.parametrize(("failures", "allowed"), [(0, True), (1, True), (2, False), (9, False)])
def test_budget_allows_retries_while_over_half_remains(failures: int, allowed: bool) -> None:
    """Retries are allowed only while more than half the tokens remain."""
    spent = budget()
    for _ in range(failures):
        spent.record_failure()
    assert spent.allows_retry() is allowed


def test_budget_never_goes_below_zero() -> None:
    """Failures past empty cost nothing more: recovery starts from zero."""
    spent = budget()
    for _ in range(50):
        spent.record_failure()
    for _ in range(4):
        spent.record_success()  # 0 + 4 * 0.5 = 2: exactly half, not more
    assert not spent.allows_retry()
    spent.record_success()
    assert spent.allows_retry()


def test_budget_successes_never_exceed_the_maximum() -> None:
    """Successes on a full budget bank nothing beyond it."""
    full = budget()
    for _ in range(10):
        full.record_success()
    full.record_failure()
    full.record_failure()
    assert not full.allows_retry()


def test_zero_budget_never_allows_retries() -> None:
    """A budget of zero tokens disables retries outright."""
    empty = budget(tokens=0.0)
    empty.record_success()
    assert not empty.allows_retry()
