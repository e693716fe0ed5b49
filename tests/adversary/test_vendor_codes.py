"""Answers the vendor's docs leave open, as sister platforms send them (vidgo-api.md):
their own status codes, a 429 that means no credits, a ``code`` written as 200.0, a 409
naming its task outside ``data``, and a status no page documents."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from vidgo_async import (
    APIError,
    InsufficientCreditsError,
    SubmitOutcomeUnknownError,
    TaskFailedError,
    TaskTimeoutError,
    VidgoClient,
)

from .conftest import MakeSdk
from .server import DETAIL, FILE, SUBMIT, Action, Conn, HostileServer, Request, encode, reply
from .support import KEY, PARENT, TRACK, convert

SISTER_REFUSALS = [
    pytest.param(430, "call frequency too high", id="430"),
    pytest.param(405, "Call frequency too high, please slow down", id="405-frequency"),
    pytest.param(455, "system maintenance", id="455-maintenance"),
]


def answer(status: int, message: str, *, in_200: bool) -> Action:
    """An error ``status`` with ``message``: the HTTP status, or the ``code`` of an HTTP 200."""
    return reply(200 if in_200 else status, {"code": status, "message": message})


@pytest.mark.parametrize("in_200", [False, True], ids=["http-status", "envelope-code"])
@pytest.mark.parametrize(("status", "message"), SISTER_REFUSALS)
@pytest.mark.asyncio
async def test_a_sister_platforms_throttle_or_maintenance_on_a_poll_is_waited_out(
    server: HostileServer, sdk: VidgoClient, status: int, message: str, in_200: bool
) -> None:
    """430, 405 "call frequency too high" and 455 "maintenance" are refusals: the wait
    goes on and returns the WAV URL of the one task created."""
    server.script(DETAIL, *[answer(status, message, in_200=in_200)] * 3)
    url = await convert(sdk)
    assert url.endswith(".wav")
    assert server.creations[TRACK] == 1
    assert len(server.hits(DETAIL)) >= 4


@pytest.mark.parametrize("in_200", [False, True], ids=["http-status", "envelope-code"])
@pytest.mark.parametrize(("status", "message"), SISTER_REFUSALS)
@pytest.mark.asyncio
async def test_a_sister_platforms_throttle_or_maintenance_on_a_submit_is_retried(
    server: HostileServer, sdk: VidgoClient, status: int, message: str, in_200: bool
) -> None:
    """A submit refused so was not processed: it is sent again, and one task is created."""
    server.script(SUBMIT, *[answer(status, message, in_200=in_200)] * 2)
    await convert(sdk)
    assert server.creations[TRACK] == 1
    assert len(server.hits(SUBMIT)) == 3


@pytest.mark.asyncio
async def test_a_405_that_is_no_throttle_stays_final(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """A 405 saying anything else is an ordinary 4xx: final at once, not retried."""
    server.script(SUBMIT, reply(405, {"code": 405, "message": "Method Not Allowed"}))
    with pytest.raises(APIError) as raised:
        await convert(sdk)
    assert raised.value.status == 405
    assert len(server.hits(SUBMIT)) == 1


@pytest.mark.parametrize("in_200", [False, True], ids=["http-status", "envelope-code"])
@pytest.mark.asyncio
async def test_a_429_saying_the_credits_ran_out_ends_the_call_at_once(
    server: HostileServer, sdk: VidgoClient, in_200: bool
) -> None:
    """A sister's 429 "insufficient credits" is InsufficientCreditsError after one
    request, not retried until the deadline."""
    server.script(
        SUBMIT, *[answer(429, "Insufficient credits, please recharge", in_200=in_200)] * 50
    )
    with pytest.raises(InsufficientCreditsError) as raised:
        await convert(sdk)
    assert raised.value.status == 429
    assert len(server.hits(SUBMIT)) == 1


@pytest.mark.parametrize(
    "message",
    [
        "rate limit exceeded, check your balance of requests",
        "Too many requests. Each request consumes credits.",
        "Too Many Requests (load balancer)",
        "Rate limit reached; upgrade your plan for more credits per minute",
        # Rate limits counted in points, or a balance endpoint's own limit.
        "points per minute exhausted",
        "Request points exhausted for this window",
        "Balance query limit exhausted",
        "credits per minute exhausted, retry later",
        # A window or a retry soon: token buckets, load balancers (found by a hostile run).
        "Request credits exhausted for this second; retry shortly",
        "Your request credits are depleted until the window resets in 2s",
        "No request points left for this window, wait 2s",
        "Credits regenerate at 10/s; current balance exhausted, retry after 1s",
        "Out of request credits for this second",
        # Rate limits in quota words (a hostile run's survey): each stopped the batch.
        "并发额度不足, 请稍后再试",
        "QPS额度不足",
        "Insufficient quota for requests per minute. Please retry in 20s",
        "Concurrency limit reached. Top up to raise your limits, or retry later.",
        "Insufficient points, retry in 2s",
        "Request quota exhausted, please retry after 60 seconds",
        "Service overloaded; no balancer capacity available",
        "Please stop uploading so quickly and try again later",
        "令牌桶额度不足, 请稍后重试",
    ],
)
@pytest.mark.asyncio
async def test_a_429_that_only_mentions_credits_is_a_rate_limit(
    server: HostileServer, sdk: VidgoClient, message: str
) -> None:
    """Credits or a balance named in a rate limit's message are no refusal of the
    account: the submit is sent again, and the conversion goes through."""
    server.script(SUBMIT, reply(429, {"code": 429, "message": message}))
    assert (await convert(sdk)).endswith(".wav")
    assert len(server.hits(SUBMIT)) == 2


@pytest.mark.parametrize(
    "message",
    [
        "You have run out of credits",
        "not enough balance",
        "余额不足, 请充值",
        # The account's noun first, or as a code (each was retried as a rate limit).
        "Your credit balance is insufficient",
        "balance not enough",
        "credits exhausted",
        "insufficient_quota",
        # Out of credits, and saying when to try again (read as a rate limit by a hostile
        # run's fix): the plain words win over the retry advice.
        "Insufficient credits. Please top up and try again later.",
        "余额不足, 请充值后稍后再试",
        "Insufficient credits: this model costs 12 credits per minute of audio",
        "Daily credits exhausted; credits reset at 00:00 UTC",
        "You exceeded your current quota, please check your plan and billing details.",
        "Out of credits. Upgrade your plan or wait for the next billing cycle to reset.",
        # Real platforms' wordings (a hostile run's survey): each was retried until the
        # deadline as a rate limit.
        "You don't have enough credits",
        "Credits exhausted, please try again later",
        "该令牌额度已用尽",
        "您的账户已欠费, 请充值后重试",
        "Insufficient monthly song credits",
        "Your docs: https://example.com/docs/rate-limits - insufficient credits",
        "Monthly spend limit reached",
        "Points insufficient",
    ],
)
@pytest.mark.asyncio
async def test_a_429_in_other_words_for_no_credits_is_insufficient_credits(
    server: HostileServer, sdk: VidgoClient, message: str
) -> None:
    server.script(SUBMIT, *[reply(429, {"code": 429, "message": message})] * 50)
    with pytest.raises(InsufficientCreditsError):
        await convert(sdk)
    assert len(server.hits(SUBMIT)) == 1


@pytest.mark.asyncio
async def test_a_storage_hosts_429_is_never_read_as_the_apis_credits(
    server: HostileServer, sdk: VidgoClient, tmp_path: Path
) -> None:
    """Downloads come from storage, which speaks for no account: its 429 is retried."""
    server.script(FILE, reply(429, b"insufficient balance", [("Content-Type", "text/plain")]))
    url = f"{server.url}/files/a.wav"
    path = await asyncio.wait_for(sdk.download(url, tmp_path / "a.wav", timeout=3), 5)
    assert path.read_bytes() == server.wav
    assert len(server.hits(FILE)) == 2


@pytest.mark.asyncio
async def test_a_batch_stops_submitting_once_a_429_says_the_credits_ran_out(
    server: HostileServer, make_sdk: MakeSdk
) -> None:
    """As after a 402: the account is refused, so the batch sends no more submits."""
    server.script(SUBMIT, *[answer(429, "insufficient balance", in_200=False)] * 50)
    sdk = make_sdk()
    pairs = [(PARENT, f"aud-{index}") for index in range(10)]
    results = [result async for result in sdk.convert_many(pairs, concurrency=1, timeout=5)]
    assert all(isinstance(result.error, InsufficientCreditsError) for result in results)
    assert len(server.hits(SUBMIT)) == 1


async def with_float_code(server: HostileServer, request: Request, conn: Conn) -> None:
    """The documented answer, its envelope ``code`` written as a float (200.0)."""
    status, payload = server.process(request)
    if isinstance(payload, dict):
        payload["code"] = float(payload["code"])
    await conn.send(status, encode(payload), [("Content-Type", "application/json")])


@pytest.mark.asyncio
async def test_an_envelope_code_of_200_0_is_a_success(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """``"code": 200.0`` is the JSON number 200: one submit, and the WAV URL."""
    server.script(SUBMIT, with_float_code)
    server.script(DETAIL, *[with_float_code] * 50)
    assert (await convert(sdk)).endswith(".wav")
    assert len(server.hits(SUBMIT)) == 1
    assert (await asyncio.wait_for(sdk.balance(), 5)).credits_amount == server.credits


def conflict_naming(task_id: str, where: str) -> dict[str, Any]:
    body: dict[str, Any] = {"code": 409, "message": "already converted"}
    if where == "top":
        body["task_id"] = task_id
    else:
        body["error"] = {"message": "already converted", "task_id": task_id}
    return body


@pytest.mark.parametrize("where", ["top", "error"])
@pytest.mark.asyncio
async def test_a_409_naming_its_task_outside_data_settles_an_ambiguous_submit(
    server: HostileServer, sdk: VidgoClient, where: str
) -> None:
    """A submit processed behind a 502, then answered 409 naming the task at the top
    level or under ``error``: the wait goes on with that task, none created twice."""
    server.next_ids.append("wav-first")
    server.script(
        SUBMIT,
        reply(502, b"<html>bad gateway</html>", process=True),
        reply(409, conflict_naming("wav-first", where)),
    )
    url = await convert(sdk)
    assert "wav-first" in url
    assert server.creations[TRACK] == 1


@pytest.mark.parametrize("where", ["top", "error"])
@pytest.mark.asyncio
async def test_a_409_echoing_the_parent_task_is_not_taken_for_the_conversion(
    server: HostileServer, sdk: VidgoClient, where: str
) -> None:
    """An error body that repeats the request's ``task_id`` names the music task the
    track came from: the submit's outcome stays unknown (look it up), and the parent
    is never polled as if it were the conversion."""
    server.script(
        SUBMIT,
        reply(502, b"<html>bad gateway</html>", process=True),
        reply(409, conflict_naming(PARENT, where)),
    )
    with pytest.raises(SubmitOutcomeUnknownError):
        await convert(sdk)
    assert not [hit for hit in server.hits(DETAIL) if hit.query.get("task_id") == PARENT]


@pytest.mark.asyncio
@pytest.mark.parametrize("word", ["SUCCESS", "completed", "succeeded"])
async def test_a_sisters_word_for_finished_ends_the_wait_with_the_url(
    server: HostileServer, sdk: VidgoClient, word: str
) -> None:
    """A task that says it succeeded in a sister platform's word gives its WAV URL at
    its first read. Before, it was polled to the deadline and timed out."""
    server.task_defaults = {"finish_after": 0.2, "words": {"finished": word}}
    url = await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=5), 3)
    assert url == f"{server.url}/files/{next(iter(server.tasks))}.wav"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "word",
    ["error", "CANCELLED", "CREATE_TASK_FAILED", "GENERATE_AUDIO_FAILED", "SENSITIVE_WORD_ERROR"],
)
async def test_a_sisters_word_for_failed_ends_the_wait_with_the_reason(
    server: HostileServer, sdk: VidgoClient, word: str
) -> None:
    """A task that says it failed in a sister platform's word raises TaskFailedError with
    the server's reason at once; it was polled to the deadline."""
    server.task_defaults = {
        "finish_after": 0.2,
        "outcome": "failed",
        "error_message": "bad audio",
        "words": {"failed": word},
    }
    with pytest.raises(TaskFailedError, match="bad audio"):
        await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=5), 3)


@pytest.mark.asyncio
async def test_a_status_no_page_documents_is_warned_of_and_named_at_the_deadline(
    server: HostileServer, sdk: VidgoClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A task answered ``"status": "first_success"`` (a sister's word for a stage, not
    the end) is still waited on, with one warning naming the status; the timeout names
    it too."""
    server.task_defaults = {"extra": {"status": "first_success"}}
    caplog.set_level(logging.WARNING, logger="vidgo_async")
    with pytest.raises(TaskTimeoutError) as raised:
        await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=0.5), 5)
    assert "'first_success'" in str(raised.value)
    warnings = [
        record.getMessage() for record in caplog.records if "first_success" in record.getMessage()
    ]
    assert len(warnings) == 1, warnings
    assert KEY not in str(raised.value) + "".join(warnings)


@pytest.mark.asyncio
async def test_one_file_sent_as_an_object_instead_of_a_list_is_read(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """``"files": {"wav_url": ...}`` (one file, not in a list) gives its URL at once;
    the wait ran to its deadline and reported "files: 0"."""
    server.task_defaults = {"files": {"wav_url": f"{server.url}/files/one.wav"}}
    assert await convert(sdk) == f"{server.url}/files/one.wav"
    assert server.creations[TRACK] == 1
