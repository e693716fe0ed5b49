"""What a client learned of how long its tasks take, and the checks placed from it.

A wait on a task this client submitted knows when it was submitted; the read
that first sees it finished bounds its duration: it ended after the previous
read and by this one (interval-censored). :class:`Durations` keeps the most
recent such intervals of one model (a bounded window, so memory never grows
with the number of tasks) and makes a :class:`Plan` from them: the instants
after the submit at which to check, placed where finishes are likely.

The plan itself, and when there is none although enough is known, is the
business of ``planning``. A plan in use is judged again against blind polling
every ``_MIN_OBSERVED`` finishes, on what is known then (a minority it gives up
on may prove larger than the finishes it was made from said); once it no longer
beats blind, blind runs until the next plan is made.

With fewer than ``_MIN_OBSERVED`` observations there is no plan: the blind
schedule runs. Nor is there one while nearly all tasks were seen finished by
their wait's first check, or within ``_TOO_SHORT`` of their submit: the blind
schedule sees such tasks in a check or two, so a plan has nothing to save (and
costs a few milliseconds of Python each time it is made).

When too many recent finishes rank at one edge of what was learned (longer, or
shorter, than nearly all of it), the durations have drifted: all but the most
recent finishes are dropped and learning starts again from those.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable

from .._config import PollPolicy
from .planning import Plan, Spread, beats_blind, make_plan

__all__ = ["Durations", "Learner", "Plan"]

_WINDOW = 200  # observations kept per model: the most recent ones
_MIN_OBSERVED = 20  # fewer: no plan, the blind schedule
_DRIFT_RECENT = 20  # recent finishes the drift test looks at
_SURPRISE = 0.05  # ... those ranked in the outer 5 % of what was learned ...
_SURPRISES = 6  # ... this many times on one side: a drift
_KEPT = 12  # after a drift, the recent finishes learning starts again from
_SHORTEST, _LONGEST = 0.001, 365 * 86_400.0  # seconds: what an observation may say
_MAX_MODELS = 32  # models a learner remembers (least recently used dropped)
_MAX_PLANS = 4  # plans kept per spread, one per policy's (initial, factor, cap): oldest dropped
_TOO_SHORT = 0.05  # seconds: a task that ended this soon after its submit needs no plan
_NEEDS_NO_PLAN = 0.9  # ... nor a model with this share of such tasks (or of tasks
# seen finished by the first check)


def _sane(low: float, high: float) -> bool:
    """Whether a task can have ended after ``low`` and by ``high`` seconds from its
    submit, to the journal's millisecond (a sub-normal float from an edited journal
    would overflow the plan's arithmetic) and within a year."""
    return 0 <= low < high and _SHORTEST <= high <= _LONGEST


