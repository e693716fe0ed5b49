"""Submits against a hostile server: ambiguity, refusals, odd answers (issue 12 #1, #2)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from vidgo_async import (
    APIError,
    ConfigurationError,
    InsufficientCreditsError,
    InvalidResponseError,
    RetryPolicy,
    SubmitOutcomeUnknownError,
    VidgoClient,
    VidgoError,
)

from .conftest import MakeSdk
from .server import SUBMIT, HostileServer, envelope, gate, raw, reply, reset, running
from .support import FORBIDDEN, PARENT, TRACK, chain, convert, until


def error_body(status: int) -> dict[str, Any]:
    return {"code": status, "message": f"refused with {status}"}


async def submit(sdk: VidgoClient) -> str:
    task = await asyncio.wait_for(sdk.submit_wav(PARENT, TRACK), 8)
    return task.task_id


ENTRIES = [pytest.param(convert, id="convert_to_wav"), pytest.param(submit, id="submit_wav")]


def carries(exc: BaseException, status: int) -> bool:
    return any(isinstance(item, APIError) and item.status == status for item in chain(exc))


# -- 1. a definitive answer after an ambiguous attempt ----------------------------


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 410, 422])
@pytest.mark.asyncio
async def test_definitive_answer_after_reset_is_unknown(
    server: HostileServer, sdk: VidgoClient, entry: Any, status: int
) -> None:
    """After a reset that followed a creation, a retry's 4xx raises SubmitOutcomeUnknownError."""
    server.script(SUBMIT, reset(), reply(status, error_body(status)))
    with pytest.raises(VidgoError) as info:
        await entry(sdk)
    assert type(info.value) is SubmitOutcomeUnknownError, repr(info.value)
    assert carries(info.value, status)
    assert server.creations[TRACK] == 1


@pytest.mark.parametrize("ambiguity", ["reset", 500, 504])
@pytest.mark.asyncio
async def test_another_models_ambiguous_submit_is_not_sent_again(
    server: HostileServer, sdk: VidgoClient, ambiguity: str | int
) -> None:
    """Only a WAV conversion has the server's once-only rule: another model's submit
    that may have been accepted is not repeated (a second task would be billed), and
    SubmitOutcomeUnknownError says so."""
    first = reset() if ambiguity == "reset" else reply(int(ambiguity), error_body(int(ambiguity)))
    accepted = envelope({"task_id": "gen-2", "status": "not_started"})
    server.script(SUBMIT, first, reply(200, accepted))
    with pytest.raises(SubmitOutcomeUnknownError):
        await asyncio.wait_for(
            sdk.submit("separate-vocals", {"task_id": PARENT, "audio_id": TRACK}), 8
        )
    assert len(server.hits(SUBMIT)) == 1


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.asyncio
async def test_conflict_without_id_after_reset_is_unknown(
    server: HostileServer, sdk: VidgoClient, entry: Any
) -> None:
    """After an ambiguous attempt, a 409 that names no task raises SubmitOutcomeUnknownError."""
    server.script(SUBMIT, reset(), reply(409, error_body(409)))
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await entry(sdk)
    assert carries(info.value, 409)
    assert server.creations[TRACK] == 1


