"""convert_many against a hostile server: never a second creation, journal, account refusals."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from vidgo_async import (
    APIError,
    ConversionResult,
    RetryPolicy,
    SubmitOutcomeUnknownError,
    TaskTimeoutError,
    Timeouts,
    VidgoClient,
)

from .server import (
    DETAIL,
    FILE,
    SUBMIT,
    Conn,
    HostileServer,
    Request,
    default,
    encode,
    gate,
    reply,
    reset,
    wav_bytes,
)

PAIRS = [("parent-1", f"track-{i}") for i in range(6)]


async def run(batch: AsyncIterator[ConversionResult], limit: float = 8) -> list[ConversionResult]:
    async def collect() -> list[ConversionResult]:
        return [result async for result in batch]

    return await asyncio.wait_for(collect(), limit)


@pytest.mark.asyncio
async def test_resets_after_creation_never_create_twice(
    server: HostileServer, sdk: VidgoClient, tmp_path: Path
) -> None:
    """Every submit reset after its creation is settled by the 409 naming it: one creation each."""
    server.script(SUBMIT, *[reset() for _ in PAIRS])
    results = await run(sdk.convert_many(PAIRS, timeout=3, journal=tmp_path / "j.sqlite"))
    assert sorted(r.audio_id for r in results if r.ok) == sorted(a for _, a in PAIRS)
    assert set(server.creations.values()) == {1}
    wav_of = {server.tasks[t].audio_id: f"{server.url}/files/{t}.wav" for t in server.tasks}
    assert all(r.wav_url == wav_of[r.audio_id] for r in results)


@pytest.mark.asyncio
async def test_rerun_never_resubmits_an_unknown_outcome(
    server: HostileServer, make_sdk: Any, tmp_path: Path
) -> None:
    """A pair left SubmitOutcomeUnknown is never submitted again by a re-run with the journal."""
    journal = tmp_path / "j.sqlite"
    pair = [PAIRS[0]]
    server.script(SUBMIT, reset(), reply(409, {"code": 409, "message": "converted"}))
    first = await run(make_sdk().convert_many(pair, timeout=2, journal=journal))
    assert isinstance(first[0].error, SubmitOutcomeUnknownError)
    submits = len(server.hits(SUBMIT))
    again = await run(make_sdk().convert_many(pair, timeout=2, journal=journal))
    assert isinstance(again[0].error, SubmitOutcomeUnknownError)
    assert len(server.hits(SUBMIT)) == submits
    assert server.creations[PAIRS[0][1]] == 1


@pytest.mark.parametrize("status", [401, 402, 403])
@pytest.mark.asyncio
async def test_account_refusal_stops_the_batch_submits(
    server: HostileServer, sdk: VidgoClient, status: int, tmp_path: Path
) -> None:
    """401, 402 or 403 on a submit stops the batch's submits at once (one worker: one
    submit), and every pair's result says why; the journal leaves them to a re-run."""
    server.script(SUBMIT, *[reply(status, {"code": status, "message": "no"}) for _ in PAIRS])
    journal = tmp_path / "j.sqlite"
    results = await run(sdk.convert_many(PAIRS, concurrency=1, timeout=3, journal=journal))
    assert len(results) == len(PAIRS)
    assert all(isinstance(r.error, APIError) and r.error.status == status for r in results)
    assert len(server.hits(SUBMIT)) == 1
    server.unscript(SUBMIT)
    again = await run(sdk.convert_many(PAIRS, concurrency=1, timeout=3, journal=journal))
    assert all(r.ok for r in again), [r.error for r in again]
    assert sorted(server.creations) == sorted(audio for _, audio in PAIRS)


@pytest.mark.asyncio
async def test_a_submit_waiting_out_a_pause_is_not_sent_once_the_account_is_refused(
    server: HostileServer, make_sdk: Any, tmp_path: Path
) -> None:
    """A pair whose submit waits out a 429's pause sends nothing once another pair's
    submit met 402: its result is that refusal, and a re-run submits it."""
    sdk = make_sdk(retry=RetryPolicy(base_delay=0.05, max_delay=0.1, max_retry_after=3))
    no_credits = reply(402, {"code": 402, "message": "no credits"})
    slow_down = reply(429, {"code": 429, "message": "slow down"}, [("Retry-After", "1")])
    server.script(SUBMIT, slow_down, *[no_credits for _ in PAIRS])
    journal = tmp_path / "j.sqlite"
    results = await run(sdk.convert_many(PAIRS, concurrency=3, timeout=5, journal=journal))
    assert all(isinstance(r.error, APIError) and r.error.status == 402 for r in results)
    assert len(server.hits(SUBMIT)) == 3  # the first three, at once; no retry after the pause
    server.unscript(SUBMIT)
    again = await run(sdk.convert_many(PAIRS, concurrency=3, timeout=3, journal=journal))
    assert all(r.ok for r in again), [r.error for r in again]


