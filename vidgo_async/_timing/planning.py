"""Where to check on a task, given the distribution of its model's durations.

The plan is the cheapest path through a grid of candidate instants (a
dynamic program in which no step exceeds ``max_interval``), where a check
costs 1 and a task seen late costs more checks the later it is seen, as a
share of its duration (``_LATES``, ``_DELAY_WEIGHT``). Users judge polling by
the tail of the delays, so the first share aims under half of the tail blind
polling would give (the first of ``_AIMS`` times its 95th percentile of delay /
duration, on the learned distribution; the next ones where that would not
beat blind by the margin below); the later shares bound how late the few tasks the
plan gives up on are seen. Each observed interval counts as spread evenly
over itself, widened by ``_SMEAR`` either way, so that few or coarse
observations give a smooth distribution rather than spikes. Past the plan's
last instant (longer than any task seen), each pause is ``_TAIL_SHARE`` of the
time elapsed.

Those shares shrink for a narrow distribution (``_NARROW``): blind polling sees
tasks of nearly one length wherever its fixed checks happen to fall after
them, which can be within a few percent of their length, and the learned
distribution of such tasks is no narrower than the checks that observed them
(plus the smear), so nothing learned tells such luck apart. Checks within a
narrow distribution are cheap (few tasks are still running past them), so the
plan aims tighter there, and each plan's closer checks narrow what the next
one learns from.

The grid's instants are 1.5 % apart: checks aimed some 13 % apart must not be
rounded down to the grid's steps (at 3 % apart, a plan took ~0.03x of blind's
checks more for the same tail).

A plan is kept only if, on the learned distribution, it beats the blind
schedule (jitter aside) by a margin (``_WIN_CHECKS``, ``_WIN_P95``) on both
figures a user judges polling by: the expected checks per task, and the 95th
percentile of the delay as a share of the duration. Otherwise there is no plan
and the blind schedule runs: for tasks short against the blind schedule's first
steps, or spread over orders of magnitude, the costs above would buy a smaller
tail with more checks than blind, and where blind is already close (a small cap),
what learning gets wrong would decide.

That check judges on what was learned with its coarse intervals taken at their
worst (``_judged``): a task seen only as "ended by the plan's first check" may be
one of a minority of quick tasks that blind polling sees at once and the plan
several times their length late, and a plan that never checks earlier never
learns otherwise. Such mass counts where finer reads saw tasks end, or else at
the interval's start (blind's first check, for a wait's first check): the plan
is refused, blind runs and sees those tasks finely, and the next plan knows them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Generator, Sequence

import backoff

from .._config import PollPolicy

__all__ = ["Plan", "Spread", "beats_blind", "blind_steps", "make_plan"]

_SMEAR = 0.1  # each observed interval is widened by this share either way
# The costs of a plan, in checks (tuned in benchmarks/poll_economy.py's scenarios and
# poll_unseen.py's simulation): a task seen later than each share of its duration after it
# finished costs that many checks more (the first share: one of _AIMS times blind's p95,
# see the module docstring), and every task-duration of delay costs _DELAY_WEIGHT.
_AIMS = (0.45, 0.7, 1.0)
_LATES = ((0.29, 16.0), (0.5, 36.0))
_AIMED_WEIGHT = 16.0
_DELAY_WEIGHT = 3.0
# A spread (10th to 90th percentile, over the median) narrower than _NARROW scales the
# shares of _LATES by its width over _NARROW, down to _NARROWEST (both chosen in the
# simulation of benchmarks/poll_unseen.py; wider spreads, as in poll_economy, are unchanged).
_NARROW = 0.8
_NARROWEST = 0.25
_GRID_RATIO = 1.015  # candidate instants: at least 1.5 % apart (in time elapsed)
_GRID_POINTS = 300  # ... and about this many over the observed range
_GRID_MAX = 800  # more (a cap tiny against the durations): no plan
_EARLY = 0.05  # the cap's multiples are candidate instants while fewer tasks ended by them
_REACH = 150  # candidate instants one step may skip
_TAIL_SHARE = 0.25  # past the plan: pause this share of the time elapsed
# What was learned is an estimate: a plan must beat blind on it by these shares of its
# expected checks and of its p95 (or blind runs), or learning's errors make it worse on
# the true durations (exponential ones: p95 1.19x blind's at 1, 1.12x at 0.9, 1.03x at
# 0.85; at 0.8, too few plans for 5-120 s tasks: p95 no better than blind's).
_WIN_CHECKS = 0.95
_WIN_P95 = 0.85
_P95 = 0.95  # the percentile of delay / duration a plan must not make worse than blind
_MIN_GROWTH = 0.01  # seconds: where a zero initial poll interval starts growing from


class Plan:
    """The instants, in seconds after the submit, at which one model's waits check.

    Attributes:
        instants: Increasing; no two more than ``max_interval`` apart, the
            first within ``max_interval`` of the submit.
        max_interval: The cap it was made for.
    """

    __slots__ = ("instants", "max_interval")

    def __init__(self, instants: Sequence[float], max_interval: float) -> None:
        self.instants = tuple(instants)
        self.max_interval = max_interval

    def next_after(self, elapsed: float, shift: float = 0.0) -> float:
        """The first planned instant after ``elapsed``, each moved by ``shift`` (within
        [-1, 0]) times the step before it; past the plan, a pause of ``_TAIL_SHARE``
        of ``elapsed`` (at least the plan's last step, at most the cap)."""
        instants = self.instants
        # A read a hair before an instant counts as made at it: never two checks at once.
        index = bisect.bisect_right(instants, elapsed * 1.001)
        for k in range(index, len(instants)):
            moved = instants[k] + shift * (instants[k] - (instants[k - 1] if k else 0.0))
            if moved > elapsed * 1.001:
                return moved
        last_step = instants[-1] - instants[-2] if len(instants) > 1 else instants[-1]
        return elapsed + min(self.max_interval, max(last_step, _TAIL_SHARE * elapsed))


def blind_steps(policy: PollPolicy) -> Generator[float, None, None]:
    """The blind schedule's pauses after the first check, jitter aside: from ``initial``
    (a zero one still grows: never a busy loop), times ``factor``, up to ``max_interval``."""
    start = max(policy.initial, _MIN_GROWTH)
    steps = backoff.expo(base=policy.factor, factor=start, max_value=policy.max_interval)
    next(steps)  # past expo's priming yield
    return steps


class Spread:
    """Observed intervals as one distribution: each spread evenly over itself, widened."""

    __slots__ = ("_at", "_slope", "_value", "high", "shortest", "size")

    def __init__(
        self, seen: Sequence[tuple[float, float]], weights: Sequence[float] | None = None
    ) -> None:
        events: list[tuple[float, float]] = []
        total = len(seen) if weights is None else sum(weights)
        for k, (low, high) in enumerate(seen):
            start, end = low / (1 + _SMEAR), high * (1 + _SMEAR)
            density = (1 if weights is None else weights[k]) / ((end - start) * total)
            events += [(start, density), (end, -density)]
        events.sort()
        # F is piecewise linear: its value and slope from each event on, for bisection.
        self._at: list[float] = []
        self._value: list[float] = []
        self._slope: list[float] = []
        value = slope = 0.0
        for at, change in events:
            if self._at:
                value += slope * (at - self._at[-1])
            slope += change
            self._at.append(at)
            self._value.append(value)
            self._slope.append(slope)
        self.high = events[-1][0]  # F = 1 from here
        self.shortest = min(high for _, high in seen) * (1 + _SMEAR)
        self.size = len(seen)  # observations it was made from

    def cdf(self, points: Sequence[float]) -> list[float]:
        """F at each of ``points``."""
        values = []
        for point in points:
            k = bisect.bisect_right(self._at, point) - 1
            if k < 0:
                values.append(0.0)
            else:
                values.append(min(1.0, self._value[k] + self._slope[k] * (point - self._at[k])))
        return values


def _geometric(low: float, high: float) -> list[float]:
    """Candidate instants from ``low`` to ``high``, a constant ratio apart."""
    ratio = max(_GRID_RATIO, (high / low) ** (1 / _GRID_POINTS))
    points = [low]
    while points[-1] < high:
        points.append(points[-1] * ratio)
    return points


def _grid(spread: Spread, max_interval: float) -> list[float] | None:
    """0, then the candidate instants, never more than half the cap apart; None if too many."""
    grid = [0.0]
    half = max_interval / 2
    low = spread.shortest / 4
    for point in sorted({*_geometric(low, spread.high), *_cap_steps(spread, max_interval, low)}):
        gap = point - grid[-1]
        if gap > half:
            steps = math.ceil(gap / half)
            if len(grid) + steps > _GRID_MAX:
                return None
            grid += [grid[-1] + gap * i / steps for i in range(1, steps)]
        grid.append(point)
        if len(grid) > _GRID_MAX:
            return None
    return grid


def _cap_steps(spread: Spread, max_interval: float, low: float) -> list[float]:
    """The cap's multiples past ``low`` by which fewer than :data:`_EARLY` of the tasks
    ended: a plan's checks there are a cap apart, and the geometric grid's nearest
    instants (up to 1.5 % earlier) would give up on the tasks that end just past each."""
    count = min(int(spread.high / max_interval), _GRID_MAX)  # more: no plan (see _grid)
    steps = [max_interval * k for k in range(1, count + 1)]
    ended = spread.cdf(steps)
    return [step for step, f in zip(steps, ended, strict=True) if low < step and f < _EARLY]


def _width(grid: Sequence[float], cdf: Sequence[float]) -> float:
    """The 10th to the 90th percentile over the median, on the grid (F increasing)."""
    low, middle, high = (
        grid[min(bisect.bisect_left(cdf, q), len(grid) - 1)] for q in (0.1, 0.5, 0.9)
    )
    return (high - low) / middle


def _cheapest(spread: Spread, max_interval: float, aim: float) -> Plan | None:
    """The cheapest instants to check at, most tasks seen within ``aim`` of their
    duration (see the module docstring); None if the cap is too small against the
    durations for a plan to be worth it."""
    grid = _grid(spread, max_interval)
    if grid is None:
        return None
    cdf = spread.cdf(grid)
    narrow = max(_NARROWEST, min(1.0, _width(grid, cdf) / _NARROW))
    shares = [(aim, _AIMED_WEIGHT), *_LATES]
    lates = [(w, spread.cdf([at / (1 + x * narrow) for at in grid])) for x, w in shares]
    # inverse[k] = E[1/D; D <= grid[k]], so that a check at grid[j] after one at grid[i]
    # has E[(grid[j] - D) / D; grid[i] < D <= grid[j]] as its relative delay, in O(1).
    inverse = [0.0]
    for k in range(1, len(grid)):
        inverse.append(inverse[-1] + (cdf[k] - cdf[k - 1]) * 2 / (grid[k - 1] + grid[k]))
    last = len(grid) - 1
    cost = [0.0] * len(grid)  # from a check at grid[i] that found the task unfinished on
    step = [last] * len(grid)
    for i in range(last - 1, -1, -1):
        best = math.inf
        at_i, ended_i, inverse_i = grid[i], cdf[i], inverse[i]
        for j in range(i + 1, min(last, i + _REACH) + 1):
            at = grid[j]
            if at - at_i > max_interval:
                break
            delay = at * (inverse[j] - inverse_i) - (cdf[j] - ended_i)
            missed = 0.0  # the tasks seen late at each share (ended after grid[i])
            for weight, late in lates:
                if late[j] > ended_i:
                    missed += weight * (late[j] - ended_i)
            total = _DELAY_WEIGHT * delay + missed + cost[j]
            if total < best:
                best, step[i] = total, j
        cost[i] = (1 - cdf[i]) + best  # the next check is made unless the task finished
    instants, i = [], 0
    while i < last:
        i = step[i]
        instants.append(grid[i])
    return Plan(instants, max_interval)


def _checks_and_p95(instants: Sequence[float], spread: Spread) -> tuple[float, float]:
    """Checks at ``instants`` (up to the last duration learned) on the learned distribution:
    the expected checks per task, and the 95th percentile of delay / duration."""
    ended_before = spread.cdf([0.0, *instants[:-1]])  # F at each check's predecessor
    checks = sum(1 - f for f in ended_before)  # a check is made unless the task ended before

    def late(share: float) -> float:  # tasks seen later than ``share`` of their duration
        by = spread.cdf([at / (1 + share) for at in instants])
        return sum(max(0.0, f - e) for f, e in zip(by, ended_before, strict=True))

    low, high = 0.0, 1.0
    while late(high) > 1 - _P95 and high < 1e6:
        low, high = high, 2 * high
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (middle, high) if late(middle) > 1 - _P95 else (low, middle)
    return checks, high


def _blind_instants(policy: PollPolicy, horizon: float) -> list[float] | None:
    """The blind schedule's checks, jitter aside, until one is at or past ``horizon``;
    None past ``_GRID_MAX`` of them (finer than any plan's grid: no plan beats it)."""
    instants, steps = [min(policy.initial, policy.max_interval)], blind_steps(policy)
    while instants[-1] < horizon:
        if len(instants) > _GRID_MAX:
            return None
        instants.append(instants[-1] + next(steps))
    return instants


def _judged(seen: Sequence[tuple[float, float]], blind: Sequence[float], spread: Spread) -> Spread:
    """The intervals ``seen`` as the guard judges a plan on (``spread`` if none is coarse);
    each with ``0 <= low < high`` (as :class:`Durations` keeps them), ``blind`` with a
    positive instant (its steps are 0.01 s at least).

    A coarse interval has one of the ``blind`` checks well inside it: a plan's sparse
    checks saw it, and it may hide tasks that blind polling sees soon after they end and
    a plan far later. Its mass goes to the starts of the finer intervals overlapping it
    (what blind, or closer checks, saw there), else to its own start (blind's first
    check, for a wait's first check): where a plan that skips it sees those tasks latest."""
    first = next(at for at in blind if at > 0)

    def coarse(low: float, high: float) -> bool:
        k = bisect.bisect_right(blind, low * (1 + _SMEAR))
        return k < len(blind) and blind[k] < high / (1 + _SMEAR)

    flags = [coarse(low, high) for low, high in seen]
    if not any(flags):
        return spread
    fine = [seen[k] for k, flag in enumerate(flags) if not flag]
    intervals: list[tuple[float, float]] = []
    weights: list[float] = []
    for (low, high), flag in zip(seen, flags, strict=True):
        if not flag:
            intervals.append((low, high))
            weights.append(1.0)
            continue
        # Each finer interval overlapping this one counts by the share of it inside.
        inside = [
            (lo, hi, (min(hi, high) - max(lo, low)) / (hi - lo))
            for lo, hi in fine
            if lo < high and hi > low
        ]
        total = sum(share for _, _, share in inside)
        if total >= 1:  # at least one finish's worth
            for lo, hi, share in inside:
                intervals.append((lo, min(hi, lo * (1 + _SMEAR))) if lo else (lo, min(hi, high)))
                weights.append(share / total)
        else:
            intervals.append((low, low * (1 + _SMEAR)) if low else (first / (1 + _SMEAR), first))
            weights.append(1.0)
    return Spread(intervals, weights)


def beats_blind(plan: Plan, seen: Sequence[tuple[float, float]], policy: PollPolicy) -> bool:
    """Whether ``plan`` is still no worse than blind polling on the intervals ``seen``
    (judged as ``make_plan`` judges, without the margin)."""
    spread = Spread(seen)
    blind = _blind_instants(policy, spread.high)
    if blind is None:
        return False
    judged = _judged(seen, blind, spread)
    blind_checks, blind_p95 = _checks_and_p95(blind, judged)
    checks, p95 = _checks_and_p95(plan.instants, judged)
    return checks <= blind_checks and p95 <= blind_p95


def make_plan(
    spread: Spread, policy: PollPolicy, seen: Sequence[tuple[float, float]]
) -> Plan | None:
    """The plan for waits under ``policy``, from ``spread`` (made from the intervals
    ``seen``); None if the cap is too small against the durations for one to be worth it,
    or if it would not beat blind by the margin."""
    blind = _blind_instants(policy, spread.high)
    if blind is None or policy.max_interval <= 0:
        return None
    judged = _judged(seen, blind, spread)
    blind_checks, blind_p95 = _checks_and_p95(blind, judged)
    aimed_p95 = blind_p95 if judged is spread else _checks_and_p95(blind, spread)[1]
    for aim in _AIMS:  # the tightest aim that beats blind
        plan = _cheapest(spread, policy.max_interval, aim=aim * aimed_p95)
        if plan is None:
            return None
        # The invariant: a plan in use beats blind polling on what was learned, by a margin.
        checks, p95 = _checks_and_p95(plan.instants, judged)
        if checks <= _WIN_CHECKS * blind_checks and p95 <= _WIN_P95 * blind_p95:
            return plan
    return None
