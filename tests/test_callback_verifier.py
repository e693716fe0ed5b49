"""The callback verifier: tokens, hints, reliability, the safety-net pacer and the size caps.

The receiver's public surface (``feed``, ``handler``, ``parse_callback``) is driven as
a web framework would; the token registry and the pacer are pure logic and are driven
directly, reached through ``registry_of(receiver)``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from support import MakeClient

from vidgo_async import ConfigurationError, PollPolicy, Task, TaskStatus, VidgoError
from vidgo_async._client import _registry_of as registry_of
from vidgo_async._lifecycle import Lifecycle
from vidgo_async._ops.callbacks import CallbackPacer, Registry, Slot
from vidgo_async._timing.deadline import Deadline
from vidgo_async.testing import FakeVidgo, Fault
from vidgo_async.webhooks import (
    DEFAULT_PATH,
    MAX_BODY,
    CallbackReceiver,
    InvalidCallbackError,
    parse_callback,
)

PUBLIC = "https://hooks.example.com"
NET = PollPolicy(initial=0.01, jitter=0.1, callback_interval=10.0)


def task(task_id: str = "t1", status: TaskStatus = TaskStatus.FINISHED) -> Task:
    """A task snapshot."""
    return Task(task_id=task_id, status=status)


def body(task_id: Any = "t1", status: Any = "finished", **extra: Any) -> bytes:
    """A wrapped callback body."""
    return json.dumps(
        {"code": 200, "data": {"task_id": task_id, "status": status, **extra}}
    ).encode()


def flip(char: str) -> str:
    """A character other than ``char``."""
    return "B" if char == "A" else "A"


def make_registry(ttl: float = 60.0, max_slots: int = 100) -> Registry:
    """A registry whose callback URLs live under ``PUBLIC``."""
    return Registry(url_for=lambda token: f"{PUBLIC}/{token}", ttl=ttl, max_slots=max_slots)


def bound(registry: Registry, task_id: str = "t1", *, answer: bool = True) -> Slot:
    """A slot issued and bound to ``task_id`` as a submit's answer (or a 409) would."""
    slot = registry.issue()
    registry.bind(slot, task_id, trusted=answer)
    return slot


def pacer_for(registry: Registry, task_id: str = "t1", policy: PollPolicy = NET) -> CallbackPacer:
    """The pacer of a wait on ``task_id``, which must expect a callback."""
    pacer = registry.pacer(task_id, policy, Lifecycle())
    assert pacer is not None
    return pacer


def record(registry: Registry, *, hits: int = 0, misses: int = 0) -> None:
    """Record hit and miss outcomes through callbacks and polls."""
    for n in range(hits):
        slot = bound(registry, f"hit-{n}-{time.monotonic_ns()}")
        registry.hint(slot.token, task(slot.task_id or ""))
    for n in range(misses):
        slot = bound(registry, f"miss-{n}-{time.monotonic_ns()}")
        registry.saw_terminal(slot)


# ---------------------------------------------------------------- tokens


def test_issued_tokens_are_distinct_and_found() -> None:
    """Every slot gets its own ``key.secret`` token, which finds that slot."""
    registry = make_registry()
    slots = [registry.issue() for _ in range(50)]
    assert len({slot.token for slot in slots}) == 50
    assert all(registry.find(slot.token) is slot for slot in slots)
    assert all(len(slot.token) == 49 for slot in slots)
    assert len(registry) == 50


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda s: f"{s.key}.{s.secret[:-1]}{flip(s.secret[-1])}", id="wrong-secret"),
        pytest.param(lambda s: f"{s.key}.", id="empty-secret"),
        pytest.param(lambda s: s.key, id="no-secret"),
        pytest.param(lambda s: f"0000000000000000.{s.secret}", id="unknown-key"),
        pytest.param(lambda s: "", id="empty"),
        pytest.param(lambda s: ".", id="dot"),
        pytest.param(lambda s: s.token + "x", id="suffix"),
        pytest.param(lambda s: f"{s.secret}.{s.key}", id="swapped"),
    ],
)
def test_forged_tokens_find_nothing(forge: Any) -> None:
    """A token that is not exactly a live slot's finds nothing."""
    registry = make_registry()
    slot = registry.issue()
    assert registry.find(forge(slot)) is None


def test_discarded_token_finds_nothing() -> None:
    """A discarded slot's token no longer finds it."""
    registry = make_registry()
    slot = registry.issue()
    registry.discard(slot)
    assert registry.find(slot.token) is None
    assert len(registry) == 0


def test_expired_tokens_are_purged_on_issue() -> None:
    """Slots past their ttl are dropped when the next one is issued."""
    registry = make_registry(ttl=0.001)
    old = registry.issue()
    time.sleep(0.005)
    new = registry.issue()
    assert registry.find(old.token) is None
    assert registry.find(new.token) is new


