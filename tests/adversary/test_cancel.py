"""A caller that gives up (asyncio.timeout, wait_for, a cancelled task) loses no paid task.

The server here answers a repeated submit of a track with a 409 that names no
task, as a platform may (the vendor's page names none): only what the client
itself remembers can then say which task the track was converted into.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from vidgo_async import (
    AlreadyConvertedError,
    ClientClosedError,
    RetryPolicy,
    SubmitOutcomeUnknownError,
    Timeouts,
    VidgoClient,
    VidgoError,
)

from .conftest import MakeSdk
from .server import DETAIL, SUBMIT, Conn, HostileServer, Request, gate, reply, reset
from .support import PARENT, TRACK, convert, until

NAMES_NOTHING = reply(409, {"code": 409, "message": "This audio has already been converted"})


async def cancelled_during_submit(server: HostileServer, sdk: VidgoClient) -> asyncio.Event:
    """A ``convert_to_wav`` cancelled while the server holds its (processed) submit;
    the event answers it."""
    release, arrived = asyncio.Event(), asyncio.Event()
    server.script(SUBMIT, gate(release, arrived), NAMES_NOTHING)
    call = asyncio.create_task(convert(sdk))
    await asyncio.wait_for(arrived.wait(), 5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    return release


async def share_one_task(
    server: HostileServer, release: asyncio.Event, *calls: asyncio.Task[str]
) -> None:
    """Answer the held submit: every call gets the URL of the one task created."""
    await asyncio.sleep(0.05)
    release.set()
    url = f"{server.url}/files/wav-1.wav"
    assert await asyncio.gather(*calls) == [url] * len(calls)
    assert server.creations[TRACK] == 1


@pytest.mark.asyncio
async def test_a_conversion_whose_wait_was_cancelled_is_waited_on_by_the_next_call(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """Cancelled while waiting, then called again: the 409 names nothing, and the
    client waits on the task its first call created instead of raising."""
    server.task_defaults["finish_after"] = 0.3
    call = asyncio.create_task(convert(sdk))
    await until(lambda: server.hits(DETAIL))
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    server.script(SUBMIT, NAMES_NOTHING)
    assert await convert(sdk) == f"{server.url}/files/wav-1.wav"
    assert server.creations[TRACK] == 1
    assert len(server.hits(SUBMIT)) == 2


@pytest.mark.asyncio
async def test_a_submit_cancelled_in_flight_is_still_read_and_its_task_kept(
    server: HostileServer, sdk: VidgoClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A cancel that lands while the submit is on the wire does not lose its answer:
    it is read in the background and logged, and the next call waits on its task."""
    caplog.set_level(logging.WARNING, logger="vidgo_async")
    release = await cancelled_during_submit(server, sdk)
    release.set()
    await until(lambda: any("wav-1" in record.getMessage() for record in caplog.records))
    assert await convert(sdk) == f"{server.url}/files/wav-1.wav"
    assert server.creations[TRACK] == 1
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "cancelled in flight; the server accepted it as task wav-1" in warning


