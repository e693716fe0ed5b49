"""The client-wide poll rate cap: sliding window, FIFO queue, expiry, slow_down and back_off.

``acquire(timeout=0)`` is the probe used throughout: it answers at once whether a
grant is available right now, with no wall-clock assertion. Rates of 1,000,000/s
give a 10 ms window (10,000 grants) for the tests that need a window to roll over;
20,000/s gives half a second, far longer than taking 10,000 grants; lower rates give
one-second windows that cannot roll over during a test.
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from vidgo_async import VidgoClient
from vidgo_async._timing.limits import RateLimiter, Slot
from vidgo_async.testing import FakeVidgo

FAST = 1_000_000.0  # 10,000 grants per 10 ms window


async def take(limiter: RateLimiter, count: int) -> None:
    """Take ``count`` grants that must be available at once, for requests answered at once."""
    for _ in range(count):
        (await limiter.acquire(timeout=0)).release()


async def has_room(limiter: RateLimiter) -> bool:
    """Whether a grant is available right now (it is taken, and released, if so)."""
    try:
        slot = await limiter.acquire(timeout=0)
    except TimeoutError:
        return False
    slot.release()
    return True


async def queued(limiter: RateLimiter, timeout: float | None = 1.0) -> asyncio.Task[Slot]:
    """An acquire that has joined the queue."""
    task = asyncio.ensure_future(limiter.acquire(timeout))
    await asyncio.sleep(0)
    assert not task.done()
    return task


# ---------------------------------------------------------------- construction


@pytest.mark.parametrize("rate", [True, "10", None, [1]])
def test_non_numeric_rate_is_a_type_error(rate: object) -> None:
    """A rate that is not a number (bools included) raises TypeError."""
    with pytest.raises(TypeError, match="must be a number"):
        VidgoClient("key", max_polls_per_second=rate)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [0, -1, 0.0, math.nan, math.inf, -math.inf])
def test_non_positive_or_non_finite_rate_is_a_value_error(rate: float) -> None:
    """A rate that is not finite and positive raises ValueError."""
    with pytest.raises(ValueError, match="finite number > 0"):
        VidgoClient("key", max_polls_per_second=rate)


@pytest.mark.parametrize("rate", [True, "10", [1]])
def test_a_submit_cap_that_is_not_a_number_is_a_type_error(rate: object) -> None:
    with pytest.raises(TypeError, match="must be a number"):
        VidgoClient("key", max_submits_per_second=rate)  # type: ignore[arg-type]


@pytest.mark.parametrize("rate", [0, -1, math.nan, math.inf])
def test_a_submit_cap_that_is_not_finite_and_positive_is_a_value_error(rate: float) -> None:
    with pytest.raises(ValueError, match="finite number > 0"):
        VidgoClient("key", max_submits_per_second=rate)


def test_a_submit_cap_beside_a_shared_quota_is_refused() -> None:
    """With a quota, the submits' cap is the quota's (shared), not one client's."""

    class Quota:
        def poll_limiter(self, rate: float) -> None: ...
        def submit_limiter(self) -> None: ...

    with pytest.raises(ValueError, match="give the cap to the SharedQuota"):
        VidgoClient("key", max_submits_per_second=2, quota=Quota())  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_submits_stay_under_max_submits_per_second_on_the_wire(fake: FakeVidgo) -> None:
    """``max_submits_per_second=4``: eight submits at once reach the server at most four
    in any one-second span (none waits for a 429 to find the plan's limit)."""
    async with VidgoClient(fake.api_key, base_url=fake.url, max_submits_per_second=4) as client:
        await asyncio.wait_for(
            asyncio.gather(*(client.submit_wav("m", f"a{k}") for k in range(8))), 10
        )
    sent = sorted(r.at for r in fake.requests if r.route == "submit")
    assert len(sent) == 8
    assert all(later - earlier >= 0.95 for earlier, later in zip(sent, sent[4:], strict=False))


