"""Learned poll schedules: durations learned per model, the planned checks, drift, persistence.

The rules (``_timing.learned`` and ``PollSchedule``) are pure, so they are driven
directly with seeded durations and explicit ``now=`` instants; the last tests go
through the client against the fake server, and through a batch's journal.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import random
import statistics
from pathlib import Path

import attrs
import pytest
from support import MakeClient, MakeFake

from vidgo_async import PollPolicy, Task, TaskStatus, VidgoClient
from vidgo_async._batch.durations import dump_durations, load_durations
from vidgo_async._timing.learned import Durations, Learner, Plan
from vidgo_async._timing.schedules import PollSchedule
from vidgo_async.testing import FakeVidgo

POLICY = PollPolicy()  # 1 s, x1.5, cap 15 s, 10 % jitter
RUNNING = Task(task_id="t", status=TaskStatus.RUNNING)
FINISHED = Task(task_id="t", status=TaskStatus.FINISHED)


def lognormal(count: int, median: float = 30.0, sigma: float = 0.35, seed: int = 1) -> list[float]:
    """``count`` seeded durations, log-normal around ``median``."""
    rng = random.Random(seed)
    return [median * math.exp(rng.gauss(0, sigma)) for _ in range(count)]


def learned_from(spans: list[float], width: float = 0.1) -> Durations:
    """Durations that saw each of ``spans`` finish between two reads ``width`` of it apart."""
    durations = Durations()
    for span in spans:
        durations.observe(span * (1 - width), span)
    return durations


def wait_on(schedule: PollSchedule, span: float) -> tuple[int, float]:
    """Checks a wait makes on a task of ``span`` seconds submitted at 0, and its delay;
    the finishing read is reported as a wait reports it."""
    now = schedule.first(now=0.0)
    checks = 1
    while now < span:
        now += schedule.next(RUNNING, now=now)
        checks += 1
    schedule.next(FINISHED, now=now)
    return checks, now - span


def stream(
    policy: PollPolicy, spans: list[float], learned: Durations | None
) -> list[tuple[int, float]]:
    """One wait per span, one after the other, all learning into ``learned``."""
    rng = random.Random(7)
    return [
        wait_on(PollSchedule(policy, started=0.0, rng=rng, learned=learned), span) for span in spans
    ]


def p95_share(results: list[tuple[int, float]], spans: list[float]) -> float:
    """The 95th percentile of the delays as a share of the tasks' durations."""
    shares = sorted(delay / span for (_, delay), span in zip(results, spans, strict=True))
    return shares[int(0.95 * (len(shares) - 1))]


# ---------------------------------------------------------------- the plan


def test_no_plan_until_enough_observations() -> None:
    """Fewer than 20 finishes give no plan; the 20th gives one."""
    durations = learned_from(lognormal(19))
    assert durations.plan(POLICY) is None
    durations.observe(27.0, 30.0)
    assert durations.plan(POLICY) is not None


@pytest.mark.parametrize(
    ("low", "high"),
    [
        pytest.param(0.0, 0.2, id="finished-by-the-first-check"),
        pytest.param(0.01, 0.04, id="within-tens-of-milliseconds"),
    ],
)
def test_no_plan_for_tasks_too_quick_to_save_checks_on(low: float, high: float) -> None:
    """Tasks that nearly all end by their first check, or within 50 ms, are left to the blind
    schedule: there is nothing a plan could save."""
    durations = Durations()
    for _ in range(100):
        durations.observe(low, high)
    assert durations.plan(POLICY) is None
    schedule = PollSchedule(PollPolicy(initial=0.0), started=0.0, learned=durations)
    assert schedule.first(now=0.0) == 0.0


def test_a_few_quick_tasks_do_not_stop_the_plan() -> None:
    """A model whose tasks mostly take long still plans when some ended at the first check."""
    durations = learned_from(lognormal(90))
    for _ in range(8):
        durations.observe(0.0, 1.0)
    assert durations.plan(POLICY) is not None


