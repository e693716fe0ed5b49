"""The oracle's frontier: the fewest status checks any poll schedule needs for a
given p95 detection delay, when the task durations are known exactly (issue 14).

Without ``progress`` or callbacks, every check of a wait answers "still
running" until the one that sees the task finished, so whatever a poller
knows or learns, its waits check at a fixed sequence of instants
``t1 < t2 < ...`` after the submit (a randomised poller, or one that learns
from other tasks whose durations are independent of this one's: a mixture
of such sequences). Under the SDK's cap (``PollPolicy().max_interval``,
15 s) no step, the first included, exceeds the cap. For a duration
distribution ``F`` known exactly (an oracle), a schedule's

* expected checks per task are ``sum_i P(D > t_{i-1})`` (``t0`` = the submit);
* tasks late at level ``x`` (seen more than ``x`` of their duration after
  they finished) have mass ``sum_i max(0, F(t_i / (1 + x)) - F(t_{i-1}))``,
  and the p95 of delay / duration is <= ``x`` iff that mass is <= 5 %.

For each p95 level ``x`` this script bounds ``N(x)``, the least expected
checks per task of any schedule (or mixture of schedules) with p95 <= ``x``:

* **proven (a lower bound)**: a dynamic program over a geometric grid of
  cells (``--ratio`` apart) minimises checks + ``lam`` x late mass over a
  relaxation: a check in a cell sees its tasks as if made at the cell's
  start, and as the check before the next one it counts as made at the
  cell's end; a step may reach a cap past that end; nothing counts past
  the horizon (6 sigma, or the uniform's end). Every real schedule costs at
  least as much as its path of cells, so by weak duality any schedule (or
  mixture) with late mass <= 5 % makes at least ``L(lam) - 0.05 lam``
  checks, for every ``lam >= 0``; the best ``lam`` of a bisection is shown.
* **achieved**: the same program with the grid's points as the check
  instants (steps <= cap); the schedule found is then evaluated exactly.

The blind schedule is the SDK's own: ``PollSchedule(PollPolicy(learn=False))``
drawn ``--draws`` times (seeded, its 10 % jitter), the first check at
``first()``, then ``next()`` after each "running" answer; each draw is
evaluated exactly against ``F`` and the p95 is that of the mixture. As in
``benchmarks/poll_economy.py``, checks count from the client's submit and a
request is a status read (the submit is not one); round trips (~1 ms real,
~0.05 s unscaled there) are left out. That benchmark measures on a sample
(100 or 250 tasks), so blind and the oracle's schedules are also evaluated
on its own durations of the range it reports, for seeds 1-``--samples``
(blind: mean of 20 draws; p95 by its ``percentile``).

Scenarios (as ``poll_economy.py`` draws them): consistent, log-normal median
30 s, sigma 0.35; drift, the durations after the doubling (median 60 s);
bimodal, 70 % log-normal around 15 s and 30 % around 90 s (sigma 0.2); wide,
uniform over 5-120 s.

Run (~80 s; one core)::

    python benchmarks/poll_frontier.py
    python benchmarks/poll_frontier.py --scenario drift --ratio 1.002
"""

from __future__ import annotations

import argparse
import bisect
import math
import random
import time
from collections import deque
from collections.abc import Callable, Sequence

import attrs
from _common import machine, percentile, table
from poll_economy import DRIFT_AT, WARM_UP, durations

from vidgo_async import PollPolicy, Task, TaskStatus
from vidgo_async._timing.schedules import PollSchedule

CAP = PollPolicy().max_interval
BLIND = PollPolicy(learn=False)
LATE_SHARE = 0.05  # p95: at most this mass of tasks late
FIRST_CELL = 0.01  # seconds: the grid's first point after the submit
P95_SHARE = 0.5  # the target: p95 % <= this times blind's ...
REQUEST_SHARE = 0.7  # ... with requests <= this times blind's
FRONTIER = (0.3, 0.4, 0.45, 0.5, 0.6, 0.8, 1.0)  # p95 levels shown, as shares of blind's
SAMPLED = (0.45, 0.5)  # ... and those also tried on the benchmark's own tasks
BOTH_TARGETS = ("consistent", "drift", "bimodal")  # (wide's targets are others)