@pytest.mark.asyncio
async def test_duplicate_pairs_are_converted_once(server: HostileServer, sdk: VidgoClient) -> None:
    """A pair listed three times is submitted once and reported three times."""
    results = await run(sdk.convert_many([PAIRS[0]] * 3 + [PAIRS[1]], timeout=3))
    assert len(results) == 4 and all(r.ok for r in results)
    assert len(server.hits(SUBMIT)) == 2


def trickle(chunks: int = 8, pause: float = 0.03) -> Any:
    """The file, sent a chunk at a time: downloads of it overlap."""

    async def action(server: HostileServer, request: Request, conn: Conn) -> None:
        body = server.wav
        await conn.send(200, b"", [("Content-Type", "audio/wav")], length=len(body))
        step = -(-len(body) // chunks)
        for start in range(0, len(body), step):
            await asyncio.sleep(pause)
            await conn.write(body[start : start + step])

    return action


@pytest.mark.asyncio
async def test_one_track_under_two_parents_downloads_to_its_file_once_at_a_time(
    server: HostileServer, sdk: VidgoClient, tmp_path: Path
) -> None:
    """Two pairs of one audio id name one file: their downloads take turns, and both
    report it (they raced on one .part before, and one reported FileNotFoundError)."""
    server.wav = wav_bytes(frames=64 * 1024)
    server.script(FILE, trickle(), trickle())
    pairs = [("parent-1", "track-1"), ("parent-2", "track-1")]
    results = await run(sdk.convert_many(pairs, timeout=5, download_to=tmp_path))
    assert [r.error for r in results] == [None, None]
    assert {r.path for r in results} == {tmp_path / "track-1.wav"}
    assert (tmp_path / "track-1.wav").read_bytes() == server.wav
    assert sorted(p.name for p in tmp_path.iterdir()) == ["track-1.wav"]


@pytest.mark.asyncio
async def test_submits_paused_by_a_429_leave_room_for_the_polls_of_accepted_tasks(
    server: HostileServer, make_sdk: Any
) -> None:
    """Submits waiting out a 429's ``Retry-After`` are not requests in flight: the pairs
    already accepted go on being polled, and their results come while the submits wait.
    Before, each waiting submit held one of the batch's ``concurrency`` permits, so the
    pause starved every poll and an accepted task's result waited for the pause."""
    sdk = make_sdk(retry=RetryPolicy(base_delay=0.05, max_delay=0.1, max_retry_after=3))
    server.task_defaults["finish_after"] = 0.2
    slow_down = reply(429, {"code": 429, "message": "slow down"}, [("Retry-After", "3")])
    server.script(SUBMIT, default, slow_down)
    started = asyncio.get_running_loop().time()
    batch = sdk.convert_many(PAIRS[:3], concurrency=2, timeout=10)
    first = await asyncio.wait_for(anext(batch), 8)
    took = asyncio.get_running_loop().time() - started
    await batch.aclose()
    assert first.ok and first.audio_id == PAIRS[0][1], first
    assert took < 1.5, took


@pytest.mark.asyncio
async def test_a_batch_left_during_a_429s_pause_stops_at_once_and_a_rerun_converts_the_rest(
    server: HostileServer, make_sdk: Any, tmp_path: Path
) -> None:
    """Leaving a batch while its submits wait out a 429's pause (``Retry-After: 20``)
    ends it at once: nothing of theirs is on the wire. Before, the stop waited for the
    pause to end (20 s). A re-run with the journal converts the pairs left, once each."""
    sdk = make_sdk(retry=RetryPolicy(max_retry_after=30))
    server.task_defaults["finish_after"] = 0.1
    slow_down = reply(429, {"code": 429, "message": "slow down"}, [("Retry-After", "20")])
    server.script(SUBMIT, default, slow_down)
    journal = tmp_path / "j.sqlite"
    batch = sdk.convert_many(PAIRS[:4], concurrency=3, timeout=60, journal=journal)
    first = await asyncio.wait_for(anext(batch), 8)
    assert first.ok, first
    started = asyncio.get_running_loop().time()
    await asyncio.wait_for(batch.aclose(), 25)
    assert asyncio.get_running_loop().time() - started < 1
    assert len(server.hits(SUBMIT)) == 3
    rerun = make_sdk()
    results = await run(rerun.convert_many(PAIRS[:4], concurrency=3, timeout=5, journal=journal))
    assert all(r.ok for r in results) and len(results) == 4, [r.error for r in results]
    assert set(server.creations.values()) == {1} and len(server.creations) == 4


@pytest.mark.asyncio
async def test_a_rerun_right_after_an_interruption_waits_out_the_404s_of_its_tasks(
    server: HostileServer, make_sdk: Any, tmp_path: Path
) -> None:
    """A re-run soon after a run that left its pairs accepted reads their tasks while
    the API does not show them yet (404): no news, as for a task just submitted. The
    re-run gets their URLs. Before, the 404 settled every pair as failed, for good,
    though each task was paid for and finished."""
    journal = tmp_path / "j.sqlite"
    server.task_defaults["finish_after"] = 60
    left = await run(make_sdk().convert_many(PAIRS[:3], timeout=0.3, journal=journal))
    assert all(isinstance(r.error, TaskTimeoutError) for r in left)
    for task in server.tasks.values():
        task.finish_after = 0
    not_found = reply(404, {"code": 404, "message": "task not found"})
    server.script(DETAIL, *[not_found for _ in range(6)])
    again = await run(make_sdk().convert_many(PAIRS[:3], timeout=10, journal=journal))
    assert all(r.ok for r in again), [r.error for r in again]
    assert len(server.hits(SUBMIT)) == 3


@pytest.mark.asyncio
async def test_a_proxys_403_on_one_poll_leaves_the_paid_pair_to_a_rerun(
    server: HostileServer, make_sdk: Any, tmp_path: Path
) -> None:
    """An HTML 403 from a proxy on one poll fails that pair in this run, but its row
    stays accepted: the re-run gets the URL of the task paid for. Before, the pair was
    settled as failed, for good."""
    journal = tmp_path / "j.sqlite"
    server.task_defaults["finish_after"] = 0.2
    server.script(DETAIL, reply(403, b"<html><body>Access denied</body></html>"))
    first = await run(make_sdk().convert_many(PAIRS[:1], timeout=5, journal=journal))
    assert isinstance(first[0].error, APIError) and first[0].error.status == 403
    again = await run(make_sdk().convert_many(PAIRS[:1], timeout=5, journal=journal))
    assert again[0].ok, again[0].error
    assert len(server.hits(SUBMIT)) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("journalled", [False, True], ids=["no-journal", "journal"])
async def test_a_batch_stopped_after_an_unclear_submit_says_the_pair_may_be_paid_for(
    server: HostileServer,
    make_sdk: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    journalled: bool,
) -> None:
    """A submit whose attempts the server took but never answered in time (each may
    have been accepted), stopped with the batch: a WARNING names the pair, whatever
    the stop met (an attempt out, or the pause before the next one). Before, a stop
    during the pause cancelled it without a word; without a journal the paid task
    was then lost silently."""
    sdk = make_sdk(
        timeouts=Timeouts(connect=1, total=0.4),
        retry=RetryPolicy(base_delay=0.3, max_delay=0.6),
    )
    release = asyncio.Event()
    server.script(SUBMIT, *[gate(release) for _ in range(20)])
    caplog.set_level(logging.WARNING, logger="vidgo_async")
    journal = tmp_path / "j.sqlite" if journalled else None
    consumer = asyncio.create_task(run(sdk.convert_many(PAIRS[:1], timeout=30, journal=journal)))
    await asyncio.sleep(1.0)  # attempts out and timed out, in turn
    consumer.cancel()  # the loop is left: the batch stops
    try:
        await asyncio.wait_for(asyncio.gather(consumer, return_exceptions=True), 5)
    finally:
        release.set()
    warnings = [
        r.getMessage() for r in caplog.records if "may have been accepted" in r.getMessage()
    ]
    assert any(PAIRS[0][1] in message for message in warnings), warnings


def answered_when(
    release: asyncio.Event, arrived: asyncio.Event, status: int, payload: Any, *headers: Any
) -> Any:
    """``status`` with ``payload`` (and ``headers``), sent once ``release`` is set (the
    documented side effects applied on arrival, as a server behind a proxy would)."""

    async def action(server: HostileServer, request: Request, conn: Conn) -> None:
        server.process(request)
        arrived.set()
        await release.wait()
        await conn.send(status, encode(payload), [("Content-Type", "application/json"), *headers])

    return action


async def left_while_out(
    sdk: VidgoClient, server: HostileServer, status: int, payload: Any, *headers: Any
) -> float:
    """Seconds a one-pair batch takes to stop, left while its submit is out; the submit
    is answered ``status`` with ``payload`` 0.1 s into the stop."""
    release, arrived = asyncio.Event(), asyncio.Event()
    server.script(SUBMIT, answered_when(release, arrived, status, payload, *headers))
    batch = sdk.convert_many(PAIRS[:1], concurrency=1, timeout=60)
    pending = asyncio.ensure_future(anext(batch))
    await asyncio.wait_for(arrived.wait(), 5)
    asyncio.get_running_loop().call_later(0.1, release.set)
    started = asyncio.get_running_loop().time()
    pending.cancel()
    await asyncio.wait_for(asyncio.gather(pending, return_exceptions=True), 40)
    await asyncio.wait_for(batch.aclose(), 40)
    return asyncio.get_running_loop().time() - started


@pytest.mark.asyncio
async def test_a_batch_left_with_an_attempt_out_that_meets_a_429_stops_at_once(
    server: HostileServer, make_sdk: Any
) -> None:
    """The stop lets an attempt on the wire be answered; answered 429 (``Retry-After:
    20``), nothing was sent, and the pair does not sleep out the pause: the batch ends
    at once. Before, it ended when the pause (or the stop's grace) did."""
    sdk = make_sdk(retry=RetryPolicy(max_retry_after=30))
    slow_down = {"code": 429, "message": "slow down"}
    assert await left_while_out(sdk, server, 429, slow_down, ("Retry-After", "20")) < 1.5
    assert len(server.hits(SUBMIT)) == 1


@pytest.mark.asyncio
async def test_a_pair_whose_submit_may_be_paid_for_keeps_saying_so_after_a_refusal(
    server: HostileServer, make_sdk: Any
) -> None:
    """A pair whose first attempt was cut after the server took it, its retry withheld
    because another pair met 402: its result is SubmitOutcomeUnknownError (the track
    may be converted), not the 402. (Reported as the 402, its paid task was lost.)"""
    sdk = make_sdk(retry=RetryPolicy(base_delay=0.3, max_delay=0.3))
    server.script(SUBMIT, reset(), reply(402, {"code": 402, "message": "no credits"}))
    results = await run(sdk.convert_many(PAIRS[:2], concurrency=2, timeout=10))
    [created] = [audio for audio, count in server.creations.items() if count]
    paid = next(r for r in results if r.audio_id == created)
    assert isinstance(paid.error, SubmitOutcomeUnknownError), repr(paid.error)


@pytest.mark.asyncio
async def test_a_batch_left_with_an_attempt_out_answered_without_a_task_id_stops_at_once(
    server: HostileServer, make_sdk: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The attempt the stop let finish is answered 200 with no task id (it may have been
    accepted): the pair ends at once, with a WARNING that it may be paid for. Before,
    the unreadable answer was read outside the attempt's gate, and the stop waited out
    the retry's pause (up to its grace)."""
    sdk = make_sdk(retry=RetryPolicy(base_delay=5, max_delay=5))
    caplog.set_level(logging.WARNING, logger="vidgo_async")
    no_id = {"code": 200, "data": {"status": "not_started"}}
    assert await left_while_out(sdk, server, 200, no_id) < 1.5
    warnings = [
        r.getMessage() for r in caplog.records if "may have been accepted" in r.getMessage()
    ]
    assert any(PAIRS[0][1] in message for message in warnings), warnings