@pytest.mark.asyncio
async def test_conflict_naming_the_task_after_reset_carries_on(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """After a reset, a 409 naming the created task is waited on: the WAV URL comes back."""
    server.script(SUBMIT, reset())  # then the documented 409 naming wav-1
    url = await convert(sdk)
    assert url == f"{server.url}/files/wav-1.wav"
    assert server.creations[TRACK] == 1
    assert len(server.hits(SUBMIT)) == 2


@pytest.mark.asyncio
async def test_conflict_naming_an_integer_id_after_reset_carries_on(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """A 409 naming the task by an integer id (some platforms) is waited on as its string."""
    server.add_task("12345", audio_id=TRACK)
    conflict = {"code": 409, "message": "converted", "data": {"task_id": 12345}}
    server.script(SUBMIT, reset(), reply(409, conflict))
    assert await convert(sdk) == f"{server.url}/files/12345.wav"


@pytest.mark.asyncio
async def test_garbage_2xx_then_conflict_naming_task_carries_on(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """A 2xx whose body was cut short (wrong Content-Length) is ambiguous; the 409 settles it."""
    body = b'{"code": 200, "data": {"task_id": "wav-1", "status": "not_started"}}'
    server.script(SUBMIT, reply(200, body, process=True, length=20, close=True))
    assert await convert(sdk) == f"{server.url}/files/wav-1.wav"
    assert server.creations[TRACK] == 1


@pytest.mark.asyncio
async def test_html_200_then_conflict_naming_task_carries_on(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """A proxy's HTML page with status 200 is ambiguous; the 409 naming the task settles it."""
    page = b"<!doctype html><html><body>Welcome to nginx</body></html>"
    server.script(SUBMIT, reply(200, page, [("Content-Type", "text/html")], process=True))
    assert await convert(sdk) == f"{server.url}/files/wav-1.wav"
    assert server.creations[TRACK] == 1


# -- 2. CDN 5xx after the origin processed the submit; refusals ----------------------

CDN = [520, 524, 599]


@pytest.mark.parametrize("status", CDN)
@pytest.mark.asyncio
async def test_cdn_5xx_then_conflict_naming_task_carries_on(
    server: HostileServer, sdk: VidgoClient, status: int
) -> None:
    """A 520/524/599 after a creation is ambiguous: the retry's 409 naming the task is waited on."""
    server.script(SUBMIT, reply(status, b"origin error", process=True))
    assert await convert(sdk) == f"{server.url}/files/wav-1.wav"
    assert server.creations[TRACK] == 1


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("status", CDN)
@pytest.mark.asyncio
async def test_cdn_5xx_then_payment_required_is_unknown(
    server: HostileServer, sdk: VidgoClient, entry: Any, status: int
) -> None:
    """A 520/524/599 after a creation, then a 402: SubmitOutcomeUnknownError, never ServerError."""
    server.script(SUBMIT, reply(status, b"", process=True), reply(402, error_body(402)))
    with pytest.raises(VidgoError) as info:
        await entry(sdk)
    assert type(info.value) is SubmitOutcomeUnknownError, repr(info.value)
    assert server.creations[TRACK] == 1


@pytest.mark.parametrize("status", CDN)
@pytest.mark.asyncio
async def test_cdn_5xx_until_deadline_is_unknown(
    server: HostileServer, sdk: VidgoClient, status: int
) -> None:
    """A submit answered only 520/524/599 until its deadline ends in SubmitOutcomeUnknownError."""
    server.script(SUBMIT, *[reply(status, b"", process=True) for _ in range(10_000)])
    with pytest.raises(VidgoError) as info:
        await convert(sdk, timeout=0.5)
    assert type(info.value) is SubmitOutcomeUnknownError, repr(info.value)
    assert len(server.hits(SUBMIT)) > 1  # it did retry, not give up at once


REFUSED = [
    pytest.param(503, id="503"),
    pytest.param(429, id="429"),
    pytest.param(501, id="501"),
]


@pytest.mark.parametrize("status", REFUSED)
@pytest.mark.asyncio
async def test_refused_submit_is_retried(
    server: HostileServer, sdk: VidgoClient, status: int
) -> None:
    """503, 501 and 429 mean "not processed": the submit is retried and succeeds, once."""
    server.script(SUBMIT, reply(status, error_body(status)))
    assert await convert(sdk) == f"{server.url}/files/wav-1.wav"
    assert server.creations[TRACK] == 1
    assert len(server.hits(SUBMIT)) == 2


@pytest.mark.parametrize("status", REFUSED)
@pytest.mark.asyncio
async def test_refused_then_payment_required_is_definite(
    server: HostileServer, sdk: VidgoClient, status: int
) -> None:
    """After refusals only (nothing ambiguous), a 402 is a definite InsufficientCreditsError."""
    server.script(SUBMIT, reply(status, error_body(status)), reply(402, error_body(402)))
    with pytest.raises(InsufficientCreditsError):
        await convert(sdk)
    assert server.creations[TRACK] == 0


# -- odd but plausible answers ---------------------------------------------------------


@pytest.mark.parametrize(
    "retry_after",
    ["Wed, 21 Oct 2099 07:28:00 GMT", "-5", "99999999999999", "1e400", "NaN", "soon", "", "0x10"],
)
@pytest.mark.asyncio
async def test_odd_retry_after_on_429_submit(
    server: HostileServer, sdk: VidgoClient, retry_after: str
) -> None:
    """A 429 with a far-future date, negative, huge or junk Retry-After is retried promptly."""
    server.script(SUBMIT, reply(429, error_body(429), [("Retry-After", retry_after)]))
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await convert(sdk) == f"{server.url}/files/wav-1.wav"
    assert loop.time() - started < 2.0
    assert server.creations[TRACK] == 1


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(envelope({"task_id": "wav-1"}), id="no-status"),
        pytest.param(envelope([{"task_id": "wav-1", "status": "not_started"}]), id="one-list"),
        pytest.param(envelope({"task_id": "wav-1", "status": "NOT_STARTED"}, "200"), id="str-code"),
        pytest.param({"code": 200, "data": {"id": "wav-1"}}, id="id-key"),
    ],
)
@pytest.mark.asyncio
async def test_loose_submit_answers_are_accepted(
    server: HostileServer, sdk: VidgoClient, answer: Any
) -> None:
    """A submit answer without status, as a one-item list, with code "200" or "id" is accepted."""
    server.script(SUBMIT, reply(200, answer, process=True))
    assert await convert(sdk) == f"{server.url}/files/wav-1.wav"
    assert server.creations[TRACK] == 1
    assert len(server.hits(SUBMIT)) == 1


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(envelope(None), id="data-null"),
        pytest.param(envelope([{"task_id": "a"}, {"task_id": "b"}]), id="two-tasks"),
        pytest.param(envelope({"task_id": ""}), id="empty-id"),
        pytest.param(envelope({"task_id": "x" * 300}), id="long-id"),
        pytest.param(envelope({"task_id": True}), id="bool-id"),
        pytest.param(b'{"code": 200, "data": {"task_id": "a"}} trailing', id="trailing-junk"),
        pytest.param(b"\xff\xfe\x00garbage", id="binary"),
        pytest.param(b"", id="empty"),
    ],
)
@pytest.mark.asyncio
async def test_unusable_2xx_submit_answers_are_ambiguous(
    server: HostileServer, sdk: VidgoClient, answer: Any
) -> None:
    """A 2xx naming no usable task after a creation is ambiguous; 402 then -> outcome unknown."""
    server.script(SUBMIT, reply(200, answer, process=True), reply(402, error_body(402)))
    with pytest.raises(VidgoError) as info:
        await convert(sdk)
    assert type(info.value) is SubmitOutcomeUnknownError, repr(info.value)
    assert server.creations[TRACK] == 1