# ---------------------------------------------------------------- sliding window


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("rate", "limit"), [(5, 5), (5.9, 5), (0.5, 1), (0.01, 1), (20_000, 10_000)]
)
async def test_window_admits_at_most_its_limit_at_once(rate: float, limit: int) -> None:
    """A fresh limiter grants ``limit`` requests at once, then none."""
    limiter = RateLimiter(rate)
    await take(limiter, limit)
    assert not await has_room(limiter)


@pytest.mark.asyncio
async def test_grants_leave_the_window_and_make_room() -> None:
    """Grants older than the window no longer count."""
    limiter = RateLimiter(FAST)
    await take(limiter, 10_000)
    await asyncio.sleep(0.03)
    assert await has_room(limiter)


@pytest.mark.asyncio
async def test_queued_request_is_granted_when_the_oldest_leaves() -> None:
    """A request over the limit waits for room instead of failing."""
    limiter = RateLimiter(FAST)
    await take(limiter, 10_000)
    await asyncio.wait_for(limiter.acquire(timeout=5.0), timeout=5.0)


@pytest.mark.asyncio
async def test_queued_requests_are_granted_in_order() -> None:
    """Requests that queue are served first come, first served."""
    limiter = RateLimiter(FAST)
    await take(limiter, 10_000)
    order: list[int] = []

    async def one(n: int) -> None:
        await limiter.acquire(timeout=5.0)
        order.append(n)

    jobs = [asyncio.ensure_future(one(n)) for n in range(5)]
    await asyncio.wait_for(asyncio.gather(*jobs), timeout=5.0)
    assert order == [0, 1, 2, 3, 4]


@pytest.mark.asyncio
async def test_grants_beyond_the_room_wait_for_the_next_window() -> None:
    """When a pause ends, only the window's room is granted; the rest keep waiting."""
    limiter = RateLimiter(2)  # one-second window
    limiter.slow_down(0.01)
    first, second = await queued(limiter), await queued(limiter)
    third = await queued(limiter, timeout=0.05)
    await asyncio.wait_for(asyncio.gather(first, second), timeout=5.0)
    with pytest.raises(TimeoutError):
        await third


# ---------------------------------------------------------------- slots under way


@pytest.mark.asyncio
async def test_a_slot_counts_while_its_request_is_under_way() -> None:
    """A slot not yet released holds its place however long its request takes."""
    limiter = RateLimiter(FAST)  # a 10 ms window
    slots = [await limiter.acquire(timeout=0) for _ in range(10_000)]
    await asyncio.sleep(0.03)  # three windows: released grants would have left
    assert not await has_room(limiter)
    for slot in slots:
        slot.release()


@pytest.mark.asyncio
async def test_a_released_slot_counts_for_one_window_after_its_release() -> None:
    """A request that left late cannot bunch up with the next window's: its slot
    stays counted for a whole window after its answer."""
    limiter = RateLimiter(2)  # one-second window
    late = await limiter.acquire(timeout=0)
    await take(limiter, 1)
    await asyncio.sleep(0.05)
    late.release()
    assert not await has_room(limiter)
    with pytest.raises(TimeoutError):
        await limiter.acquire(timeout=0.5)


@pytest.mark.asyncio
async def test_a_release_wakes_a_request_queued_behind_slots_under_way() -> None:
    """With every slot under way, the queue is served one window after a release."""
    limiter = RateLimiter(FAST)  # a 10 ms window
    slots = [await limiter.acquire(timeout=0) for _ in range(10_000)]
    waiting = await queued(limiter, timeout=5.0)
    await asyncio.sleep(0.03)
    assert not waiting.done()
    slots[0].release()
    (await asyncio.wait_for(waiting, timeout=5.0)).release()
    for slot in slots:
        slot.release()