@attrs.frozen
class Distribution:
    """Task durations: a mixture of log-normals ``(weight, median, sigma)``, or uniform."""

    lognormals: tuple[tuple[float, float, float], ...] = ()
    uniform: tuple[float, float] | None = None

    def cdf(self, t: float) -> float:
        """P(D <= t)."""
        if self.uniform is not None:
            low, high = self.uniform
            return min(1.0, max(0.0, (t - low) / (high - low)))
        if t <= 0:
            return 0.0
        return sum(
            w * 0.5 * math.erfc(-math.log(t / m) / (s * math.sqrt(2)))
            for w, m, s in self.lognormals
        )

    @property
    def horizon(self) -> float:
        """A duration longer than all but ~1e-9 of the mass."""
        if self.uniform is not None:
            return self.uniform[1]
        return max(m * math.exp(6.0 * s) for _, m, s in self.lognormals)


SCENARIOS = {
    "consistent": Distribution(lognormals=((1.0, 30.0, 0.35),)),
    "drift": Distribution(lognormals=((1.0, 60.0, 0.35),)),
    "bimodal": Distribution(lognormals=((0.7, 15.0, 0.2), (0.3, 90.0, 0.2))),
    "wide": Distribution(uniform=(5.0, 120.0)),
}


# -- exact figures of given schedules ------------------------------------------------------


def checks_per_task(dist: Distribution, checks: Sequence[float]) -> float:
    """Expected status reads: check i is made unless the task finished by check i - 1."""
    return sum(1 - dist.cdf(t) for t in [0.0, *checks[:-1]])


def late_mass(dist: Distribution, checks: Sequence[float], x: float) -> float:
    """Mass of tasks seen more than ``x`` of their duration after they finished."""
    before = [0.0, *checks[:-1]]
    return sum(
        max(0.0, dist.cdf(t / (1 + x)) - dist.cdf(s)) for s, t in zip(before, checks, strict=True)
    )


def p95(late: Callable[[float], float]) -> float:
    """The least ``x`` with ``late(x) <= LATE_SHARE`` (``late`` non-increasing), by bisection."""
    low, high = 0.0, 10.0
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (low, mid) if late(mid) <= LATE_SHARE else (mid, high)
    return high


def blind_draws(dist: Distribution, draws: int, seed: int) -> list[list[float]]:
    """Check instants of ``draws`` blind waits, each past the horizon (the SDK's own code)."""
    rng = random.Random(seed)
    running = Task(task_id="t", status=TaskStatus.RUNNING)
    schedules = []
    for _ in range(draws):
        schedule = PollSchedule(BLIND, rng=rng)
        checks = [schedule.first(0.0)]
        while checks[-1] < dist.horizon:
            checks.append(checks[-1] + schedule.next(running, 0.0))
        schedules.append(checks)
    return schedules


def sampled(checks: Sequence[Sequence[float]], spans: Sequence[float]) -> tuple[float, float]:
    """Requests per task and p95 % of delay / duration on ``spans`` (as poll_economy
    computes them), averaged over the schedules ``checks`` (one per draw)."""
    requests, pcts = [], []
    for draw in checks:
        found = [bisect.bisect_left(draw, d) for d in spans]
        requests.append(sum(k + 1 for k in found) / len(spans))
        pcts.append(
            percentile([100 * (draw[k] - d) / d for k, d in zip(found, spans, strict=True)], 95)
        )
    return sum(requests) / len(requests), sum(pcts) / len(pcts)


# -- the dynamic program -------------------------------------------------------------------


@attrs.frozen
class Grid:
    """Candidate instants and, per state, what a step from it may reach and counts.

    A state ``a`` is a check at ``points[a]`` (achieved) or in the cell
    ``[points[a], points[a + 1])`` (relaxed: ``after[a]`` is then the cell's end).
    """

    points: list[float]
    after: list[float]  # F at each state's check (relaxed: at its cell's end, the most it can be)
    reach: list[int]  # the last state one step may reach