def test_oldest_tokens_are_dropped_beyond_max_slots() -> None:
    """With ``max_slots`` live, issuing drops the oldest slot."""
    registry = make_registry(max_slots=2)
    first, second, third = registry.issue(), registry.issue(), registry.issue()
    assert registry.find(first.token) is None
    assert registry.find(second.token) is second and registry.find(third.token) is third
    assert len(registry) == 2


def test_purged_slot_is_forgotten_by_its_task() -> None:
    """A purged slot's task expects no callback any more."""
    registry = make_registry(max_slots=1)
    bound(registry, "t1")
    registry.issue()
    assert registry.pacer("t1", NET, Lifecycle()) is None


# ---------------------------------------------------------------- binding and discarding


def test_binding_ties_the_task_to_a_pacer() -> None:
    """Once bound, a wait on the task gets a pacer; other tasks do not."""
    registry = make_registry()
    bound(registry, "t1")
    assert isinstance(registry.pacer("t1", NET, Lifecycle()), CallbackPacer)
    assert registry.pacer("t2", NET, Lifecycle()) is None


def test_binding_a_discarded_slot_does_nothing() -> None:
    """A slot discarded before its submit answered is not bound."""
    registry = make_registry()
    slot = registry.issue()
    registry.discard(slot)
    registry.bind(slot, "t1", trusted=True)
    assert slot.task_id is None
    assert registry.pacer("t1", NET, Lifecycle()) is None


@pytest.mark.parametrize(("answer", "trusted"), [(True, True), (False, False)])
def test_binding_trusts_only_tasks_this_submit_created(answer: bool, trusted: bool) -> None:
    """A task named by a 409 (not by the submit's answer) is bound but not trusted."""
    registry = make_registry()
    assert bound(registry, "t1", answer=answer).trusted is trusted


def test_discarding_a_task_slot_forgets_the_task() -> None:
    """Discarding a bound slot removes its task's pacer."""
    registry = make_registry()
    slot = bound(registry, "t1")
    registry.discard(slot)
    assert registry.pacer("t1", NET, Lifecycle()) is None


def test_discarding_a_superseded_slot_keeps_the_newer_one() -> None:
    """Discarding an older slot of a task leaves the newer slot's binding."""
    registry = make_registry()
    old = bound(registry, "t1")
    new = bound(registry, "t1")
    registry.discard(old)
    registry.hint(new.token, task("t1"))
    assert new.generation == 1
    assert registry.pacer("t1", NET, Lifecycle()) is not None


# ---------------------------------------------------------------- hints

HINT_TABLE = [
    pytest.param("bad", "t1", TaskStatus.FINISHED, "unknown token", id="unknown-token"),
    pytest.param("good", "t1", TaskStatus.NOT_STARTED, "not terminal", id="not-started"),
    pytest.param("good", "t1", TaskStatus.RUNNING, "not terminal", id="running"),
    pytest.param("good", "t2", TaskStatus.FINISHED, "other task", id="other-task"),
    pytest.param("good", "t1", TaskStatus.FINISHED, "hint", id="finished"),
    pytest.param("good", "t1", TaskStatus.FAILED, "hint", id="failed"),
    pytest.param("good", "t1", TaskStatus.UNKNOWN, "hint", id="unknown-status"),
]


@pytest.mark.parametrize(("which", "task_id", "status", "outcome"), HINT_TABLE)
def test_hint_outcomes(which: str, task_id: str, status: TaskStatus, outcome: str) -> None:
    """A callback wakes its slot only with its token, its task and a settled status."""
    registry = make_registry()
    slot = bound(registry, "t1")
    token = slot.token if which == "good" else slot.key + ".nope"
    assert registry.hint(token, task(task_id, status)) == outcome
    assert slot.generation == (1 if outcome == "hint" else 0)


def test_repeated_hint_is_a_duplicate() -> None:
    """A second callback before the confirming read changes nothing."""
    registry = make_registry()
    slot = bound(registry, "t1")
    registry.hint(slot.token, task("t1"))
    assert registry.hint(slot.token, task("t1")) == "duplicate"
    assert slot.generation == 1


def test_hint_before_binding_is_kept_as_early() -> None:
    """A callback that beats the submit answer is remembered, then honoured at binding."""
    registry = make_registry()
    slot = registry.issue()
    assert registry.hint(slot.token, task("t1")) == "early"
    registry.bind(slot, "t1", trusted=True)
    assert slot.generation == 1
    assert slot.early == []


def test_early_hint_for_another_task_is_dropped_at_binding() -> None:
    """An early callback naming a task other than the submit's wakes nothing."""
    registry = make_registry()
    slot = registry.issue()
    registry.hint(slot.token, task("forged"))
    registry.bind(slot, "t1", trusted=True)
    assert slot.generation == 0
    assert slot.early == []