@pytest.mark.asyncio
async def test_error_code_in_http_200_is_an_error(server: HostileServer, sdk: VidgoClient) -> None:
    """An HTTP 200 carrying code 402 (no creation) raises InsufficientCreditsError."""
    server.script(SUBMIT, reply(200, {"code": 402, "msg": "insufficient credits"}))
    with pytest.raises(InsufficientCreditsError) as info:
        await convert(sdk)
    assert "insufficient credits" in info.value.message


@pytest.mark.asyncio
async def test_redirect_on_submit_is_not_followed(server: HostileServer, sdk: VidgoClient) -> None:
    """A 307 on a submit is never followed to the other host (the key would go with it)."""
    async with running("unused") as other:
        where = f"{other.url}/api/generate/submit"
        server.script(SUBMIT, *[reply(307, b"", [("Location", where)]) for _ in range(10_000)])
        with pytest.raises(VidgoError) as info:
            await convert(sdk, timeout=0.5)
        assert not isinstance(info.value, FORBIDDEN)
        assert other.log == []


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [301, 308])
async def test_a_permanent_redirect_on_a_submit_fails_at_once_as_unsent(
    server: HostileServer, sdk: VidgoClient, status: int, tmp_path: Any
) -> None:
    """A 301 or 308 (an ``http://`` base URL its host moves to https, an old path): the
    request was not processed, and no retry can go through. The submit fails at once
    naming the redirect, and a batch leaves the pair to be submitted by a re-run.
    Before, it was an ambiguous failure: retried until the deadline, and journalled
    as "unknown" for good (never resubmitted)."""
    moved = reply(status, b"", [("Location", "https://elsewhere.invalid/api/generate/submit")])
    server.script(SUBMIT, moved, moved)  # one for the call, one for the batch
    started = asyncio.get_running_loop().time()
    with pytest.raises(InvalidResponseError, match="base_url") as info:
        await convert(sdk, timeout=20)
    assert asyncio.get_running_loop().time() - started < 5
    assert info.value.status == status and len(server.hits(SUBMIT)) == 1
    journal = tmp_path / "wav.sqlite"
    [result] = [r async for r in sdk.convert_many([(PARENT, "other")], journal=journal)]
    assert isinstance(result.error, InvalidResponseError) and len(server.hits(SUBMIT)) == 2
    # The redirect is gone: the re-run submits the pair.
    [result] = [r async for r in sdk.convert_many([(PARENT, "other")], journal=journal)]
    assert result.ok, result.error