class Durations:
    """The recent durations of one model's tasks, and the plan made from them."""

    __slots__ = (
        "_fresh",
        "_judged",
        "_plans",
        "_progress",
        "_recent",
        "_seen",
        "_spread",
    )

    def __init__(self) -> None:
        self._seen: deque[tuple[float, float]] = deque(maxlen=_WINDOW)
        # Recent finishes: (-1 / 1 if ranked in the outer _SURPRISE of the learned
        # distribution on the short / long side, else 0; low; high), for the drift test.
        self._recent: deque[tuple[int, float, float]] = deque(maxlen=_DRIFT_RECENT)
        self._spread: Spread | None = None
        # The plans made from _spread, by what they depend on of the policy (None: no plan).
        self._plans: dict[tuple[float, float, float], Plan | None] = {}
        self._progress = False  # whether the latest finish reported progress while it ran
        self._fresh = 0  # observations since the spread was made
        # _fresh when each plan was last judged against blind on what is known now
        self._judged: dict[tuple[float, float, float], int] = {}

    def __len__(self) -> int:
        return len(self._seen)

    def observations(self) -> list[tuple[float, float]]:
        """The intervals kept, oldest first (what a journal saves)."""
        return list(self._seen)

    @property
    def reports_progress(self) -> bool:
        """Whether the latest task seen finished reported ``progress`` while it ran."""
        return self._progress

    def observe(self, low: float, high: float, *, progress: bool = False) -> None:
        """A task ended after ``low`` and by ``high`` seconds from its submit (having
        reported ``progress`` while it ran, or not)."""
        if not _sane(low, high):
            return
        self._progress = progress
        self._seen.append((low, high))
        self._fresh += 1
        # Only against a distribution of many finishes: the first ones lean short (a
        # stream's short tasks finish first), and later ones would look like a drift.
        if self._spread is not None and len(self._seen) >= 2 * _MIN_OBSERVED:
            self._check_drift(self._spread, low, high)

    def restore(self, observations: Iterable[tuple[float, float]]) -> None:
        """Add what an earlier run observed, as older than anything seen since."""
        newer = list(self._seen)
        self._seen.clear()
        for low, high in observations:
            if _sane(low, high):
                self._seen.append((low, high))
        self._seen.extend(newer)
        self._forget_plan()

    def plan(self, policy: PollPolicy) -> Plan | None:
        """Where waits under ``policy`` check; None while too little is known, or when
        the plan would be worse than ``policy``'s blind schedule."""
        if len(self._seen) < _MIN_OBSERVED:
            return None
        # Planning costs a few milliseconds: again once as many finishes are new as
        # were known (20, 40, 80 ...; then once per window), or after a drift.
        if self._spread is None or self._fresh >= self._spread.size:
            self._spread = Spread(self._seen)
            self._plans.clear()
            self._judged.clear()
            self._fresh = 0
        key = (policy.initial, policy.factor, policy.max_interval)
        plan = self._plans.get(key)
        if plan is not None and self._fresh >= self._judged.get(key, 0) + _MIN_OBSERVED:
            self._judged[key] = self._fresh
            if not beats_blind(plan, self._seen, policy):
                self._plans[key] = None
        if key not in self._plans:  # made once per spread and key, even when None
            if len(self._plans) >= _MAX_PLANS:
                del self._plans[next(iter(self._plans))]
            worth = self._worth_a_plan()
            self._plans[key] = make_plan(self._spread, policy, self._seen) if worth else None
            self._judged[key] = self._fresh
        return self._plans[key]

    def _worth_a_plan(self) -> bool:
        """Whether enough tasks took long enough, past a first check, for a plan to save checks."""
        quick = sum(low == 0 or high <= _TOO_SHORT for low, high in self._seen)
        return quick < _NEEDS_NO_PLAN * len(self._seen)

    def _check_drift(self, spread: Spread, low: float, high: float) -> None:
        # A finish is ranked by its upper bound to test for shorter tasks, by its lower
        # bound for longer ones, so that coarse reads never fake a drift. Of an unchanged
        # distribution, a finish falls in one outer 5 % at most one time in twenty: six
        # of twenty recent ones there are a drift (a shift of the durations, or a new
        # mode of a fifth of them). In poll_unseen.py's simulator: 3 false drifts in
        # 32,000 tasks of 8 unchanged distributions; a doubling seen within 10-11
        # finishes, a tenfold drop within 6, a new mode of a fifth within 25-140.
        after, by = spread.cdf([low, high])
        side = -1 if by < _SURPRISE else 1 if after > 1 - _SURPRISE else 0
        self._recent.append((side, low, high))
        if side and sum(s == side for s, _, _ in self._recent) >= _SURPRISES:
            kept = [(lo, hi) for _, lo, hi in self._recent][-_KEPT:]  # mostly the new durations
            self._seen.clear()
            self._seen.extend(kept)
            self._forget_plan()

    def _forget_plan(self) -> None:
        self._recent.clear()
        self._spread = None
        self._plans.clear()
        self._judged.clear()
        self._fresh = 0


class Learner:
    """Client-wide: the :class:`Durations` of each model this client waited on."""

    __slots__ = ("_models",)

    def __init__(self) -> None:
        self._models: OrderedDict[str, Durations] = OrderedDict()

    def durations(self, model: str) -> Durations:
        """What was learned of ``model`` (created empty on first use)."""
        found = self._models.get(model)
        if found is None:
            found = self._models[model] = Durations()
            while len(self._models) > _MAX_MODELS:
                self._models.popitem(last=False)
        else:
            self._models.move_to_end(model)
        return found

    def models(self) -> list[str]:
        """The models something was learned of."""
        return [model for model, durations in self._models.items() if len(durations)]