def test_early_task_ids_are_deduplicated_and_capped() -> None:
    """Early callbacks remember each task id once, and at most four of them."""
    registry = make_registry()
    slot = registry.issue()
    for task_id in ["a", "a", "b", "c", "d", "e", "f"]:
        assert registry.hint(slot.token, task(task_id)) == "early"
    assert slot.early == ["a", "b", "c", "d"]


def test_early_hint_past_the_cap_still_earns_a_confirming_read() -> None:
    """The real task's early callback past four forged ids is not remembered, but a full
    list wakes the slot at binding: its confirming read tells (forgeries cannot hide it)."""
    registry = make_registry()
    slot = registry.issue()
    for task_id in ["f1", "f2", "f3", "f4", "t1"]:
        registry.hint(slot.token, task(task_id))
    registry.bind(slot, "t1", trusted=True)
    assert slot.generation == 1


def test_fewer_forged_early_hints_than_the_cap_wake_nothing() -> None:
    """Early callbacks naming only other tasks, fewer than the cap, cost no read."""
    registry = make_registry()
    slot = registry.issue()
    for task_id in ["f1", "f2", "f3"]:
        registry.hint(slot.token, task(task_id))
    registry.bind(slot, "t1", trusted=True)
    assert slot.generation == 0


@pytest.mark.asyncio
async def test_hint_wakes_pending_waiters_and_skips_settled_ones() -> None:
    """A hint resolves the slot's pending waiters; already-settled ones are left alone."""
    registry = make_registry()
    slot = bound(registry, "t1")
    loop = asyncio.get_running_loop()
    settled, pending = loop.create_future(), loop.create_future()
    settled.set_result(None)
    slot.waiters.update({settled, pending})
    registry.hint(slot.token, task("t1"))
    assert pending.done()


# ---------------------------------------------------------------- reliability


def test_fresh_registry_is_reliable() -> None:
    """With no outcomes yet, callbacks are presumed to arrive."""
    assert make_registry().reliable


@pytest.mark.parametrize(
    ("hits", "misses", "reliable"),
    [
        (1, 0, True),
        (0, 1, False),
        (1, 1, True),
        (1, 2, False),
        (10, 2, True),
        (10, 3, False),  # three misses in a row: callbacks stopped
        (9, 11, False),
    ],
)
def test_reliable_while_misses_do_not_outnumber_hits(
    hits: int, misses: int, reliable: bool
) -> None:
    """Reliability is hits >= misses over recent outcomes, the latest three not all
    misses (hits, then misses, recorded in that order)."""
    registry = make_registry()
    record(registry, hits=hits, misses=misses)
    assert registry.reliable is reliable