@pytest.mark.asyncio
async def test_a_307_on_a_submit_leaves_the_pair_to_a_re_run(
    server: HostileServer, sdk: VidgoClient, tmp_path: Any
) -> None:
    """A 307 ("repeat this request at that URI": a maintenance detour) is retried as an
    outage, and it proves the submit was not processed: a batch that gives up leaves the
    pair to be submitted by a re-run. Before, it counted as a submit that may have been
    accepted: the journal said "unknown", and a re-run never submitted the pair. (A 302
    or 303 may answer a POST that was processed: those stay "may have been accepted".)"""
    found = reply(307, b"", [("Location", "http://elsewhere.invalid/api/generate/submit")])
    server.script(SUBMIT, *[found] * 1000)
    journal = tmp_path / "wav.sqlite"
    pairs = [(PARENT, TRACK)]
    [result] = [r async for r in sdk.convert_many(pairs, journal=journal, timeout=0.5)]
    assert isinstance(result.error, InvalidResponseError), result.error
    server.unscript(SUBMIT)
    [result] = [r async for r in sdk.convert_many(pairs, journal=journal)]
    assert result.ok, result.error
    assert server.creations[TRACK] == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [302, 303, 307])
async def test_a_redirect_to_https_fails_at_once_and_leaves_the_pair_to_a_re_run(
    server: HostileServer, sdk: VidgoClient, status: int, tmp_path: Any
) -> None:
    """An http:// base URL whose proxy sends every request to https (Traefik answers 302
    by default): a ConfigurationError at once, nothing retried, and a batch's pair left
    to a re-run with the base URL fixed. Before, a 302 or 307 was retried until the
    deadline and journalled as "unknown": never submitted again."""
    https = server.url.replace("http://", "https://") + "/api/generate/submit"
    server.script(SUBMIT, reply(status, b"", [("Location", https)]))
    server.script(SUBMIT, reply(status, b"", [("Location", https)]))
    with pytest.raises(ConfigurationError, match="https://"):
        await convert(sdk, timeout=20)
    journal = tmp_path / "wav.sqlite"
    pairs = [(PARENT, TRACK)]
    [result] = [r async for r in sdk.convert_many(pairs, journal=journal)]
    assert isinstance(result.error, ConfigurationError), result.error
    assert len(server.hits(SUBMIT)) == 2
    [result] = [r async for r in sdk.convert_many(pairs, journal=journal)]  # fixed
    assert result.ok, result.error


@pytest.mark.asyncio
@pytest.mark.parametrize("retry_after", ["1", None], ids=["retry-after", "bare"])
async def test_a_429_on_one_submit_holds_the_clients_other_submits_back(
    server: HostileServer, make_sdk: MakeSdk, retry_after: str | None
) -> None:
    """A submit answered 429 (with ``Retry-After: 1``, or naming no delay: its retry's
    first pause, ``base_delay``, here 1 s) holds back the client's next submits, another
    track's too, for that second: a batch's other
    pairs do not go on meeting the limit. Before, only the refused submit paused:
    against an API answering every submit 429, a batch sent 20-40 submits a second."""
    sdk = make_sdk(retry=RetryPolicy(base_delay=1.0, max_delay=1.0, max_retry_after=2))
    headers = [] if retry_after is None else [("Retry-After", retry_after)]
    server.script(SUBMIT, reply(429, {"code": 429, "message": "slow down"}, headers))
    first = asyncio.create_task(convert(sdk))
    await until(lambda: server.hits(SUBMIT))
    await asyncio.sleep(0.05)  # answered
    other = asyncio.create_task(sdk.convert_to_wav(PARENT, "another", timeout=5))
    await asyncio.wait_for(asyncio.gather(first, other), 10)
    sent = [hit.at for hit in server.hits(SUBMIT)]
    assert len(sent) == 3 and min(sent[1:]) - sent[0] >= 0.9, sent