def test_the_plan_is_made_again_as_finishes_double() -> None:
    """A plan made from the first 20 finishes is made again from 40, then 80: the first
    finishes of a stream lean short, and must not set the plan for the next 200."""
    spans = lognormal(80, seed=9)
    durations = learned_from(spans[:20])
    durations.plan(POLICY)
    for count in (40, 80):
        for span in spans[count // 2 : count]:
            durations.observe(span * 0.9, span)
        plan, fresh = durations.plan(POLICY), learned_from(spans[:count]).plan(POLICY)
        assert plan is not None and fresh is not None
        assert plan.instants == fresh.instants


def test_waits_under_two_policies_share_what_was_learned_without_replanning() -> None:
    """Each policy's plan is made once per learned distribution, however the waits
    under two policies interleave; a plan depends only on initial, factor and cap."""
    durations = learned_from(lognormal(100))
    other = attrs.evolve(POLICY, max_interval=10.0)
    first, second = durations.plan(POLICY), durations.plan(other)
    assert first is not None and second is not None and first is not second
    assert durations.plan(POLICY) is first
    assert durations.plan(attrs.evolve(POLICY, jitter=0.0)) is first
    assert durations.plan(other) is second


@pytest.mark.timeout(1)
def test_a_blind_schedule_finer_than_any_plan_is_judged_at_once() -> None:
    """A blind schedule checking every 10 ms (initial 0, factor 1) is finer than any
    plan: no plan, decided without listing its hundred thousand checks (1.8 s of a
    blocked event loop before, found by review)."""
    durations = learned_from(lognormal(100, median=600.0, sigma=0.3))
    assert durations.plan(PollPolicy(initial=0.0, factor=1.0, max_interval=15.0)) is None


def test_plans_are_kept_for_a_few_policies_only() -> None:
    """Plans for many policies do not pile up: past a few, the oldest is dropped (and
    made again when asked for)."""
    durations = learned_from(lognormal(100, median=100.0))
    first = durations.plan(POLICY)
    assert first is not None and durations.plan(POLICY) is first
    for cap in range(5, 45):
        durations.plan(attrs.evolve(POLICY, max_interval=float(cap)))
    again = durations.plan(POLICY)
    assert again is not first and again is not None
    assert again.instants == first.instants


def test_a_schedule_without_a_plan_is_blind() -> None:
    """Until a plan exists, a learning schedule gives exactly the blind intervals."""
    cold = PollSchedule(POLICY, started=0.0, rng=random.Random(3), learned=Durations())
    blind = PollSchedule(POLICY, started=0.0, rng=random.Random(3))
    assert cold.first(now=0.0) == blind.first(now=0.0) == POLICY.initial
    now = 0.0
    for _ in range(12):
        now += 1.0
        assert cold.next(RUNNING, now=now) == blind.next(RUNNING, now=now)


def test_finishes_seen_only_by_a_late_first_check_are_judged_as_quick_ones() -> None:
    """A tenth of the finishes were seen only as "ended by the wait's first check at
    15 s" (a plan's: blind polling checks at 1 s, 2.5 s ...): they may be quick tasks a
    plan would see many times their length late, so no plan beats blind on them, and
    blind runs, which sees such tasks finely. Before, that mass counted as spread over
    0-15 s, and a plan was made that never checked before 15 s."""
    learned = Durations()
    for k, span in enumerate(lognormal(60)):
        learned.observe(*((0.0, 15.0) if k % 10 == 0 else (span * 0.9, span)))
    assert learned.plan(POLICY) is None


def test_plan_starts_near_a_low_quantile_and_never_passes_the_cap() -> None:
    """The first check comes near the shortest durations seen; no step exceeds the cap."""
    spans = lognormal(200)
    plan = learned_from(spans).plan(POLICY)
    assert plan is not None
    low, high = sorted(spans)[2], sorted(spans)[30]  # 1 % and 15 %
    assert low * 0.7 <= plan.instants[0] <= high
    steps = [b - a for a, b in zip((0.0, *plan.instants), plan.instants, strict=False)]
    assert all(0 < step <= 15.0 for step in steps)


@pytest.mark.parametrize(("cap", "median"), [(3.0, 10.0), (5.0, 60.0), (15.0, 30.0)])
def test_every_planned_step_keeps_within_the_cap(cap: float, median: float) -> None:
    """Whatever the cap, planned checks are never more than ``max_interval`` apart."""
    learned = learned_from(lognormal(100, median=median))
    plan = learned.plan(attrs.evolve(POLICY, max_interval=cap))
    assert plan is not None
    instants = (0.0, *plan.instants)
    assert all(b - a <= cap * (1 + 1e-9) for a, b in itertools.pairwise(instants))


def test_tasks_long_against_the_cap_are_checked_at_its_multiples() -> None:
    """Tasks of ~60 s: the first checks are the cap's own steps, at 15 s and 30 s, not a
    grid step (1.5 %) before each, which gave up on more of the tasks ending just past."""
    plan = learned_from(lognormal(200, median=60.0)).plan(POLICY)
    assert plan is not None
    assert plan.instants[:2] == pytest.approx((15.0, 30.0))


def test_plan_checks_densely_where_tasks_finish_and_sparsely_between() -> None:
    """Bimodal durations: close checks around 15 s, the cap's steps in the empty gap."""
    rng = random.Random(5)
    spans = [
        (15.0 if rng.random() < 0.7 else 90.0) * math.exp(rng.gauss(0, 0.2)) for _ in range(200)
    ]
    plan = learned_from(spans).plan(POLICY)
    assert plan is not None
    instants = plan.instants
    steps = {b: b - a for a, b in itertools.pairwise(instants)}
    assert all(step < 0.3 * at for at, step in steps.items() if at < 20)
    assert all(step > 12 for at, step in steps.items() if 35 < at < 60)


def test_past_the_plan_pauses_grow_with_the_time_elapsed_up_to_the_cap() -> None:
    """Beyond the longest task seen, each pause is a quarter of the time elapsed, capped."""
    plan = Plan([10.0, 12.0], max_interval=15.0)
    assert plan.next_after(12.0) == pytest.approx(12.0 + 3.0)
    assert plan.next_after(40.0) == pytest.approx(40.0 + 10.0)
    assert plan.next_after(100.0) == pytest.approx(115.0)


def test_an_earlier_shift_never_checks_twice_nor_passes_the_cap() -> None:
    """Moved earlier by up to the full jitter, checks stay increasing and within the cap."""
    plan = learned_from(lognormal(200)).plan(POLICY)
    assert plan is not None
    for shift in (0.0, -0.05, -0.1, -1.0):
        now, seen = 0.0, [0.0]
        while now < 80:
            now = plan.next_after(now, shift)
            seen.append(now)
        steps = [b - a for a, b in itertools.pairwise(seen)]
        assert all(0 < step <= 15.0 * (1 + 1e-9) for step in steps)


# ---------------------------------------------------------------- what it buys


def warm_against_blind(median: float, count: int) -> tuple[float, float]:
    """After 50 tasks of log-normal ``median`` (sigma 0.35) were learned, ``count`` more:
    the learned schedule's checks and p95 of delay / duration, as ratios to blind's."""
    warm_up, spans = lognormal(50, median=median, seed=2), lognormal(count, median=median, seed=3)
    learned = Durations()
    stream(POLICY, warm_up, learned)
    with_plan = stream(POLICY, spans, learned)
    blind = stream(POLICY, spans, None)
    checks = statistics.mean(c for c, _ in with_plan) / statistics.mean(c for c, _ in blind)
    return checks, p95_share(with_plan, spans) / p95_share(blind, spans)


def test_a_learned_schedule_beats_the_blind_one_on_consistent_durations() -> None:
    """Warm, tasks of 30 s (sigma 0.35) take under 0.7x the checks at under 0.6x the tail delay."""
    checks, tail = warm_against_blind(median=30.0, count=200)
    assert checks < 0.7
    assert tail < 0.6


def test_tasks_long_against_the_cap_are_seen_within_half_of_blinds_tail() -> None:
    """Warm, tasks of 60 s (sigma 0.35), which blind polling checks at its 15 s cap, take
    under 0.7x the checks at under 0.5x the tail delay (the plan used to aim every task
    within a fixed ~21 % of its length: 0.58x the checks, but 0.61-0.66x the tail)."""
    checks, tail = warm_against_blind(median=60.0, count=1000)
    assert checks < 0.7
    assert tail < 0.5


def uniform(count: int, low: float, high: float, seed: int) -> list[float]:
    """``count`` seeded durations, uniform over ``low``-``high``."""
    rng = random.Random(seed)
    return [rng.uniform(low, high) for _ in range(count)]


def exponential(count: int, mean: float, seed: int) -> list[float]:
    """``count`` seeded durations, exponential of ``mean``."""
    rng = random.Random(seed)
    return [rng.expovariate(1 / mean) for _ in range(count)]


def short_or_long(count: int, seed: int) -> list[float]:
    """``count`` seeded durations: 90 % around 3 s, 10 % around 300 s."""
    rng = random.Random(seed)
    return [
        (3.0 if rng.random() < 0.9 else 300.0) * math.exp(rng.gauss(0, 0.2)) for _ in range(count)
    ]


@pytest.mark.parametrize(
    ("policy", "spans"),
    [
        pytest.param(POLICY, uniform(250, 0.5, 3.0, seed=1), id="tasks-of-0.5-3s"),
        pytest.param(POLICY, exponential(250, 30.0, seed=2), id="exponential"),
        pytest.param(POLICY, short_or_long(250, seed=3), id="3s-or-300s"),
        pytest.param(attrs.evolve(POLICY, max_interval=0.5), lognormal(250), id="cap-0.5s"),
    ],
)
def test_a_learned_schedule_is_never_worse_than_the_blind_one(
    policy: PollPolicy, spans: list[float]
) -> None:
    """Where a plan would cost more checks than blind (for a smaller tail), or a larger
    tail, there is none: after 50 tasks, no more checks and no larger p95 than blind."""
    learned = Durations()
    stream(policy, spans[:50], learned)
    with_plan, blind = stream(policy, spans[50:], learned), stream(policy, spans[50:], None)
    checks = statistics.mean(c for c, _ in with_plan) / statistics.mean(c for c, _ in blind)
    assert checks <= 1.0
    assert p95_share(with_plan, spans[50:]) <= p95_share(blind, spans[50:])


def test_exponential_durations_are_seen_about_as_soon_as_blind_sees_them() -> None:
    """Exponential durations of mean 100 s, 5 runs of 350 tasks: no more checks than blind
    and, on average, a p95 within 5 % of blind's (it was 1.19x: a plan no worse than blind
    on the learned distribution was worse on the true one; now it must win by a margin)."""
    checks, tails = [], []
    for seed in range(1, 6):
        spans = exponential(400, 100.0, seed=seed)
        learned = Durations()
        stream(POLICY, spans[:50], learned)
        with_plan, blind = stream(POLICY, spans[50:], learned), stream(POLICY, spans[50:], None)
        checks.append(sum(c for c, _ in with_plan) / sum(c for c, _ in blind))
        tails.append(p95_share(with_plan, spans[50:]) / p95_share(blind, spans[50:]))
    assert max(checks) <= 1.0
    assert statistics.mean(tails) <= 1.05


@pytest.mark.parametrize("length", [30.0, 45.0, 100.0])
def test_tasks_of_one_length_are_seen_no_later_than_blind_sees_them(length: float) -> None:
    """Where blind's checks happen to fall just after tasks that all take as long,
    the plan still sees them no later (p95), with fewer checks."""
    spans = [length] * 250
    learned = Durations()
    stream(POLICY, spans[:50], learned)
    with_plan, blind = stream(POLICY, spans[50:], learned), stream(POLICY, spans[50:], None)
    assert statistics.mean(c for c, _ in with_plan) < statistics.mean(c for c, _ in blind)
    assert p95_share(with_plan, spans[50:]) <= p95_share(blind, spans[50:])


def test_progress_estimate_leads_over_the_plan() -> None:
    """With a plan at hand, a task that reports progress is still checked at its estimate."""
    learned = learned_from(lognormal(100))
    roomy = PollPolicy(max_interval=1000.0)
    with_plan = PollSchedule(roomy, started=0.0, rng=random.Random(1), learned=learned)
    without = PollSchedule(roomy, started=0.0, rng=random.Random(1))
    task = Task(task_id="t", status=TaskStatus.RUNNING, progress=40)
    assert with_plan.next(task, now=20.0) == without.next(task, now=20.0)


def test_a_model_whose_tasks_report_progress_keeps_the_blind_first_checks() -> None:
    """The progress estimate is made from a running task's early answers: once a model's
    tasks report progress, no plan puts its first check later than blind's."""
    learned = Durations()
    for span in lognormal(60):
        schedule = PollSchedule(POLICY, started=0.0, learned=learned)
        now = schedule.first(now=0.0)
        while now < span:
            task = Task(task_id="t", status=TaskStatus.RUNNING, progress=int(100 * now / span))
            now += schedule.next(task, now=now)
        schedule.next(FINISHED, now=now)
    assert learned.plan(POLICY) is not None  # still made, for waits that ignore progress
    assert PollSchedule(POLICY, started=0.0, learned=learned).first(now=0.0) == POLICY.initial
    no_progress = attrs.evolve(POLICY, use_progress=False)
    assert PollSchedule(no_progress, started=0.0, learned=learned).first(now=0.0) > 1.0


def test_learn_off_keeps_the_blind_schedule_and_learns_nothing() -> None:
    """``PollPolicy(learn=False)`` neither plans from what was learned nor adds to it."""
    learned = learned_from(lognormal(100))
    off = PollPolicy(learn=False)
    assert wait_on(PollSchedule(off, started=0.0, learned=learned), 30.0)[0] > 6
    assert len(learned) == 100


# ---------------------------------------------------------------- what a wait reports


def test_a_wait_reports_its_censored_duration_once() -> None:
    """The finish lies between the last unfinished read and the first finished one."""
    learned = Durations()
    schedule = PollSchedule(POLICY, started=100.0, learned=learned)
    schedule.next(RUNNING, now=104.0)
    schedule.next(Task(task_id="t", status=TaskStatus.NOT_STARTED), now=106.0)
    schedule.next(RUNNING, now=110.0)
    schedule.next(FINISHED, now=125.0)
    schedule.next(FINISHED, now=126.0)  # a re-read for a lagging WAV URL
    assert learned.observations() == [(10.0, 25.0)]


@pytest.mark.parametrize(
    ("started", "task"),
    [
        pytest.param(0.0, Task(task_id="t", status=TaskStatus.FAILED), id="failed"),
        pytest.param(None, FINISHED, id="not-submitted-here"),
    ],
)
def test_failures_and_foreign_tasks_teach_nothing(started: float | None, task: Task) -> None:
    """A failed task, or one this client did not submit, adds no duration."""
    learned = Durations()
    PollSchedule(POLICY, started=started, learned=learned).next(task, now=30.0)
    assert len(learned) == 0


@pytest.mark.parametrize(
    ("low", "high"),
    [(-1.0, 5.0), (5.0, 5.0), (6.0, 5.0), (0.0, math.inf), (math.nan, 5.0), (0.0, math.nan)],
)
def test_impossible_observations_are_ignored(low: float, high: float) -> None:
    """Negative, empty, reversed, infinite or NaN intervals are not learned."""
    durations = Durations()
    durations.observe(low, high)
    assert len(durations) == 0


@pytest.mark.parametrize("tiny", [1e-312, 5e-324])
def test_a_sub_normal_duration_from_a_journal_is_not_learned(tiny: float) -> None:
    """A summary edited (or written by something else) with a duration of a sub-normal
    float: it is not learned, and the plan is made from the rest (it raised OverflowError
    or ZeroDivisionError at every wait's first check)."""
    summary = json.dumps({"version": 1, "seen": [[27.0, 30.0]] * 30 + [[0.0, tiny]]})
    durations = Durations()
    durations.restore(load_durations(summary))
    durations.observe(0.0, tiny)
    assert len(durations) == 30
    assert durations.plan(POLICY) is not None
    assert PollSchedule(POLICY, started=0.0, learned=durations).first(now=0.0) > 0


def test_memory_is_bounded_per_model() -> None:
    """However many tasks finish, a model keeps a fixed number of the latest."""
    spans = lognormal(5000)
    durations = learned_from(spans)
    assert len(durations) == 200
    assert durations.observations()[-1] == pytest.approx((spans[-1] * 0.9, spans[-1]))


# ---------------------------------------------------------------- drift


def test_doubled_durations_are_noticed_and_learned_again() -> None:
    """When tasks start taking twice as long, the old plan is dropped and a later one fits."""
    durations = learned_from(lognormal(200, seed=4))
    before = durations.plan(POLICY)
    assert before is not None
    noticed = None
    for count, span in enumerate(lognormal(40, median=60.0, seed=5), start=1):
        durations.observe(span * 0.9, span)
        if len(durations) < 20:  # all but the latest few dropped
            noticed = count
            break
    assert noticed is not None and noticed <= 15
    for span in lognormal(30, median=60.0, seed=6):
        durations.observe(span * 0.9, span)
    after = durations.plan(POLICY)
    assert after is not None
    assert sum(at < 40 for at in after.instants) < sum(at < 40 for at in before.instants)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_new_mode_of_quick_tasks_is_noticed(seed: int) -> None:
    """When a fifth of the tasks start ending in a second, seen only at the plan's first
    check, what was learned is dropped within 150 finishes (the mean rank of the recent
    finishes hardly moves: it was never noticed)."""
    durations = learned_from(lognormal(200, sigma=0.1, seed=seed))
    first = durations.plan(POLICY)
    assert first is not None
    rng = random.Random(seed)
    for _ in range(150):
        if rng.random() < 0.2:
            durations.observe(0.0, first.instants[0])
        else:
            span = 30.0 * math.exp(rng.gauss(0, 0.1))
            durations.observe(span * 0.9, span)
        if len(durations) < 40:
            return
    pytest.fail("not noticed after 150 finishes")


def test_a_tenfold_drop_is_noticed_within_a_few_finishes() -> None:
    """Tasks ten times shorter than everything learned: dropped after 6 finishes."""
    durations = learned_from(lognormal(200, median=50.0, sigma=0.2, seed=4))
    assert durations.plan(POLICY) is not None
    sizes = []
    for span in lognormal(6, median=5.0, sigma=0.2, seed=5):
        durations.observe(span * 0.9, span)
        sizes.append(len(durations))
    assert sizes == [200, 200, 200, 200, 200, 6]  # the new ones only (the test began with them)


def test_steady_durations_raise_no_drift() -> None:
    """A thousand finishes from one distribution, in any order, never reset what was learned."""
    durations, sizes = Durations(), []
    for span in lognormal(1000, seed=8):
        durations.observe(span * 0.85, span)
        durations.plan(POLICY)  # replanned as a client would, every few finishes
        sizes.append(len(durations))
    assert sizes == sorted(sizes)  # a drift would have dropped all but the latest few
    assert sizes[-1] == 200


# ---------------------------------------------------------------- learner and summaries


def test_the_learner_keeps_models_apart_and_bounded() -> None:
    """Durations are per model; only so many models are remembered."""
    learner = Learner()
    learner.durations("a").observe(1.0, 2.0)
    assert len(learner.durations("b")) == 0
    assert learner.models() == ["a"]
    for i in range(100):
        learner.durations(f"m{i}").observe(1.0, 2.0)
    assert len(learner.models()) == 32


def test_restored_observations_count_as_older() -> None:
    """What an earlier run learned comes before anything seen since; bad rows are skipped."""
    durations = Durations()
    durations.observe(3.0, 4.0)
    durations.restore([(1.0, 2.0), (5.0, 1.0), (2.0, 3.0)])
    assert durations.observations() == [(1.0, 2.0), (2.0, 3.0), (3.0, 4.0)]


def test_summaries_round_trip_through_json() -> None:
    """A saved summary reads back as the same intervals (to the millisecond)."""
    seen = [(1.0, 2.5), (10.1234, 12.0)]
    assert load_durations(dump_durations(seen)) == [(1.0, 2.5), (10.123, 12.0)]


@pytest.mark.parametrize(
    "text",
    ["", "not json", "[]", '{"version": 2, "seen": []}', '{"version": 1, "seen": {}}'],
)
def test_an_unreadable_summary_gives_nothing(text: str) -> None:
    """A summary that is not ours means starting cold, never an error."""
    assert load_durations(text) == []


def test_a_summary_keeps_only_number_pairs() -> None:
    """Malformed pairs in a summary are dropped, the others kept."""
    text = '{"version": 1, "seen": [[1, 2], [1], ["a", 2], [true, 3], [2.5, 4]]}'
    assert load_durations(text) == [(1.0, 2.0), (2.5, 4.0)]


def test_learn_must_be_a_bool() -> None:
    """``PollPolicy(learn=...)`` is checked like every other option."""
    with pytest.raises(TypeError):
        PollPolicy(learn="yes")  # type: ignore[arg-type]


# ---------------------------------------------------------------- through the client

FAST_LEARNING = PollPolicy(initial=0.01, factor=1.5, max_interval=0.3)


def polls_per_task(fake: FakeVidgo) -> float:
    """Status requests per task since the log was last reset."""
    reads = fake.requests_to("detail")
    return len(reads) / len({read.query["task_id"] for read in reads})


async def convert(client: VidgoClient, prefix: str, count: int) -> None:
    """``count`` conversions at once."""
    await asyncio.gather(
        *(client.convert_to_wav("m", f"{prefix}{i}", timeout=10) for i in range(count))
    )


@pytest.mark.asyncio
async def test_waits_after_many_finished_tasks_use_fewer_requests(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """After 25 conversions of 0.3 s, the next ones take far fewer status requests than blind."""
    fake = await make_fake(queue_time=0.0, run_time=0.3, report_progress=False)
    learning = make_client(fake, poll=FAST_LEARNING)
    blind = make_client(fake, poll=attrs.evolve(FAST_LEARNING, learn=False))
    await convert(learning, "warm", 25)
    fake.reset_log()
    await convert(learning, "learned", 10)
    learned = polls_per_task(fake)
    fake.reset_log()
    await convert(blind, "blind", 10)
    assert learned < 0.7 * polls_per_task(fake)


@pytest.mark.asyncio
async def test_a_batch_rerun_starts_from_what_its_journal_learned(
    make_fake: MakeFake, make_client: MakeClient, tmp_path: Path
) -> None:
    """A fresh client re-running a batch with its journal polls warm from the first task."""
    fake = await make_fake(queue_time=0.0, run_time=0.3, report_progress=False)
    journal = tmp_path / "wav.sqlite"

    async def batch(client: VidgoClient, prefix: str, count: int, journal: Path) -> float:
        fake.reset_log()
        pairs = [("m", f"{prefix}{i}") for i in range(count)]
        results = [r async for r in client.convert_many(pairs, journal=journal)]
        assert all(result.ok for result in results)
        return polls_per_task(fake)

    await batch(make_client(fake, poll=FAST_LEARNING), "a", 25, journal)
    warm = await batch(make_client(fake, poll=FAST_LEARNING), "b", 10, journal)
    cold = await batch(make_client(fake, poll=FAST_LEARNING), "c", 10, tmp_path / "new.sqlite")
    assert warm < 0.7 * cold