def test_a_short_run_of_lost_callbacks_polls_without_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three lost callbacks in a row among many that came send waits back to polling,
    but warn of nothing: a lossy path (3 in 10 lost) warned dozens of times per thousand
    tasks that "most tasks" finished without one. Most of them lost: one warning."""
    registry = make_registry()
    with caplog.at_level(logging.WARNING, logger="vidgo_async"):
        record(registry, hits=15, misses=3)
        assert not registry.reliable
        record(registry, hits=1)
        assert registry.reliable
        assert caplog.records == []
        record(registry, misses=20)
    assert len(caplog.records) == 1


def test_only_the_last_twenty_outcomes_count() -> None:
    """Old misses fall out of the window as new hits come in."""
    registry = make_registry()
    record(registry, misses=20)
    record(registry, hits=10)
    assert registry.reliable


def test_untrusted_hint_records_no_hit() -> None:
    """A callback for a 409-named task wakes its wait but is not counted as a hit."""
    registry = make_registry()
    slot = bound(registry, "t1", answer=False)
    assert registry.hint(slot.token, task("t1")) == "hint"
    record(registry, misses=1)
    assert not registry.reliable  # the miss alone counts
    assert slot.generation == 1


def test_untrusted_terminal_poll_records_no_miss() -> None:
    """A poll finding a 409-named task finished is not counted as a miss."""
    registry = make_registry()
    registry.saw_terminal(bound(registry, "t1", answer=False))
    record(registry, hits=1, misses=1)
    assert registry.reliable  # one hit, one miss: nothing else was counted
    assert registry.pacer("t1", NET, Lifecycle()) is None


def test_terminal_poll_after_a_hint_is_no_miss() -> None:
    """A poll confirming a hinted task records nothing more and forgets the slot."""
    registry = make_registry()
    slot = bound(registry, "t1")
    registry.hint(slot.token, task("t1"))
    registry.saw_terminal(slot)
    record(registry, misses=1)
    assert registry.reliable  # one hit, one miss
    assert registry.pacer("t1", NET, Lifecycle()) is None


@pytest.mark.asyncio
async def test_turning_unreliable_wakes_stretched_naps() -> None:
    """When misses start to outnumber hits, naps on the safety net are cut short."""
    registry = make_registry()
    napping = asyncio.get_running_loop().create_future()
    registry.napping.add(napping)
    record(registry, misses=1)
    assert napping.done()


@pytest.mark.asyncio
async def test_staying_unreliable_wakes_nothing_more() -> None:
    """Further misses while already unreliable leave later naps alone."""
    registry = make_registry()
    record(registry, misses=1)
    napping = asyncio.get_running_loop().create_future()
    registry.napping.add(napping)
    record(registry, misses=1)
    assert not napping.done()
    napping.cancel()


@pytest.mark.asyncio
async def test_nap_woken_twice_in_one_tick_is_harmless() -> None:
    """A hint and a reliability drop settling the same nap at once report the hint."""
    registry = make_registry()
    record(registry, misses=1)
    record(registry, hits=1)  # one each: reliable
    slot = bound(registry)
    pacer = pacer_for(registry)
    pacer.delay(0.01, Deadline())  # stretched
    nap = asyncio.ensure_future(pacer.nap(60.0))
    await asyncio.sleep(0)
    registry.hint(slot.token, task("t1"))  # a hit: two hits, one miss
    record(registry, misses=2)  # now unreliable: settles the already-woken nap again
    assert not registry.reliable
    assert await asyncio.wait_for(nap, timeout=5.0) is True


# ---------------------------------------------------------------- the pacer


def test_pacer_stretches_to_the_safety_net() -> None:
    """While reliable, the next poll waits about ``callback_interval``."""
    registry = make_registry()
    bound(registry)
    delays = [pacer_for(registry).delay(0.5, Deadline()) for _ in range(100)]
    assert all(9.0 <= delay <= 10.0 for delay in delays)


def test_pacer_keeps_a_longer_schedule() -> None:
    """A normal schedule longer than the safety net is kept."""
    registry = make_registry()
    bound(registry)
    assert pacer_for(registry).delay(30.0, Deadline()) == 30.0


def test_pacer_keeps_a_poll_inside_the_deadline() -> None:
    """The safety net is cut to half the time left before the deadline."""
    registry = make_registry()
    bound(registry)
    delay = pacer_for(registry).delay(0.01, Deadline(time.monotonic() + 4.0))
    assert 1.0 < delay <= 2.0


def test_pacer_far_deadline_does_not_cut_the_safety_net() -> None:
    """A deadline far beyond the safety net leaves it as is."""
    registry = make_registry()
    bound(registry)
    assert 9.0 <= pacer_for(registry).delay(0.01, Deadline(time.monotonic() + 3600)) <= 10.0


def test_untrusted_task_keeps_the_normal_schedule() -> None:
    """A 409-named task may not carry our URL: it is polled normally."""
    registry = make_registry()
    bound(registry, "t1", answer=False)
    assert pacer_for(registry).delay(0.5, Deadline()) == 0.5


def test_unreliable_receiver_keeps_the_normal_schedule() -> None:
    """While callbacks are being lost, waits poll normally."""
    registry = make_registry()
    bound(registry)
    record(registry, misses=1)
    assert pacer_for(registry).delay(0.5, Deadline()) == 0.5


def test_terminal_answer_ends_stretching() -> None:
    """After a poll saw the task terminal, the normal schedule applies."""
    registry = make_registry()
    bound(registry)
    pacer = pacer_for(registry)
    pacer.observe(task("t1"))
    assert pacer.delay(0.5, Deadline()) == 0.5


@pytest.mark.asyncio
async def test_nap_returns_false_when_it_runs_out() -> None:
    """A nap with no callback lasts its time and reports no hint."""
    registry = make_registry()
    bound(registry)
    assert await pacer_for(registry).nap(0.01) is False


@pytest.mark.asyncio
async def test_nap_returns_at_once_after_an_earlier_hint() -> None:
    """A hint that came between naps is reported by the next nap without sleeping."""
    registry = make_registry()
    slot = bound(registry)
    pacer = pacer_for(registry)
    registry.hint(slot.token, task("t1"))
    assert await asyncio.wait_for(pacer.nap(60.0), timeout=5.0) is True


@pytest.mark.asyncio
async def test_nap_is_cut_short_by_a_hint() -> None:
    """A callback during a nap ends it and is reported."""
    registry = make_registry()
    slot = bound(registry)
    pacer = pacer_for(registry)
    pacer.delay(0.01, Deadline())
    nap = asyncio.ensure_future(pacer.nap(60.0))
    await asyncio.sleep(0)
    assert registry.hint(slot.token, task("t1")) == "hint"
    assert await asyncio.wait_for(nap, timeout=5.0) is True
    assert not slot.waiters and not registry.napping


@pytest.mark.asyncio
async def test_stretched_nap_ends_when_callbacks_stop_arriving() -> None:
    """A nap on the safety net ends, unhinted, when the receiver turns unreliable."""
    registry = make_registry()
    bound(registry)
    pacer = pacer_for(registry)
    pacer.delay(0.01, Deadline())  # stretched
    nap = asyncio.ensure_future(pacer.nap(60.0))
    await asyncio.sleep(0)
    assert registry.napping
    record(registry, misses=1)
    assert await asyncio.wait_for(nap, timeout=5.0) is False


@pytest.mark.asyncio
async def test_unstretched_nap_is_not_on_the_safety_net() -> None:
    """A nap on the normal schedule is not cut short by a reliability change."""
    registry = make_registry()
    bound(registry, "t1", answer=False)
    pacer = pacer_for(registry)
    pacer.delay(0.01, Deadline())  # untrusted: not stretched
    nap = asyncio.ensure_future(pacer.nap(0.03))
    await asyncio.sleep(0)
    assert not registry.napping
    assert await asyncio.wait_for(nap, timeout=5.0) is False


@pytest.mark.asyncio
async def test_refuted_hint_re_arms_the_slot() -> None:
    """A poll that finds the task still running re-arms the slot for a real callback."""
    registry = make_registry()
    slot = bound(registry)
    pacer = pacer_for(registry)
    registry.hint(slot.token, task("t1"))
    assert await pacer.nap(60.0) is True
    pacer.observe(task("t1", TaskStatus.RUNNING))
    assert registry.hint(slot.token, task("t1")) == "hint"


def test_hint_after_the_last_nap_is_not_refuted_by_an_older_read() -> None:
    """A read that started before an unseen hint does not re-arm the slot."""
    registry = make_registry()
    slot = bound(registry)
    pacer = pacer_for(registry)
    registry.hint(slot.token, task("t1"))
    pacer.observe(task("t1", TaskStatus.RUNNING))
    assert registry.hint(slot.token, task("t1")) == "duplicate"


def test_terminal_poll_without_a_callback_is_a_miss() -> None:
    """A poll seeing the task finished before any callback records a miss and frees the slot."""
    registry = make_registry()
    bound(registry)
    pacer_for(registry).observe(task("t1"))
    assert not registry.reliable
    assert len(registry) == 0


def test_repeated_terminal_answers_count_once() -> None:
    """Only the first terminal answer a pacer sees is recorded."""
    registry = make_registry()
    record(registry, hits=1)
    bound(registry)
    pacer = pacer_for(registry)
    pacer.observe(task("t1"))
    pacer.observe(task("t1"))
    assert registry.reliable  # one hit, one miss


# ---------------------------------------------------------------- parse_callback

REFUSED_BODIES = [
    pytest.param(b"", 400, id="empty"),
    pytest.param(b"{not json", 400, id="not-json"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, 413, id="deep-over-cap"),
    pytest.param(b"[" * 30_000 + b"]" * 30_000, 400, id="deep-nesting"),
    pytest.param(b"[1, 2]", 400, id="array"),
    pytest.param(b'"finished"', 400, id="string"),
    pytest.param(b"null", 400, id="null"),
    pytest.param(b'{"code": 500, "data": {"task_id": "t1", "status": "failed"}}', 400, id="code"),
    pytest.param(b'{"code": "oops", "data": {"task_id": "t1"}}', 400, id="code-junk"),
    pytest.param(b'{"code": 200, "data": "t1"}', 400, id="data-not-object"),
    pytest.param(body(task_id=None), 400, id="no-task-id"),
    pytest.param(body(task_id=True), 400, id="bool-task-id"),
    pytest.param(body(task_id=1.5), 400, id="float-task-id"),
    pytest.param(body(task_id=["t1"]), 400, id="list-task-id"),
    pytest.param(body(task_id=""), 400, id="empty-task-id"),
    pytest.param(body(task_id="x" * 10_000), 400, id="long-task-id"),
    pytest.param(body(status=None), 400, id="no-status"),
    pytest.param(body(status=3), 400, id="int-status"),
    pytest.param(b"\xff\xfe junk", 400, id="not-utf8"),
    pytest.param(b" " * (MAX_BODY + 1), 413, id="over-cap"),
]


@pytest.mark.parametrize(("raw", "status"), REFUSED_BODIES)
def test_parse_callback_refuses(raw: bytes, status: int) -> None:
    """Bodies that are oversized or not a task description raise with 413 or 400."""
    with pytest.raises(InvalidCallbackError) as info:
        parse_callback(raw)
    assert info.value.status == status


ACCEPTED_BODIES = [
    pytest.param(body(), "t1", id="wrapped"),
    pytest.param(b'{"task_id": "t1", "status": "finished"}', "t1", id="bare"),
    pytest.param(b'{"code": "200", "data": {"task_id": "t1", "status": "x"}}', "t1", id="code-str"),
    pytest.param(b'{"data": {"task_id": "t1", "status": "finished"}}', "t1", id="no-code"),
    pytest.param(body(task_id=42), "42", id="int-task-id"),
    pytest.param(
        b'{"task_id": "t1", "status": "finished", "data": {"task_id": "t2", "status": "x"}}',
        "t1",
        id="bare-with-data-key",
    ),
]


@pytest.mark.parametrize(("raw", "task_id"), ACCEPTED_BODIES)
def test_parse_callback_accepts(raw: bytes, task_id: str) -> None:
    """Wrapped and bare task descriptions parse to the task they name."""
    assert parse_callback(raw).task_id == task_id


def test_parse_callback_body_at_the_cap_is_accepted() -> None:
    """A body of exactly ``max_body`` bytes is within the cap."""
    raw = body()
    padded = raw[:-1] + b" " * (200 - len(raw)) + raw[-1:]
    assert parse_callback(padded, max_body=200).task_id == "t1"
    with pytest.raises(InvalidCallbackError):
        parse_callback(padded + b" ", max_body=200)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        pytest.param({"Content-Length": str(MAX_BODY + 1)}, 413, id="declared-over-cap"),
        pytest.param({"content-length": str(MAX_BODY + 1)}, 413, id="lower-case-name"),
        pytest.param({"CONTENT-LENGTH": "99999999999999999999"}, 413, id="huge"),
        # past int()'s 4,300-digit limit: a ValueError of Python's own before
        pytest.param({"Content-Length": "1" + "0" * 4400}, 413, id="past-int-digit-limit"),
        pytest.param({"Content-Length": "0" * 4400 + str(len(body()))}, None, id="zeros-then-size"),
        pytest.param({"Content-Length": "abc"}, 400, id="junk"),
        pytest.param({"Content-Length": "-1"}, 400, id="negative"),
        pytest.param({"Content-Length": "1.5"}, 400, id="fraction"),
        pytest.param({"Content-Length": ""}, 400, id="empty"),
    ],
)
def test_declared_length_is_checked_before_the_body(
    headers: dict[str, str], status: int | None
) -> None:
    """A Content-Length over the cap or unusable is refused without parsing the body
    (a small one of many leading zeros is only a small one)."""
    if status is None:
        assert parse_callback(body(), headers).task_id == "t1"
        return
    with pytest.raises(InvalidCallbackError) as info:
        parse_callback(body(), headers)
    assert info.value.status == status


@pytest.mark.parametrize("length", ["\u00b2", "\u2460"])
def test_unicode_digit_content_length_is_a_400(length: str) -> None:
    """A Content-Length of non-ASCII 'digits' is an unusable length: 400, not a crash."""
    with pytest.raises(InvalidCallbackError) as info:
        parse_callback(body(), {"Content-Length": length})
    assert type(info.value) is InvalidCallbackError and info.value.status == 400


def test_feed_answers_400_for_a_unicode_digit_content_length() -> None:
    """feed answers 400 (it never raises) for a Content-Length of non-ASCII digits."""
    receiver, slot = receiver_with_slot()
    assert receiver.feed(slot.token, body(), {"Content-Length": "\u00b2"}) == 400


@pytest.mark.parametrize("headers", [None, {}, {"Content-Type": "application/json"}])
def test_missing_content_length_is_fine(headers: dict[str, str] | None) -> None:
    """Without a Content-Length header only the actual body size counts."""
    assert parse_callback(body(), headers).task_id == "t1"


# ---------------------------------------------------------------- CallbackReceiver.feed


def receiver_with_slot(task_id: str = "t1", **kwargs: Any) -> tuple[CallbackReceiver, Slot]:
    """A receiver and a slot bound to ``task_id``, as after a submit with its URL."""
    receiver = CallbackReceiver(PUBLIC, **kwargs)
    registry = registry_of(receiver)
    assert registry is not None
    return receiver, bound(registry, task_id)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(lambda t: t, id="token"),
        pytest.param(lambda t: f"{DEFAULT_PATH}/{t}", id="path"),
        pytest.param(lambda t: f"{PUBLIC}{DEFAULT_PATH}/{t}/", id="url-trailing-slash"),
    ],
)
def test_feed_accepts_the_token_in_any_form(path: Any) -> None:
    """feed takes the token alone, a path or a URL ending in it, and wakes the slot."""
    receiver, slot = receiver_with_slot()
    assert receiver.feed(path(slot.token), body()) == 200
    assert slot.generation == 1


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda t: t + "x" * 1000, id="overlong"),
        pytest.param(lambda t: t.split(".")[0] + "." + "A" * 32, id="guessed-secret"),
        pytest.param(lambda t: "", id="empty"),
        pytest.param(lambda t: t + "/extra", id="extra-segment"),
    ],
)
def test_feed_acknowledges_forged_tokens_and_wakes_nothing(token: Any) -> None:
    """A forged token gets the same 200 as a real one but wakes nothing."""
    receiver, slot = receiver_with_slot()
    assert receiver.feed(token(slot.token), body()) == 200
    assert slot.generation == 0


def test_feed_acknowledges_other_tasks_and_repeats_alike() -> None:
    """Another task's id and a repeat both get 200 and change nothing more."""
    receiver, slot = receiver_with_slot()
    assert receiver.feed(slot.token, body(task_id="t2")) == 200
    assert slot.generation == 0
    assert receiver.feed(slot.token, body()) == 200
    assert receiver.feed(slot.token, body()) == 200
    assert slot.generation == 1