@pytest.mark.asyncio
async def test_releasing_a_slot_twice_frees_it_once() -> None:
    """release() is idempotent: a second call frees no second slot."""
    limiter = RateLimiter(FAST)
    slots = [await limiter.acquire(timeout=0) for _ in range(10_000)]
    slots[0].release()
    slots[0].release()
    await asyncio.sleep(0.03)
    assert await has_room(limiter)
    assert not await has_room(limiter)  # room for one: the other 9,999 are under way


@pytest.mark.asyncio
async def test_a_grant_that_meets_a_cancellation_is_given_back() -> None:
    """A waiter cancelled just as its grant came takes no slot for good."""
    limiter = RateLimiter(1)
    limiter.slow_down(0.01)
    waiting = await queued(limiter, timeout=5.0)
    time.sleep(0.03)  # the grant's timer is due when the loop next runs:
    await asyncio.sleep(0)  # this task runs first in that round, the timer after it
    await asyncio.sleep(0)  # this task again, before the waiter it woke
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert await has_room(limiter)


# ---------------------------------------------------------------- timeouts and cancellation


@pytest.mark.asyncio
@pytest.mark.parametrize("timeout", [0, -1.0])
async def test_no_room_and_no_time_fails_at_once(timeout: float) -> None:
    """With no room and a spent deadline, acquire raises TimeoutError without queueing."""
    limiter = RateLimiter(1)
    await take(limiter, 1)
    with pytest.raises(TimeoutError, match="no request slot"):
        await limiter.acquire(timeout)


@pytest.mark.asyncio
async def test_queued_request_times_out() -> None:
    """A queued request that gets no grant within its timeout raises TimeoutError."""
    limiter = RateLimiter(1)  # one-second window
    await take(limiter, 1)
    with pytest.raises(TimeoutError, match="no request slot"):
        await limiter.acquire(timeout=0.02)


@pytest.mark.asyncio
async def test_timed_out_request_takes_nothing() -> None:
    """A request that timed out in the queue leaves its grant to the next one."""
    limiter = RateLimiter(2)
    limiter.slow_down(0.03)
    with pytest.raises(TimeoutError):
        await limiter.acquire(timeout=0.01)
    await asyncio.wait_for(limiter.acquire(timeout=5.0), timeout=5.0)
    assert await has_room(limiter)  # the second of two grants is still free
    assert not await has_room(limiter)


@pytest.mark.asyncio
async def test_cancelled_request_takes_nothing() -> None:
    """A queued request that is cancelled leaves its grant to the next one."""
    limiter = RateLimiter(3)
    limiter.slow_down(0.02)
    gone, kept = await queued(limiter), await queued(limiter)
    gone.cancel()
    await asyncio.wait_for(kept, timeout=5.0)
    assert gone.cancelled()
    await take(limiter, 2)  # three per window: one taken by ``kept`` only
    assert not await has_room(limiter)


@pytest.mark.asyncio
async def test_grant_due_with_the_timeout_wins() -> None:
    """A grant and a timeout falling due together: the grant stands, no error."""
    limiter = RateLimiter(5)
    limiter.slow_down(0.005)
    waiting = await queued(limiter, timeout=0.01)
    time.sleep(0.03)  # block the loop: both timers are due when it next runs
    await asyncio.wait_for(waiting, timeout=5.0)


@pytest.mark.asyncio
async def test_unbounded_acquire_waits_for_the_grant() -> None:
    """acquire() without a timeout waits as long as it takes."""
    limiter = RateLimiter(4)
    limiter.slow_down(0.02)
    await asyncio.wait_for(limiter.acquire(), timeout=5.0)


# ---------------------------------------------------------------- slow_down


@pytest.mark.asyncio
async def test_slow_down_holds_every_grant() -> None:
    """After slow_down no request starts at once, though the window has room."""
    limiter = RateLimiter(100)
    limiter.slow_down(5.0)
    assert not await has_room(limiter)