def make_grid(dist: Distribution, ratio: float, relaxed: bool) -> Grid:
    """The grid from the submit (state 0) past the horizon, points ``ratio`` apart."""
    points = [0.0, FIRST_CELL]
    while points[-1] < dist.horizon:
        points.append(points[-1] * ratio)
    # Relaxed, a check in a cell may be as late as its end: the next one may be a cap
    # after that end, and no task is seen after it. (State 0 is the cell [0, points[1]).)
    ends = points[1:] if relaxed else points[:-1]
    reach = [bisect.bisect_right(points, end + CAP) - 1 for end in ends]
    if any(r <= a for a, r in enumerate(reach)):
        raise ValueError("grid points more than a cap apart: use a smaller --ratio")
    return Grid(points=points, after=[dist.cdf(end) for end in ends], reach=reach)


@attrs.frozen
class Path:
    """The DP's cheapest path for one ``lam``: its checks and (grid) counts."""

    value: float  # checks + lam * late, as the DP counts them
    checks: list[float]
    late: float  # late mass, as the DP counts it


def cheapest(grid: Grid, seen_by: list[float], lam: float) -> Path:
    """Min over paths of checks + ``lam`` x late mass; ``seen_by[b]`` = F(points[b] / (1 + x)).

    A step from ``a`` to ``b`` costs ``1 - after[a]`` (the check at ``b`` is made unless
    the task finished) and ``lam * max(0, seen_by[b] - after[a])``. The late part is 0
    up to the last ``b`` with ``seen_by[b] <= after[a]``, so the best step is the min of
    two windows of states, each moving only down as ``a`` does: two monotone deques
    make the whole program O(states).
    """
    last = len(grid.points) - 1
    value = [0.0] * (last + 1)
    step = [last] * (last + 1)
    free: deque[int] = deque()  # states with no late part; values decrease left to right
    taxed: deque[int] = deque()  # states with one, keyed by value + lam * seen_by
    pushed = last + 1  # taxed holds states >= pushed
    for a in range(last - 1, -1, -1):
        after, reach = grid.after[a], grid.reach[a]
        on_time = bisect.bisect_right(seen_by, after) - 1
        while free and value[free[0]] >= value[a + 1]:
            free.popleft()
        free.appendleft(a + 1)
        while free and free[-1] > min(on_time, reach):
            free.pop()
        while pushed > max(a + 1, on_time + 1):
            pushed -= 1
            key = value[pushed] + lam * seen_by[pushed]
            while taxed and value[taxed[0]] + lam * seen_by[taxed[0]] >= key:
                taxed.popleft()
            taxed.appendleft(pushed)
        while taxed and taxed[-1] > reach:
            taxed.pop()
        best, step[a] = math.inf, last
        if free:
            best, step[a] = value[free[-1]], free[-1]
        if taxed:
            b = taxed[-1]
            cost = value[b] + lam * (seen_by[b] - after)
            if cost < best:
                best, step[a] = cost, b
        value[a] = 1 - after + best
    checks, late, a = [], 0.0, 0
    while a < last:
        b = step[a]
        late += max(0.0, seen_by[b] - grid.after[a])
        checks.append(grid.points[b])
        a = b
    return Path(value=value[0], checks=checks, late=late)


# -- the frontier --------------------------------------------------------------------------


@attrs.frozen
class Bound:
    """The fewest checks per task at p95 <= ``x``: proven bound and a schedule achieving near it."""

    lower: float  # no schedule (nor mixture) with p95 <= x makes fewer checks per task
    achieved: float  # expected checks of ``checks`` (exact), whose p95 is <= x
    checks: list[float]