@pytest.mark.parametrize(
    ("raw", "headers", "status"),
    [
        pytest.param(b"{", None, 400, id="malformed"),
        pytest.param(body(), {"Content-Length": "nope"}, 400, id="junk-length"),
        pytest.param(body(), {"Content-Length": "101"}, 413, id="declared-over-cap"),
        pytest.param(body(extra="x" * 100), None, 413, id="body-over-cap"),
    ],
)
def test_feed_refuses_bad_bodies_with_a_real_token(
    raw: bytes, headers: dict[str, str] | None, status: int
) -> None:
    """Malformed or oversized callbacks are refused and wake nothing, even with a real token."""
    receiver, slot = receiver_with_slot(max_body=100)
    assert receiver.feed(slot.token, raw, headers) == status
    assert slot.generation == 0


# ---------------------------------------------------------------- CallbackReceiver.handler


@pytest_asyncio.fixture
async def served() -> AsyncIterator[tuple[CallbackReceiver, str, aiohttp.ClientSession]]:
    """A receiver (1 KiB cap) served locally, its local URL and an HTTP session."""
    receiver = CallbackReceiver(max_body=1024)
    async with receiver.serve() as url, aiohttp.ClientSession() as http:
        yield receiver, url, http


async def chunked(size: int) -> AsyncIterator[bytes]:
    """A body of ``size`` spaces streamed in chunks (no Content-Length)."""
    for _ in range(size // 256):
        yield b" " * 256


@pytest.mark.asyncio
async def test_handler_wakes_the_slot_of_a_posted_callback(
    served: tuple[CallbackReceiver, str, aiohttp.ClientSession],
) -> None:
    """A real POST with a live token wakes its slot and is answered 200."""
    receiver, _, http = served
    registry = registry_of(receiver)
    assert registry is not None
    slot = bound(registry, "t1")
    async with http.post(registry.url_for(slot.token), data=body()) as answer:
        assert answer.status == 200
        assert (await answer.json())["code"] == 200
    assert slot.generation == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(b" " * 1025, 413, id="declared-over-cap"),
        pytest.param(b"{", 400, id="malformed"),
        pytest.param(body(), 200, id="unknown-token"),
    ],
)
async def test_handler_answers_by_body(
    served: tuple[CallbackReceiver, str, aiohttp.ClientSession], data: bytes, status: int
) -> None:
    """The handler answers 413 for oversized, 400 for malformed, 200 for the rest."""
    _, url, http = served
    async with http.post(f"{url}{DEFAULT_PATH}/some.token", data=data) as answer:
        assert answer.status == status