@pytest.mark.asyncio
@pytest.mark.parametrize("retry_after", ["1", None], ids=["retry-after", "bare"])
async def test_after_a_429s_pause_one_submit_goes_first_and_the_others_follow_its_answer(
    server: HostileServer, make_sdk: MakeSdk, retry_after: str | None
) -> None:
    """Submits held back by a 429's pause do not all go when it ends: one goes first,
    alone; met by another 429 it pauses them again, answered with its task it lets
    them go. A limit that still holds costs one refused submit a pause, not one per
    waiting caller (before: all five at once, four of them into the 429)."""
    sdk = make_sdk(retry=RetryPolicy(base_delay=1.0, max_delay=1.0, max_retry_after=2))
    headers = [] if retry_after is None else [("Retry-After", retry_after)]
    slow_down = reply(429, {"code": 429, "message": "slow down"}, headers)
    server.script(SUBMIT, slow_down, slow_down)
    first = asyncio.create_task(sdk.convert_to_wav(PARENT, "track-0", timeout=8))
    await until(lambda: server.hits(SUBMIT))
    await asyncio.sleep(0.05)  # answered: the pause started
    others = [
        asyncio.create_task(sdk.convert_to_wav(PARENT, f"track-{k}", timeout=8))
        for k in range(1, 5)
    ]
    await asyncio.wait_for(asyncio.gather(first, *others), 12)
    sent = [hit.at - server.hits(SUBMIT)[0].at for hit in server.hits(SUBMIT)]
    assert len(sent) == 7, sent  # 429, the first after the pause: 429, then it and 4 more
    assert 0.9 <= sent[1] < 1.5 and 1.9 <= sent[2] < 2.6, sent
    assert all(sent[2] <= at < sent[2] + 0.5 for at in sent[3:]), sent


@pytest.mark.asyncio
async def test_a_slow_answer_to_the_first_submit_after_a_pause_holds_the_others_two_seconds(
    server: HostileServer, make_sdk: MakeSdk
) -> None:
    """The submits waiting for the answer of the first one after a pause go after 2 s if
    it is slow: one hanging request does not hold every submit of the client back to
    its request timeout. Before, they waited for it and ended at their deadline, unsent."""
    sdk = make_sdk(retry=RetryPolicy(base_delay=0.05, max_delay=0.1, max_retry_after=2))
    release, arrived = asyncio.Event(), asyncio.Event()
    slow_down = reply(429, {"code": 429, "message": "slow down"}, [("Retry-After", "0.3")])
    server.script(SUBMIT, slow_down, gate(release, arrived))
    first = asyncio.create_task(sdk.convert_to_wav(PARENT, "track-0", timeout=10))
    await until(lambda: server.hits(SUBMIT))
    await asyncio.sleep(0.05)  # answered: the pause started
    other = asyncio.create_task(sdk.convert_to_wav(PARENT, "track-1", timeout=10))
    await asyncio.wait_for(arrived.wait(), 5)  # the first after the pause, held
    started = asyncio.get_running_loop().time()
    try:
        url = await asyncio.wait_for(other, 5)
        waited = asyncio.get_running_loop().time() - started
    finally:
        release.set()
    assert url.endswith(".wav") and 1.8 <= waited < 3, waited
    assert (await asyncio.wait_for(first, 5)).endswith(".wav")


@pytest.mark.asyncio
async def test_a_submit_that_waited_out_a_pause_keeps_to_its_deadline(
    server: HostileServer, make_sdk: MakeSdk
) -> None:
    """A submit that waited 2 s of its 4 s deadline for a 429's pause has 2 s left for
    its request, not 4: a slow answer ends it at its deadline (SubmitOutcomeUnknownError:
    it was sent). Before, it ended 2 s late."""
    sdk = make_sdk(retry=RetryPolicy(base_delay=0.05, max_delay=0.1, max_retry_after=3))
    release = asyncio.Event()
    slow_down = reply(429, {"code": 429, "message": "slow down"}, [("Retry-After", "2")])
    server.script(SUBMIT, slow_down, gate(release))
    with pytest.raises(VidgoError):  # the Retry-After outlasts its 1 s deadline: it gives up
        await asyncio.wait_for(sdk.convert_to_wav(PARENT, "track-0", timeout=1), 5)
    started = asyncio.get_running_loop().time()
    try:
        with pytest.raises(SubmitOutcomeUnknownError):
            await asyncio.wait_for(sdk.convert_to_wav(PARENT, "track-1", timeout=4), 10)
    finally:
        release.set()
    assert asyncio.get_running_loop().time() - started < 4.6