@attrs.frozen
class Oracle:
    """One distribution's two grids (same points): relaxed for bounds, achieved for schedules."""

    dist: Distribution
    relaxed: Grid
    exact: Grid

    @classmethod
    def of(cls, dist: Distribution, ratio: float) -> Oracle:
        """The grids of ``dist``, points ``ratio`` apart."""
        return cls(
            dist, make_grid(dist, ratio, relaxed=True), make_grid(dist, ratio, relaxed=False)
        )

    def seen_by(self, x: float) -> list[float]:
        """F(t / (1 + x)) at each grid point: tasks a check there sees late at level x."""
        return [self.dist.cdf(t / (1 + x)) for t in self.exact.points]

    def lower(self, x: float) -> float:
        """The best weak-duality bound ``L(lam) - 0.05 lam`` over a bisection of ``lam``."""
        seen_by, best = self.seen_by(x), 0.0
        low, high = 0.0, 20.0  # log10 lam
        for _ in range(36):
            lam = 10 ** ((low + high) / 2)
            path = cheapest(self.relaxed, seen_by, lam)
            best = max(best, path.value - LATE_SHARE * lam)
            low, high = (
                ((low + high) / 2, high) if path.late > LATE_SHARE else (low, (low + high) / 2)
            )
        return best

    def achieved(self, x: float) -> tuple[float, list[float]]:
        """The fewest checks of a grid schedule found with late mass <= 5 % (exact)."""
        seen_by = self.seen_by(x)
        best: tuple[float, list[float]] = (math.inf, [])
        low, high = 0.0, 20.0
        for _ in range(36):
            lam = 10 ** ((low + high) / 2)
            checks = cheapest(self.exact, seen_by, lam).checks
            if late_mass(self.dist, checks, x) <= LATE_SHARE:
                best = min(best, (checks_per_task(self.dist, checks), checks))
                high = (low + high) / 2
            else:
                low = (low + high) / 2
        return best

    def fewest_checks(self, x: float) -> Bound:
        """Both bounds of ``N(x)``."""
        requests, checks = self.achieved(x)
        return Bound(lower=self.lower(x), achieved=requests, checks=checks)

    def least_p95(self, budget: float) -> tuple[float, float]:
        """p95 levels ``(proven, achieved)``: every schedule with at most ``budget`` checks
        per task has p95 > ``proven``; a grid schedule with at most ``budget`` has ``achieved``."""
        low, high = 0.0, 1.0
        for _ in range(16):
            mid = (low + high) / 2
            low, high = (mid, high) if self.lower(mid) > budget else (low, mid)
        proven, checks = low, []
        low, high = 0.0, 1.0
        for _ in range(16):
            mid = (low + high) / 2
            requests, found = self.achieved(mid)
            if requests > budget:
                low = mid
            else:
                high, checks = mid, found
        return proven, p95(lambda x: late_mass(self.dist, checks, x)) if checks else math.nan


# -- the report ----------------------------------------------------------------------------


def benchmark_spans(scenario: str, seed: int) -> list[float]:
    """poll_economy's durations (its ``--seed``) over the range it reports for ``scenario``."""
    if scenario == "drift":
        return durations("drift", DRIFT_AT + 150, seed)[DRIFT_AT + 50 :]
    return durations(scenario, 300, seed)[WARM_UP:]


@attrs.frozen
class Report:
    """One scenario's rows of each table."""

    blind: list[object]
    target: list[object]
    schedule: str  # the oracle's first checks at the p95 target
    samples: list[list[object]]
    frontier: list[list[object]]


def on_samples(
    scenario: str, schedules: list[list[float]], checks: list[float], args: argparse.Namespace
) -> list[object]:
    """``checks`` vs blind (20 draws) on the benchmark's tasks: seed 1, then every seed."""
    ratios = []
    for seed in range(1, args.samples + 1):
        spans = benchmark_spans(scenario, seed)
        blind, mine = sampled(schedules[:20], spans), sampled([checks], spans)
        ratios.append((mine[0] / blind[0], mine[1] / blind[1]))
    met = sum(r <= REQUEST_SHARE and q <= P95_SHARE for r, q in ratios)
    verdict = f"{met} of {len(ratios)}" if scenario in BOTH_TARGETS else "-"
    return [
        f"{ratios[0][0]:.3f}x / {ratios[0][1]:.3f}x",
        f"{min(r for r, _ in ratios):.3f}-{max(r for r, _ in ratios):.3f}x",
        f"{min(q for _, q in ratios):.3f}-{max(q for _, q in ratios):.3f}x",
        verdict,
    ]