@pytest.mark.asyncio
async def test_slow_down_delays_but_does_not_refuse() -> None:
    """A request during a pause is granted when it ends."""
    limiter = RateLimiter(100)
    limiter.slow_down(0.03)
    started = time.monotonic()
    await asyncio.wait_for(limiter.acquire(timeout=5.0), timeout=5.0)
    assert time.monotonic() - started >= 0.02


@pytest.mark.asyncio
async def test_shorter_slow_down_does_not_shorten_a_pause() -> None:
    """A later, shorter slow_down leaves the longer pause in force."""
    limiter = RateLimiter(100)
    limiter.slow_down(5.0)
    limiter.slow_down(0.0)
    assert not await has_room(limiter)


@pytest.mark.asyncio
async def test_longer_slow_down_postpones_queued_grants() -> None:
    """A longer slow_down while requests queue re-times their grant."""
    limiter = RateLimiter(100)
    limiter.slow_down(0.005)
    started = time.monotonic()
    waiting = await queued(limiter)
    limiter.slow_down(0.04)
    await asyncio.wait_for(waiting, timeout=5.0)
    assert time.monotonic() - started >= 0.03


def test_slow_down_needs_no_event_loop_when_nobody_queues() -> None:
    """slow_down from synchronous code (no loop, empty queue) just records the pause."""
    limiter = RateLimiter(5)
    limiter.slow_down(1.0)
    limiter.slow_down(2.0)


# ---------------------------------------------------------------- back_off


@pytest.mark.asyncio
async def test_back_off_halves_the_rate() -> None:
    """One back_off halves the grants a window admits."""
    limiter = RateLimiter(8)
    limiter.back_off()
    await take(limiter, 4)
    assert not await has_room(limiter)


@pytest.mark.asyncio
async def test_back_offs_within_a_window_halve_once() -> None:
    """The 429s that answer a burst sent before the rate was halved say nothing new:
    however many arrive within a window, the rate is halved once (it fell to a
    sixteenth for four of them)."""
    limiter = RateLimiter(16)
    for _ in range(4):
        limiter.back_off()
    await take(limiter, 8)
    assert not await has_room(limiter)


async def grants_now(limiter: RateLimiter) -> int:
    """The grants a limiter gives at once, counted to the first refusal (bounded)."""
    for count in range(20_000):
        if not await has_room(limiter):
            return count
    raise AssertionError("no end to the grants")


@pytest.mark.asyncio
async def test_back_offs_in_successive_windows_compound() -> None:
    """A back_off a window after the last halves the current share again."""
    limiter = RateLimiter(20_000)  # windows of 0.5 s, 10,000 grants
    limiter.back_off()
    await asyncio.sleep(0.51)  # 5,000 grants, and 5 % of the rate won back
    limiter.back_off()
    assert 2_750 <= await grants_now(limiter) < 3_200  # not 5,000: halved again


@pytest.mark.asyncio
async def test_back_off_floors_at_a_sixteenth() -> None:
    """However many back_offs, a sixteenth of the rate remains."""
    limiter = RateLimiter(FAST)  # windows of 10 ms, 10,000 grants
    for _ in range(8):
        limiter.back_off()
        await asyncio.sleep(0.011)
    # 625 and the ~1 % won back meanwhile (more only if counting took a window).
    assert 625 <= await grants_now(limiter) < 1_300


@pytest.mark.asyncio
async def test_back_off_always_leaves_one_grant() -> None:
    """A backed-off small rate still admits one request per window."""
    limiter = RateLimiter(1)
    limiter.back_off()
    assert await has_room(limiter)
    assert not await has_room(limiter)


@pytest.mark.asyncio
async def test_backed_off_rate_recovers_over_time() -> None:
    """The share grows back by a tenth of the rate per second."""
    limiter = RateLimiter(200)  # one-second window, 100 grants after back_off
    limiter.back_off()
    await take(limiter, 100)
    assert not await has_room(limiter)
    await asyncio.sleep(0.06)  # at least 0.6 % more: one more grant of 200
    assert await has_room(limiter)