@pytest.mark.asyncio
@pytest.mark.parametrize(("size", "status"), [(2048, 413), (512, 400)])
async def test_handler_caps_streamed_bodies(
    served: tuple[CallbackReceiver, str, aiohttp.ClientSession], size: int, status: int
) -> None:
    """A chunked body is cut off at the cap while it streams."""
    _, url, http = served
    async with http.post(f"{url}{DEFAULT_PATH}/some.token", data=chunked(size)) as answer:
        assert answer.status == status


# ---------------------------------------------------------------- receiver settings


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"max_body": 0}, id="zero-body"),
        pytest.param({"max_body": -1}, id="negative-body"),
        pytest.param({"max_body": 1.5}, id="float-body"),
        pytest.param({"max_tokens": 0}, id="zero-tokens"),
        pytest.param({"max_tokens": "10"}, id="str-tokens"),
        pytest.param({"token_ttl": 0}, id="zero-ttl"),
        pytest.param({"token_ttl": -5.0}, id="negative-ttl"),
        pytest.param({"token_ttl": math.nan}, id="nan-ttl"),
        pytest.param({"token_ttl": "60"}, id="str-ttl"),
        pytest.param({"path": "vidgo"}, id="relative-path"),
        pytest.param({"path": ""}, id="empty-path"),
        pytest.param({"path": "/a/{token}"}, id="brace-path"),
        pytest.param({"path": "/a?b=1"}, id="query-path"),
        pytest.param({"path": "/a b"}, id="space-path"),
        pytest.param({"path": "/a%2F"}, id="percent-path"),
        pytest.param({"path": 5}, id="int-path"),
    ],
)
def test_receiver_refuses_bad_settings(kwargs: dict[str, Any]) -> None:
    """Unusable caps, ttls and paths raise ValueError at construction."""
    with pytest.raises(ValueError):
        CallbackReceiver(PUBLIC, **kwargs)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://[::1", id="unparsable"),
        pytest.param("https://x.example:99999", id="bad-port"),
        pytest.param("/relative", id="relative"),
        pytest.param("https://", id="no-host"),
        pytest.param("https://x.example/?a=1", id="query"),
        pytest.param("https://x.example/#f", id="fragment"),
        pytest.param("https://user@x.example", id="user"),
        pytest.param("http://x.example", id="plain-http"),
        pytest.param("ftp://x.example", id="ftp"),
        pytest.param("https://x.example/" + "a" * 2048, id="too-long"),
    ],
)
def test_receiver_refuses_unusable_public_urls(url: str) -> None:
    """public_url must be a plain absolute https URL short enough for a callback URL."""
    with pytest.raises(ValueError):
        CallbackReceiver(url)