def scenario_report(scenario: str, args: argparse.Namespace) -> Report:
    """Blind's figures, then the oracle's against them, for one scenario."""
    dist = SCENARIOS[scenario]
    schedules = blind_draws(dist, args.draws, args.seed)
    requests = sum(checks_per_task(dist, s) for s in schedules) / len(schedules)
    level = p95(lambda x: sum(late_mass(dist, s, x) for s in schedules) / len(schedules))
    oracle = Oracle.of(dist, args.ratio)
    at_target = oracle.fewest_checks(P95_SHARE * level)
    proven, achieved = oracle.least_p95(REQUEST_SHARE * requests)
    target = [
        scenario,
        100 * P95_SHARE * level,
        f"{at_target.lower / requests:.3f}x ({at_target.lower:.2f})",
        f"{at_target.achieved / requests:.3f}x ({at_target.achieved:.2f})",
        f"{proven / level:.3f}x ({100 * proven:.1f} %)",
        f"{achieved / level:.3f}x ({100 * achieved:.1f} %)",
    ]
    samples, frontier = [], []
    for share in FRONTIER:
        bound = at_target if share == P95_SHARE else oracle.fewest_checks(share * level)
        vs_blind = f"{bound.lower / requests:.3f}x"
        frontier.append(
            [scenario, f"{share:g}x", 100 * share * level, bound.lower, bound.achieved, vs_blind]
        )
        if share in SAMPLED:
            samples.append(
                [scenario, f"{share:g}x", *on_samples(scenario, schedules, bound.checks, args)]
            )
    on_seed_1 = sampled(schedules[:20], benchmark_spans(scenario, 1))
    blind = [scenario, requests, 100 * level, *on_seed_1]
    schedule = f"{scenario}: " + ", ".join(f"{t:.1f}" for t in at_target.checks[:12]) + " ..."
    return Report(blind, target, schedule, samples, frontier)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS))
    parser.add_argument("--ratio", type=float, default=1.001, help="grid points this far apart")
    parser.add_argument("--draws", type=int, default=2000, help="blind schedules drawn")
    parser.add_argument("--seed", type=int, default=1, help="of the blind draws")
    parser.add_argument("--samples", type=int, default=12, help="poll_economy seeds compared")
    args = parser.parse_args()
    print(machine())
    print(f"cap {CAP:g} s, grid ratio {args.ratio:g}, {args.draws} blind draws, seed {args.seed}")
    started = time.perf_counter()
    reports = []
    for scenario in args.scenario or SCENARIOS:
        reports.append(scenario_report(scenario, args))
        print(f"  {scenario}: {time.perf_counter() - started:.0f} s", flush=True)
    print("\nblind (PollSchedule, learn=False): exact on the distribution; on poll_economy's tasks")
    headers = ["scenario", "req/task", "p95 %", "seed 1: req/task", "seed 1: p95 %"]
    print(table(headers, [r.blind for r in reports]))
    print(
        f"\nthe oracle vs blind: fewest requests at p95 <= {P95_SHARE:g}x blind's;"
        f" least p95 at requests <= {REQUEST_SHARE:g}x blind's"
    )
    headers = ["scenario", "p95 % target", "req: proven >=", "req: achieved"]
    headers += ["p95: proven >", "p95: achieved"]
    print(table(headers, [r.target for r in reports]))
    print("\nthe oracle's checks at the p95 target, s after the submit")
    print("\n".join(r.schedule for r in reports))
    print(
        "\nthe oracle's schedule for a p95 level (a share of blind's) on poll_economy's tasks,"
        f" seeds 1-{args.samples}: req / p95 % vs blind on the same tasks"
    )
    headers = ["scenario", "aimed at", "seed 1", "req, all seeds", "p95, all seeds"]
    headers += [f"<= {REQUEST_SHARE:g}x and <= {P95_SHARE:g}x"]
    print(table(headers, [row for r in reports for row in r.samples]))
    print("\nthe frontier: fewest requests per task at each p95 level (a share of blind's)")
    headers = ["scenario", "p95 vs blind", "p95 %", "req: proven >=", "req: achieved", "vs blind"]
    print(table(headers, [row for r in reports for row in r.frontier]))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
