"""Regressions of the adversarial review: one test per defect, through the public API.

Each test drives the real client against FakeVidgo over real sockets and
states the behaviour expected once the defect is fixed.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from support import MakeClient, MakeFake

from vidgo_async import (
    AlreadyConvertedError,
    AuthenticationError,
    ConversionResult,
    Event,
    InsufficientCreditsError,
    InvalidResponseError,
    NotFoundError,
    PollPolicy,
    RetryPolicy,
    TaskFailedError,
    TaskHandle,
    TaskTimeoutError,
    VidgoClient,
    VidgoError,
)
from vidgo_async.testing import FakeVidgo, Fault
from vidgo_async.webhooks import CallbackReceiver

pytestmark = pytest.mark.asyncio


# A callback safety net far longer than any task here: a quick return means a callback woke it.
SLOW_NET = PollPolicy(initial=0.01, factor=1.5, max_interval=0.05, callback_interval=30.0)
SECRET = "sk-regression-secret-0123456789"


async def collect(client: VidgoClient, pairs: Any, **kwargs: Any) -> list[ConversionResult]:
    """Every result of one ``convert_many`` run."""
    return [result async for result in client.convert_many(pairs, **kwargs)]


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything reachable through ``__cause__`` and ``__context__``."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        current = todo.pop()
        if any(current is known for known in seen):
            continue
        seen.append(current)
        todo.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return seen


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    """A callback receiver serving itself on 127.0.0.1."""
    receiver = CallbackReceiver()
    async with receiver.serve():
        yield receiver


# -- D1: finished before the files --------------------------------------------------------------


async def test_d1_convert_to_wav_waits_for_lagging_files(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """D1: a task finished with files: [] for 0.5 s still gives its wav_url within the deadline."""
    fake = await make_fake(files_lag=0.5)
    url = await make_client(fake).convert_to_wav("p", "a1", timeout=5)
    assert url.endswith(".wav")


async def test_d1_convert_many_waits_for_lagging_files(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """D1: convert_many gives ok results when the files lag the finished status by 0.5 s."""
    fake = await make_fake(files_lag=0.5)
    pairs = [("p", f"a{index}") for index in range(5)]
    results = await collect(make_client(fake), pairs, timeout=5)
    assert [result.error for result in results] == [None] * 5
    assert all(result.ok for result in results)


async def test_d1_files_never_in_time_fail_at_the_deadline_not_before(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """D1: files lagging past the deadline end the wait at about the deadline, not early."""
    fake = await make_fake(files_lag=30.0)
    started = time.monotonic()
    with pytest.raises((InvalidResponseError, TaskTimeoutError)):
        await make_client(fake).convert_to_wav("p", "a1", timeout=1.0)
    assert 0.8 <= time.monotonic() - started < 5.0


# -- D2: 404 just after an accepted submit ------------------------------------------------------


async def test_d2_convert_survives_a_task_not_yet_visible(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """D2: a 404 from detail right after an accepted submit is not the end of the wait."""
    fake = await make_fake(visibility_lag=0.3)
    client = make_client(fake)
    url = await client.convert_to_wav("p", "a1", timeout=5)
    assert url.endswith(".wav")
    results = await collect(client, [("p", f"b{index}") for index in range(5)], timeout=5)
    assert [result.error for result in results] == [None] * 5
    assert fake.accept_count["a1"] == 1


async def test_d2_unknown_task_is_still_not_found_promptly(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """D2 (guard): wait() on an id never submitted and unknown still raises NotFoundError fast."""
    fake = await make_fake(visibility_lag=0.3)
    started = time.monotonic()
    with pytest.raises(NotFoundError):
        await make_client(fake).wait("task-nobody-submitted", timeout=30)
    assert time.monotonic() - started < 5.0


# -- D3: account-level submit errors and the journal --------------------------------------------


async def test_d3_wrong_key_does_not_poison_the_journal(
    fake: FakeVidgo, make_client: MakeClient, tmp_path: Path
) -> None:
    """D3: a run refused with 401 leaves the journal usable: the right key then converts."""
    journal = tmp_path / "wav.sqlite"
    pairs = [("p", f"a{index}") for index in range(4)]
    first = await collect(make_client(api_key="wrong-key"), pairs, journal=journal)
    assert all(isinstance(result.error, AuthenticationError) for result in first)
    second = await collect(make_client(), pairs, journal=journal, timeout=5)
    assert [result.error for result in second] == [None] * 4
    assert all(fake.accept_count[audio] == 1 for _, audio in pairs)


async def test_d3_no_credits_does_not_poison_the_journal(
    make_fake: MakeFake, make_client: MakeClient, tmp_path: Path
) -> None:
    """D3: a run refused with 402 leaves the journal usable: topped up, the re-run converts."""
    fake = await make_fake(credits=0)
    client = make_client(fake)
    journal = tmp_path / "wav.sqlite"
    pairs = [("p", f"a{index}") for index in range(4)]
    first = await collect(client, pairs, journal=journal)
    assert all(isinstance(result.error, InsufficientCreditsError) for result in first)
    fake.credits = 100
    second = await collect(client, pairs, journal=journal, timeout=5)
    assert [result.error for result in second] == [None] * 4
    assert all(fake.accept_count[audio] == 1 for _, audio in pairs)


# -- D4: journalled failures keep their type ----------------------------------------------------


async def test_d4_journalled_task_failure_is_still_a_task_failed_error(
    fake: FakeVidgo, make_client: MakeClient, tmp_path: Path
) -> None:
    """D4: a failed task reported again from the journal is a TaskFailedError with its message."""
    fake.fail("bad", "Source audio unavailable")
    journal = tmp_path / "wav.sqlite"
    client = make_client()
    [first] = await collect(client, [("p", "bad")], journal=journal, timeout=5)
    assert isinstance(first.error, TaskFailedError)
    assert first.error.error_message == "Source audio unavailable"
    [again] = await collect(client, [("p", "bad")], journal=journal, timeout=5)
    assert isinstance(again.error, TaskFailedError)
    assert again.error.error_message == "Source audio unavailable"
    assert fake.accept_count["bad"] == 1


async def test_d4_journalled_conflict_is_still_already_converted(
    fake: FakeVidgo, make_client: MakeClient, tmp_path: Path
) -> None:
    """D4: a clean first submit's 409, reported again from the journal, is AlreadyConvertedError
    (the track converted by another client: this one knows no task of it)."""
    client = make_client()
    await make_client().submit_wav("p", "done-before")
    journal = tmp_path / "wav.sqlite"
    [first] = await collect(client, [("p", "done-before")], journal=journal, timeout=5)
    assert isinstance(first.error, AlreadyConvertedError)
    [again] = await collect(client, [("p", "done-before")], journal=journal, timeout=5)
    assert isinstance(again.error, AlreadyConvertedError)
    assert fake.accept_count["done-before"] == 1


# -- D5: integer task ids -----------------------------------------------------------------------


async def test_d5_lost_submit_answer_resumes_through_an_integer_409_id(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """D5: after a lost submit answer, a 409 carrying an integer data.task_id is waited on."""
    fake = await make_fake(integer_task_ids=True, conflict_includes_task_id=True)
    fake.inject(Fault.reset_after(), route="submit")
    url = await make_client(fake).convert_to_wav("p", "a1", timeout=5)
    [task_id] = fake.accepted["a1"]
    assert url == f"{fake.url}/files/{task_id}.wav"
    assert fake.accept_count["a1"] == 1


async def test_d5_callbacks_with_integer_ids_resolve_waits(
    make_fake: MakeFake, make_client: MakeClient, receiver: CallbackReceiver
) -> None:
    """D5: callbacks carrying integer task ids wake their waits, about one detail read per task."""
    fake = await make_fake(integer_task_ids=True)
    client = make_client(fake, callbacks=receiver, poll=SLOW_NET)
    pairs = [("p", f"a{index}") for index in range(10)]
    results = await asyncio.wait_for(collect(client, pairs, timeout=20), 5)
    assert [result.error for result in results] == [None] * 10
    assert all(result.task_id and result.task_id.isdecimal() for result in results)
    assert fake.request_count("detail") <= 12
    assert all(attempt.status == 200 for attempt in fake.callbacks.attempts)


# -- D8: no aiohttp exception (with the request headers) in the chain ---------------------------


async def test_d8_malformed_answer_chains_no_request_headers(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """D8: a malformed HTTP answer raises an error whose chain holds no aiohttp header carrier."""
    fake = await make_fake(api_key=SECRET)
    fake.inject(Fault.malformed(), route="detail", times=10)
    client = make_client(fake, retry=RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.01))
    with pytest.raises(VidgoError) as caught:
        await client.get_task("task-1")
    assert fake.request_count("detail") >= 1
    for exc in chain(caught.value):
        assert not isinstance(exc, aiohttp.ClientResponseError), repr(exc)
        assert SECRET not in repr(vars(exc)), repr(exc)
        assert SECRET not in repr(exc.args), repr(exc)
        assert SECRET not in str(exc)


# -- D9: bad handles are refused before any request ---------------------------------------------


@pytest.mark.parametrize("task_id", ["", "  ", "a\nb"], ids=["empty", "blank", "newline"])
async def test_d9_wait_on_a_bad_handle_raises_before_any_request(
    fake: FakeVidgo, client: VidgoClient, task_id: str
) -> None:
    """D9: wait(TaskHandle(task_id=bad)) raises ValueError without sending anything."""
    with pytest.raises(ValueError):
        await client.wait(TaskHandle(task_id=task_id), timeout=2)
    assert fake.requests == []


# -- D12: a 3xx on a poll is no news ------------------------------------------------------------


async def test_d12_redirect_on_a_poll_is_no_news_and_carries_no_key(
    fake: FakeVidgo, client: VidgoClient
) -> None:
    """D12: a 3xx answering a poll is retried like a transient failure and never followed."""
    fake.inject(Fault.redirect(302, location=f"{fake.url}/elsewhere"), route="detail", times=2)
    url = await client.convert_to_wav("p", "a1", timeout=5)
    assert url.endswith(".wav")
    assert [r.fault for r in fake.requests_to("detail")][:2] == ["redirect", "redirect"]
    assert all("Authorization" not in r.headers for r in fake.requests_to("/elsewhere"))


# -- D13: one 429 does not stall the whole client -----------------------------------------------


async def test_d13_one_429_without_retry_after_does_not_stall_the_client(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """D13: one Retry-After-less 429 on a poll must not hold every other poll back (~1 s)."""
    polls: list[tuple[float, str | None]] = []  # (when, error) of every poll, in order

    def on_event(event: Event) -> None:
        if event.kind == "poll":
            polls.append((time.monotonic(), event.error))

    # Fast backoff, but the shipped max_retry_after: FAST_RETRY's 0.05 s cap would hide a stall.
    retry = RetryPolicy(base_delay=0.001, max_delay=0.01)
    fake = await make_fake()
    fake.inject(Fault.rate_limited(), route="detail")
    client = make_client(fake, retry=retry, on_event=on_event)
    urls = await asyncio.wait_for(
        asyncio.gather(*(client.convert_to_wav("p", f"a{index}") for index in range(50))), 30
    )
    assert len(set(urls)) == 50
    errors = [error for _, error in polls]
    assert errors.count("RateLimitError") == 1
    # The other waits keep polling (polls come every few ms here): a stall would leave
    # a gap of a second after the 429. Measured as gaps, not as the run's length, which
    # a busy machine stretches.
    after = [when for when, _ in polls[errors.index("RateLimitError") :]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(after)]
    assert max(gaps) < 0.5, f"polls stalled for {max(gaps):.2f}s after one 429"