@pytest.mark.asyncio
async def test_a_call_made_while_a_cancelled_submit_is_in_flight_waits_for_its_answer(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """Called again before the cancelled call's submit is answered: the new submit
    goes out after that answer, and waits on the task it named."""
    release = await cancelled_during_submit(server, sdk)
    again = asyncio.create_task(convert(sdk))
    await asyncio.sleep(0.05)
    assert len(server.hits(SUBMIT)) == 1  # held back until the first is answered
    release.set()
    assert await again == f"{server.url}/files/wav-1.wav"
    assert server.creations[TRACK] == 1
    assert len(server.hits(SUBMIT)) == 2


@pytest.mark.asyncio
async def test_submit_wav_after_a_cancelled_conversion_names_its_task(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """``submit_wav`` of a track this client converted raises AlreadyConvertedError
    naming the task (the 409 named none), so the caller can wait on it."""
    release = await cancelled_during_submit(server, sdk)
    release.set()
    with pytest.raises(AlreadyConvertedError) as info:
        await asyncio.wait_for(sdk.submit_wav(PARENT, TRACK), 5)
    assert info.value.task_id == "wav-1"
    assert "(conversion task wav-1)" in str(info.value)
    assert await asyncio.wait_for(sdk.await_task("wav-1", timeout=3), 5) == (
        f"{server.url}/files/wav-1.wav"
    )


@pytest.mark.asyncio
async def test_closing_the_client_lets_a_cancelled_submit_be_answered(
    server: HostileServer, sdk: VidgoClient, caplog: pytest.LogCaptureFixture
) -> None:
    """``aclose`` right after the cancel waits for the submit's answer (briefly) and
    logs its task, rather than dropping a paid task unseen."""
    caplog.set_level(logging.WARNING, logger="vidgo_async")
    release = await cancelled_during_submit(server, sdk)
    asyncio.get_running_loop().call_later(0.1, release.set)
    await asyncio.wait_for(sdk.aclose(), 5)
    assert any("accepted it as task wav-1" in r.getMessage() for r in caplog.records)


@pytest.mark.asyncio
async def test_another_models_submit_cancelled_in_flight_names_its_task_in_the_log(
    server: HostileServer, sdk: VidgoClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Not a WAV conversion: nothing settles a repeat, but the paid task is named."""
    caplog.set_level(logging.WARNING, logger="vidgo_async")
    release, arrived = asyncio.Event(), asyncio.Event()
    server.script(SUBMIT, gate(release, arrived))
    call = asyncio.create_task(sdk.submit("separate-vocals", {"task_id": PARENT, "audio_id": "x"}))
    await asyncio.wait_for(arrived.wait(), 5)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    release.set()
    await asyncio.wait_for(sdk.aclose(), 5)
    [warning] = [r.getMessage() for r in caplog.records]
    assert "separate-vocals submit" in warning
    assert "accepted it as task wav-1" in warning
    assert "later submit" not in warning


@pytest.mark.asyncio
async def test_closing_the_client_during_a_submit_hands_the_caller_its_task(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """``aclose`` while a submit is on the wire lets it be answered (briefly): the call
    then ends with ClientClosedError naming the paid task, not a bare error."""
    release, arrived = asyncio.Event(), asyncio.Event()
    server.script(SUBMIT, gate(release, arrived))
    call = asyncio.create_task(convert(sdk))
    await asyncio.wait_for(arrived.wait(), 5)
    asyncio.get_running_loop().call_later(0.1, release.set)
    await asyncio.wait_for(sdk.aclose(), 5)
    with pytest.raises(ClientClosedError) as info:
        await call
    assert info.value.handle is not None
    assert info.value.handle.task_id == "wav-1"
    assert server.creations[TRACK] == 1


@pytest.mark.asyncio
async def test_two_calls_for_one_track_at_once_share_its_task(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """The second call's submit waits for the first's answer, then settles on its
    task through the 409 (which names none): both get the URL, one task is paid."""
    release, arrived = asyncio.Event(), asyncio.Event()
    server.script(SUBMIT, gate(release, arrived), NAMES_NOTHING)
    first = asyncio.create_task(convert(sdk))
    await asyncio.wait_for(arrived.wait(), 5)
    second = asyncio.create_task(convert(sdk))
    await share_one_task(server, release, first, second)


@pytest.mark.asyncio
async def test_a_stopped_batch_lets_a_late_submit_answer_be_journalled(
    server: HostileServer, make_sdk: MakeSdk, tmp_path: Path
) -> None:
    """A batch stopped while its submit is on the wire waits for the answer as long as
    the request itself may take (here 15 s): an answer after 10.5 s, past the 10 s the
    stop used to give, is still journalled, and a re-run waits on its task."""
    journal = tmp_path / "wav.sqlite"
    release, arrived = asyncio.Event(), asyncio.Event()
    server.script(SUBMIT, gate(release, arrived), NAMES_NOTHING)
    sdk = make_sdk(timeouts=Timeouts(connect=2, total=15))

    async def consume() -> None:
        async for _ in sdk.convert_many([(PARENT, TRACK)], journal=journal):
            pass

    consumer = asyncio.create_task(consume())
    await asyncio.wait_for(arrived.wait(), 5)
    asyncio.get_running_loop().call_later(10.5, release.set)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(consumer, 20)
    async with make_sdk() as again:
        [result] = [r async for r in again.convert_many([(PARENT, TRACK)], journal=journal)]
    assert result.wav_url == f"{server.url}/files/wav-1.wav", result.error
    assert len(server.hits(SUBMIT)) == 1


@pytest.mark.asyncio
async def test_a_batch_stopped_without_a_journal_names_the_task_its_last_submit_created(
    server: HostileServer, sdk: VidgoClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch without a journal, stopped while its submit is on the wire: the answer
    is waited for, and the task it names - paid for, never waited on - is logged at
    WARNING (the CLI prints it), and a later ``convert_to_wav`` of the track on this
    client waits on it. Before, it was told at DEBUG only, and lost."""
    release, arrived = asyncio.Event(), asyncio.Event()
    server.script(SUBMIT, gate(release, arrived), NAMES_NOTHING)

    async def consume() -> None:
        async for _ in sdk.convert_many([(PARENT, TRACK)]):
            pass

    consumer = asyncio.create_task(consume())
    await asyncio.wait_for(arrived.wait(), 5)
    asyncio.get_running_loop().call_later(0.3, release.set)
    consumer.cancel()
    with (
        caplog.at_level(logging.WARNING, logger="vidgo_async"),
        pytest.raises(asyncio.CancelledError),
    ):
        await asyncio.wait_for(consumer, 10)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("wav-1" in message and TRACK in message for message in warned), warned
    assert await convert(sdk) == f"{server.url}/files/wav-1.wav"
    assert server.creations[TRACK] == 1


@pytest.mark.asyncio
async def test_a_call_whose_retry_meets_another_calls_submit_of_the_track_shares_its_task(
    server: HostileServer, make_sdk: MakeSdk
) -> None:
    """A's first attempt is refused (503); while it pauses, B's submit of the same track
    goes out and is processed, its answer slow. A's retry meets a 409 naming no task:
    it waits for B's answer and shares its task, rather than raising."""
    sdk = make_sdk(retry=RetryPolicy(base_delay=1.0, max_delay=1.0, max_retry_after=1.0))
    release, arrived = asyncio.Event(), asyncio.Event()
    # Its Retry-After holds A's pause at 1 s (not jittered down): B's submit goes first.
    refused = reply(503, {"code": 503, "message": "maintenance"}, [("Retry-After", "1")])
    server.script(SUBMIT, refused, gate(release, arrived), NAMES_NOTHING)
    first = asyncio.create_task(convert(sdk))
    await until(lambda: server.hits(SUBMIT))
    second = asyncio.create_task(convert(sdk))
    await asyncio.wait_for(arrived.wait(), 5)
    await until(lambda: len(server.hits(SUBMIT)) == 3)  # A's retry, answered 409
    await share_one_task(server, release, first, second)


@pytest.mark.asyncio
async def test_waiting_for_another_submit_of_the_track_keeps_to_the_deadline(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """The answer the second call waits for never comes (within its request timeout,
    5 s here): the second call still ends at its own deadline of 1 s."""
    await cancelled_during_submit(server, sdk)  # its answer is held, never released
    started = time.monotonic()
    with pytest.raises(VidgoError):
        await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=1), 5)
    assert time.monotonic() - started < 2.5


@pytest.mark.asyncio
async def test_closing_the_client_in_the_pause_after_an_unclear_submit_says_it_is_unknown(
    server: HostileServer, make_sdk: MakeSdk
) -> None:
    """The first attempt was processed, then its connection reset; the client closes
    while the submit pauses before its retry. Nothing later can settle it: the call
    says the submit may have been accepted, not that nothing was sent."""
    sdk = make_sdk(retry=RetryPolicy(base_delay=1.0, max_delay=1.0, max_retry_after=1.0))
    # Pauses are jittered from 0 s: should one retry come before the close, it fares alike.
    server.script(SUBMIT, reset(), reset(), reset())
    call = asyncio.create_task(convert(sdk))
    await until(lambda: server.hits(SUBMIT))
    await asyncio.wait_for(sdk.aclose(), 5)
    with pytest.raises(SubmitOutcomeUnknownError):
        await call
    assert server.creations[TRACK] == 1


@pytest.mark.asyncio
async def test_closing_the_client_during_a_429s_pause_ends_the_waiting_submits_unsent(
    server: HostileServer, make_sdk: MakeSdk
) -> None:
    """Submits waiting out a 429's pause (``Retry-After: 5``) end at ``aclose`` with
    ClientClosedError(sent=False), at once, and nothing more is sent."""
    sdk = make_sdk(retry=RetryPolicy(max_retry_after=10))
    server.script(SUBMIT, reply(429, {"code": 429, "message": "slow"}, [("Retry-After", "5")]))
    calls = [asyncio.create_task(sdk.convert_to_wav(PARENT, TRACK, timeout=8))]
    await until(lambda: server.hits(SUBMIT))
    await asyncio.sleep(0.05)  # answered: the pause started
    calls.append(asyncio.create_task(sdk.convert_to_wav(PARENT, "another", timeout=8)))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await asyncio.wait_for(sdk.aclose(), 5)
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert time.monotonic() - started < 1
    assert all(isinstance(o, ClientClosedError) and not o.sent for o in outcomes), outcomes
    assert len(server.hits(SUBMIT)) == 1


@pytest.mark.asyncio
async def test_closing_the_client_while_the_first_submit_after_a_pause_is_out(
    server: HostileServer, make_sdk: MakeSdk
) -> None:
    """The submit that goes first after a pause is answered (its caller gets its task);
    the submit waiting for that answer ends unsent at ``aclose``, at once."""
    sdk = make_sdk(retry=RetryPolicy(base_delay=0.2, max_delay=0.2, max_retry_after=1))
    release, arrived = asyncio.Event(), asyncio.Event()
    slow_down = reply(429, {"code": 429, "message": "slow"}, [("Retry-After", "0.3")])
    server.script(SUBMIT, slow_down, gate(release, arrived))
    first = asyncio.create_task(convert(sdk))
    await until(lambda: server.hits(SUBMIT))
    await asyncio.sleep(0.05)
    other = asyncio.create_task(sdk.convert_to_wav(PARENT, "another", timeout=8))
    await asyncio.wait_for(arrived.wait(), 5)  # the first after the pause is out, alone
    await asyncio.sleep(0.1)
    assert len(server.hits(SUBMIT)) == 2
    asyncio.get_running_loop().call_later(0.2, release.set)
    await asyncio.wait_for(sdk.aclose(), 5)
    with pytest.raises(ClientClosedError) as info:
        await first
    assert info.value.handle is not None and info.value.handle.task_id == "wav-1"
    with pytest.raises(ClientClosedError) as unsent:
        await other
    assert not unsent.value.sent
    assert len(server.hits(SUBMIT)) == 2


def answered_when(release: asyncio.Event, arrived: asyncio.Event, action: Any) -> Any:
    """``action``'s answer, once ``release`` is set."""

    async def held(server: HostileServer, request: Request, conn: Conn) -> None:
        arrived.set()
        await release.wait()
        await action(server, request, conn)

    return held


@pytest.mark.asyncio
async def test_a_429_answering_a_first_submit_whose_caller_gave_up_still_pauses_the_others(
    server: HostileServer, make_sdk: MakeSdk
) -> None:
    """The submit that goes first after a pause, its caller cancelled, is answered in the
    background by another 429 (``Retry-After: 2``): the client's other submits wait
    those 2 s. Before, the background answer let them all go at once, into the limit."""
    sdk = make_sdk(retry=RetryPolicy(base_delay=0.05, max_delay=0.1, max_retry_after=3))
    release, arrived = asyncio.Event(), asyncio.Event()
    slow = {"code": 429, "message": "slow down"}
    server.script(
        SUBMIT,
        reply(429, slow, [("Retry-After", "0.3")]),
        answered_when(release, arrived, reply(429, slow, [("Retry-After", "2")])),
    )
    first = asyncio.create_task(sdk.convert_to_wav(PARENT, "track-0", timeout=10))
    await asyncio.wait_for(arrived.wait(), 5)  # its retry, the first after the pause, held
    others = [
        asyncio.create_task(sdk.convert_to_wav(PARENT, f"track-{k}", timeout=10))
        for k in range(1, 4)
    ]
    await asyncio.sleep(0.1)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    release.set()
    answered = asyncio.get_running_loop().time()
    await asyncio.wait_for(asyncio.gather(*others), 10)
    later = [hit.at for hit in server.hits(SUBMIT)[2:]]
    assert len(later) == 3 and min(later) - answered >= 1.8, [t - answered for t in later]


@pytest.mark.asyncio
async def test_a_409_naming_the_task_after_the_caller_gave_up_is_remembered(
    server: HostileServer, make_sdk: MakeSdk, caplog: pytest.LogCaptureFixture
) -> None:
    """An attempt that may have been accepted (answered after the timeout), then a retry
    whose caller gives up while it is out; the retry's answer, read in the background,
    is a 409 naming the task. It is logged, and the next call for the track waits on
    it though the server's next 409 names nothing. Before, the 409 was dropped without
    a word, and the next call raised AlreadyConvertedError naming no task."""
    sdk = make_sdk(
        timeouts=Timeouts(connect=1, total=0.4), retry=RetryPolicy(base_delay=0.05, max_delay=0.1)
    )
    caplog.set_level(logging.WARNING, logger="vidgo_async")
    late, release, arrived = asyncio.Event(), asyncio.Event(), asyncio.Event()
    names_it = reply(409, {"code": 409, "message": "converted", "data": {"task_id": "wav-1"}})
    server.script(SUBMIT, gate(late), answered_when(release, arrived, names_it), NAMES_NOTHING)
    call = asyncio.create_task(convert(sdk))
    await asyncio.wait_for(arrived.wait(), 5)  # the retry is out
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    release.set()
    await until(lambda: any("wav-1" in r.getMessage() for r in caplog.records))
    url = await asyncio.wait_for(convert(sdk), 5)
    late.set()
    assert url == f"{server.url}/files/wav-1.wav"
    assert server.creations[TRACK] == 1