def test_receiver_refuses_a_non_string_public_url() -> None:
    """public_url of another type is a TypeError."""
    with pytest.raises(TypeError):
        CallbackReceiver(b"https://x.example")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    ["https://x.example", "https://x.example/hooks/", "http://127.0.0.1:8080", "http://localhost"],
)
def test_receiver_accepts_https_and_loopback_http(url: str) -> None:
    """https anywhere and http on loopback are accepted; a trailing slash is dropped."""
    receiver = CallbackReceiver(url)
    assert receiver.public_url == url.rstrip("/")
    registry = registry_of(receiver)
    assert registry is not None
    slot = registry.issue()
    assert registry.url_for(slot.token) == f"{url.rstrip('/')}{DEFAULT_PATH}/{slot.token}"


# ---------------------------------------------------------------- receiver with a client


@pytest.mark.asyncio
async def test_client_submits_carry_a_token_the_receiver_tracks(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """A client with a receiver sends a fresh callback URL per submit, each pending."""
    receiver = CallbackReceiver(PUBLIC)
    client = make_client(callbacks=receiver)
    await client.submit_wav("p", "a1")
    await client.submit_wav("p", "a2")
    urls = [request.json["callback_url"] for request in fake.requests_to("submit")]
    assert all(url.startswith(f"{PUBLIC}{DEFAULT_PATH}/") for url in urls)
    assert len(set(urls)) == 2
    assert receiver.pending == 2
    assert receiver.reliable


@pytest.mark.asyncio
async def test_explicit_callback_url_issues_no_token(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """A submit given its own callback_url keeps it and issues nothing."""
    receiver = CallbackReceiver(PUBLIC)
    client = make_client(callbacks=receiver)
    await client.submit_wav("p", "a", callback_url="https://mine.example/cb")
    assert fake.requests_to("submit")[0].json["callback_url"] == "https://mine.example/cb"
    assert receiver.pending == 0


@pytest.mark.asyncio
async def test_failed_submit_discards_its_token(fake: FakeVidgo, make_client: MakeClient) -> None:
    """A submit that fails leaves no token behind."""
    receiver = CallbackReceiver(PUBLIC)
    client = make_client(callbacks=receiver)
    fake.inject(Fault.http_error(400, {"message": "no"}), route="submit")
    with pytest.raises(VidgoError):
        await client.submit_wav("p", "a")
    assert receiver.pending == 0


@pytest.mark.asyncio
async def test_unserved_receiver_without_public_url_cannot_issue(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """Without a public URL or serve(), a submit fails before any request."""
    receiver = CallbackReceiver()
    client = make_client(callbacks=receiver)
    with pytest.raises(ConfigurationError, match="no public_url"):
        await client.submit("separate-vocals", {"task_id": "p", "audio_id": "a"})
    assert receiver.pending == 0
    assert fake.request_count("submit") == 0


@pytest.mark.parametrize(
    ("value", "ok"), [(None, True), ("https://x.example", False), (object(), False)]
)
def test_registry_of_takes_a_receiver_or_none(value: object, ok: bool) -> None:
    """registry_of maps None to None and refuses anything but a CallbackReceiver."""
    if ok:
        assert registry_of(value) is None
    else:
        with pytest.raises(TypeError, match="CallbackReceiver"):
            registry_of(value)