@pytest.mark.asyncio
async def test_429s_naming_no_delay_in_a_row_double_the_submits_pause(
    server: HostileServer, make_sdk: MakeSdk
) -> None:
    """Each 429 naming no delay that follows the pause the last one started (the limit
    still holds) pauses the client's submits twice as long: ``base_delay`` (0.5 s),
    then 1 s, up to ``max_delay``."""
    sdk = make_sdk(retry=RetryPolicy(base_delay=0.5, max_delay=5.0, max_retry_after=5))
    bare = reply(429, {"code": 429, "message": "slow down"})
    server.script(SUBMIT, bare, bare)
    await asyncio.wait_for(convert(sdk, timeout=8), 12)
    sent = [hit.at for hit in server.hits(SUBMIT)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert len(sent) == 3 and 0.45 <= gaps[0] < 0.8 and 0.95 <= gaps[1] < 1.3, gaps


@pytest.mark.asyncio
async def test_a_submit_answered_without_a_429_resets_the_submits_pause(
    server: HostileServer, make_sdk: MakeSdk
) -> None:
    """After a submit that went through, the next 429 naming no delay pauses the submits
    for ``base_delay`` again, not twice the last pause: a 429 now and then (a busy
    gateway) costs a short pause each, not a batch held at ``max_delay``. (An
    injected 10 % of 429s kept a batch paused most of the time: 2.7x its time.)"""
    sdk = make_sdk(retry=RetryPolicy(base_delay=0.5, max_delay=5.0, max_retry_after=5))
    bare = reply(429, {"code": 429, "message": "slow down"})
    for track in ("one", "two", "three"):
        server.script(SUBMIT, bare)
        await asyncio.wait_for(sdk.convert_to_wav(PARENT, track, timeout=8), 12)
    sent = [hit.at for hit in server.hits(SUBMIT)]
    pauses = [sent[k + 1] - sent[k] for k in (0, 2, 4)]  # each track's 429, then its retry
    assert len(sent) == 6 and all(0.45 <= pause < 0.8 for pause in pauses), pauses


@pytest.mark.asyncio
async def test_half_closed_submit_then_conflict_carries_on(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """A submit closed without an answer after a creation is ambiguous; the 409 settles it."""
    server.script(SUBMIT, raw(b"", process=True))
    assert await convert(sdk) == f"{server.url}/files/wav-1.wav"
    assert server.creations[TRACK] == 1


@pytest.mark.parametrize("code", [201, 202])
@pytest.mark.asyncio
async def test_a_success_code_other_than_200_is_an_acceptance(
    server: HostileServer, sdk: VidgoClient, code: int
) -> None:
    """An envelope ``code`` is read like the HTTP status: any 2xx accepts, and its task
    id is the submit's (it was an APIError, and the paid task was lost)."""
    server.script(SUBMIT, reply(200, envelope({"task_id": "conv-1"}, code=code)))
    accepted = await asyncio.wait_for(sdk.submit_wav(PARENT, TRACK), 5)
    assert accepted.task_id == "conv-1"
    assert len(server.hits(SUBMIT)) == 1


@pytest.mark.parametrize("code", [0, 102, 302, 999])
@pytest.mark.asyncio
async def test_a_code_neither_success_nor_error_leaves_the_submit_unknown(
    server: HostileServer, sdk: VidgoClient, code: int
) -> None:
    """An envelope ``code`` that is no error status (not 4xx, not 5xx) may have come with
    an accepted task: the outcome is unknown, not a definite failure, and it is not sent
    again."""
    server.script(SUBMIT, reply(200, envelope({"task_id": "gen-2"}, code=code)))
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await asyncio.wait_for(
            sdk.submit("separate-vocals", {"task_id": PARENT, "audio_id": TRACK}), 8
        )
    assert carries(info.value, code)
    assert len(server.hits(SUBMIT)) == 1
