"""The retry classifier: Retry-After parsing, which failures are transient, and what a
failed submit may have done on the server (refused, ambiguous, conflict, resumed).

Submit classification is driven through the public client against ``FakeVidgo``
with injected faults; the fake's own records (``accept_count``, request counts) are
the ground truth.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from support import FAST_RETRY, MakeClient, MakeFake

from vidgo_async import (
    AlreadyConvertedError,
    APIError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    ConflictError,
    ConversionResult,
    RateLimitError,
    RetryPolicy,
    ServerError,
    SubmitOutcomeUnknownError,
    TaskStatus,
    TaskTimeoutError,
    TransportError,
    VidgoClient,
    VidgoError,
)
from vidgo_async._batch.journal import Entry, Journal, State
from vidgo_async._batch.verdicts import state_after_failed_submit
from vidgo_async._timing.classify import retryable
from vidgo_async._wire.envelope import parse_retry_after
from vidgo_async.errors import InvalidResponseError, RequestTimeoutError
from vidgo_async.testing import FakeVidgo, Fault

NOW = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
CAP = 100.0
QUICK = RetryPolicy(max_attempts=4, base_delay=0.001, max_delay=0.005, max_retry_after=0.01)
MANY = 1000  # faults enough for every attempt of a call

# ---------------------------------------------------------------- Retry-After

RETRY_AFTER = [
    # delta-seconds
    ("0", 0.0),
    ("1", 1.0),
    ("1.5", 1.5),
    (" 30 ", 30.0),
    ("+5", 5.0),
    ("100", 100.0),
    ("101", CAP),
    ("1e9", CAP),
    ("99999999999999999999999", CAP),
    ("-1", 0.0),
    ("-0.5", 0.0),
    ("-1e9", 0.0),
    # non-finite and junk: the caller's own backoff applies
    ("nan", None),
    ("NaN", None),
    ("inf", None),
    ("-inf", None),
    ("Infinity", None),
    ("1e400", None),
    ("", None),
    ("   ", None),
    (None, None),
    ("soon", None),
    ("12 seconds", None),
    ("0x10", None),
    ("1,5", None),
    # HTTP dates
    ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
    ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
    ("Wed, 21 Oct 2015 09:28:00 GMT", CAP),
    ("Fri, 31 Dec 9999 23:59:59 GMT", CAP),
    ("Wed, 21 Oct 2015 09:28:10 +0200", 10.0),
    ("Wed, 21 Oct 2015 07:28:10 -0000", 10.0),  # no zone: read as UTC
    ("Wed, 21 Oct 2015 07:28:10", 10.0),
    # malformed dates
    ("Wed, 21 Oct 99999 07:28:00 GMT", None),
    ("Fri, 31 Dec 9999 23:59:59 +2400", None),
    ("Mon, 99 Foo 2015 07:28:00 GMT", None),
    ("Tue, 31 Feb 2015 07:28:00 GMT", None),
    ("Wed, 21 Oct 2015 25:28:00 GMT", None),
    ("Wed, 21 Oct 2015", None),
]


@pytest.mark.parametrize(("value", "expected"), RETRY_AFTER, ids=[repr(v) for v, _ in RETRY_AFTER])
def test_retry_after_table(value: str | None, expected: float | None) -> None:
    """Retry-After reads seconds or HTTP dates, floors at 0, caps, and rejects junk."""
    assert parse_retry_after(value, cap=CAP, now=NOW) == expected


def test_retry_after_date_without_now_uses_the_wall_clock() -> None:
    """Without ``now``, a date is measured from the current time (a past one is 0)."""
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", cap=CAP) == 0.0
    future = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", cap=float("inf"))
    assert future is not None and future > 1e11


# ---------------------------------------------------------------- is_transient

TRANSIENT_TABLE = [
    (ServerError("x", status=500), True),
    (ServerError("x", status=502), True),
    (ServerError("x", status=503), True),
    (ServerError("x", status=504), True),
    (ServerError("x", status=501), True),  # refused: not processed
    (ServerError("x", status=505), True),  # ambiguous, like every other 5xx
    (ServerError("x", status=520), True),
    (ServerError("x", status=599), True),
    (RateLimitError("x", status=429), True),
    (TransportError("x"), True),
    (TransportError("x", sent=False), True),
    (RequestTimeoutError("x"), True),
    (InvalidResponseError("x"), True),
    (InvalidResponseError("x", status=302), True),  # a redirect for now: read as an outage
    (InvalidResponseError("x", status=303), True),
    (InvalidResponseError("x", status=307), True),
    (InvalidResponseError("x", status=301), False),  # moved for good: check base_url
    (InvalidResponseError("x", status=308), False),
    (BadRequestError("x", status=400), False),
    (ConflictError("x", status=409), False),
    (AlreadyConvertedError("x", status=409), False),
    (APIError("x", status=418), False),
    (APIError("x", status=0), True),  # an envelope code neither 2xx, 4xx nor 5xx: ambiguous
    (APIError("x", status=102), True),
    (APIError("x", status=302), True),
    (APIError("x", status=999), True),
    (VidgoError("x"), False),
    (ValueError("x"), False),
]


@pytest.mark.parametrize(
    ("exc", "expected"),
    TRANSIENT_TABLE,
    ids=[f"{type(e).__name__}-{getattr(e, 'status', '')}" for e, _ in TRANSIENT_TABLE],
)
def test_is_transient_table(exc: BaseException, expected: bool) -> None:
    """Every failure but a final answer is retried: 5xx, 429, transport, invalid answers."""
    assert retryable(exc) is expected


# ---------------------------------------------------------------- GET and poll classification

RETRIED_GET = [
    pytest.param(Fault.server_error(500), id="500"),
    pytest.param(Fault.server_error(503, body="html"), id="503-html"),
    pytest.param(Fault.rate_limited(), id="429"),
    pytest.param(Fault.rate_limited("0"), id="429-retry-after-0"),
    pytest.param(Fault.rate_limited("5"), id="429-retry-after"),
    pytest.param(Fault.garbage("truncated"), id="garbage"),
    pytest.param(Fault.reset_before(), id="reset"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", RETRIED_GET)
async def test_transient_get_failure_is_retried(
    fake: FakeVidgo, make_client: MakeClient, fault: Fault
) -> None:
    """A status read meeting a transient failure is retried and answers."""
    client = make_client(retry=QUICK)
    task_id = fake.seed_task(status="running")
    fake.inject(fault, route="detail")
    assert (await client.get_task(task_id)).status is TaskStatus.RUNNING
    assert fake.request_count("detail") == 2


@pytest.mark.asyncio
async def test_transient_status_read_is_retried(fake: FakeVidgo, make_client: MakeClient) -> None:
    """The generic status endpoint is retried like Music Detail."""
    client = make_client(retry=QUICK)
    task_id = fake.add_media_task("image")
    fake.inject(Fault.server_error(502), route="status")
    assert (await client.get_status(task_id)).task_id == task_id
    assert fake.request_count("status") == 2


@pytest.mark.asyncio
async def test_transient_balance_read_is_retried(fake: FakeVidgo, make_client: MakeClient) -> None:
    """A read outside the poll rate cap (balance) is retried the same way."""
    client = make_client(retry=QUICK, max_polls_per_second=0.01)
    fake.inject(Fault.rate_limited(), route="balance")
    assert (await client.balance()).credits_amount == fake.credits
    assert fake.request_count("balance") == 2


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [501, 505])
async def test_every_5xx_get_is_retried(fake: FakeVidgo, client: VidgoClient, status: int) -> None:
    """A 5xx outside 500/502/503/504 is retried too (refused or ambiguous, never final)."""
    fake.inject(Fault.server_error(status), route="detail", times=MANY)
    with pytest.raises(ServerError) as info:
        await client.get_task(fake.seed_task())
    assert info.value.status == status
    assert fake.request_count("detail") == FAST_RETRY.max_attempts


@pytest.mark.asyncio
async def test_get_gives_up_after_max_attempts(fake: FakeVidgo, make_client: MakeClient) -> None:
    """A read failing transiently on every attempt raises the last failure."""
    client = make_client(retry=QUICK)
    fake.inject(Fault.rate_limited(), route="detail", times=MANY)
    with pytest.raises(RateLimitError):
        await client.get_task(fake.seed_task())
    assert fake.request_count("detail") == QUICK.max_attempts


@pytest.mark.asyncio
async def test_spent_retry_budget_stops_a_read_early(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """With the client-wide budget spent, a read stops before max_attempts."""
    client = make_client(retry=RetryPolicy(max_attempts=10, base_delay=0.001, budget=2.0))
    fake.inject(Fault.server_error(500), route="detail", times=MANY)
    with pytest.raises(ServerError):
        await client.get_task(fake.seed_task())
    assert fake.request_count("detail") == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", RETRIED_GET)
async def test_wait_polls_through_transient_failures(
    fake: FakeVidgo, make_client: MakeClient, fault: Fault
) -> None:
    """A wait's polls meeting transient failures go on to the finished task."""
    client = make_client(retry=QUICK)
    task_id = fake.seed_task(status="finished")
    fake.inject(fault, route="detail", times=2)
    task = await client.wait(task_id, timeout=10)
    assert task.status is TaskStatus.FINISHED
    assert fake.request_count("detail") == 3


@pytest.mark.asyncio
async def test_wait_ends_at_its_deadline_when_no_poll_slot_comes(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """A poll rate cap that cannot grant a slot before the deadline ends the wait in time."""
    client = make_client(max_polls_per_second=0.01)  # one read per 100 s
    task_id = fake.seed_task(status="running")
    with pytest.raises(TaskTimeoutError):
        await asyncio.wait_for(client.wait(task_id, timeout=0.2), timeout=5.0)
    assert fake.request_count("detail") == 1


# ---------------------------------------------------------------- submit: refused or ambiguous

REFUSED = [
    pytest.param(Fault.rate_limited(), id="429"),
    pytest.param(Fault.rate_limited("1"), id="429-retry-after"),
    pytest.param(Fault.server_error(503), id="503"),
    pytest.param(Fault.server_error(503, body="html"), id="503-html"),
    pytest.param(Fault.server_error(503, body="empty"), id="503-empty"),
    pytest.param(Fault.code_in_200(503), id="code-503-in-200"),
    pytest.param(Fault.code_in_200(429), id="code-429-in-200"),
]
AMBIGUOUS = [
    pytest.param(Fault.server_error(500), id="500"),
    pytest.param(Fault.server_error(502, body="html"), id="502-html"),
    pytest.param(Fault.server_error(504, body="empty"), id="504-empty"),
    pytest.param(Fault.code_in_200(500), id="code-500-in-200"),
    pytest.param(Fault.garbage("html"), id="garbage"),
    pytest.param(Fault.http_error(200, {"code": 200, "data": []}), id="2xx-not-a-task"),
    pytest.param(Fault.reset_before(), id="reset-before"),
    pytest.param(Fault.reset_after(), id="reset-after"),
]


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", REFUSED)
async def test_refused_then_409_is_already_converted(
    fake: FakeVidgo, make_client: MakeClient, fault: Fault
) -> None:
    """A failure proving the submit was not processed leaves a later 409 definitive."""
    client = make_client(retry=QUICK)
    await client.submit_wav("p", "a")
    fake.inject(fault, route="submit")
    with pytest.raises(AlreadyConvertedError):
        await client.submit_wav("p", "a")
    assert fake.accept_count["a"] == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", AMBIGUOUS)
async def test_ambiguous_then_409_is_outcome_unknown(
    fake: FakeVidgo, make_client: MakeClient, fault: Fault
) -> None:
    """A failure that may hide an acceptance turns a later 409 into "outcome unknown"
    (another client converted the track: this one knows no task of it)."""
    client = make_client(retry=QUICK)
    await make_client(retry=QUICK).submit_wav("p", "a")
    fake.inject(fault, route="submit")
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await client.submit_wav("p", "a")
    assert isinstance(info.value.__cause__, ConflictError)
    assert fake.accept_count["a"] == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", REFUSED)
async def test_refused_until_max_attempts_raises_the_last_failure(
    fake: FakeVidgo, make_client: MakeClient, fault: Fault
) -> None:
    """A bare submit refused on every attempt raises that failure, not "unknown"."""
    client = make_client(retry=QUICK)
    fake.inject(fault, route="submit", times=MANY)
    with pytest.raises((RateLimitError, ServerError)):
        await client.submit_wav("p", "a")
    assert fake.request_count("submit") == QUICK.max_attempts
    assert fake.accept_count["a"] == 0


@pytest.mark.asyncio
@pytest.mark.parametrize("fault", AMBIGUOUS)
async def test_ambiguous_until_max_attempts_is_outcome_unknown(
    fake: FakeVidgo, make_client: MakeClient, fault: Fault
) -> None:
    """A bare submit that never got a clear answer raises SubmitOutcomeUnknownError."""
    client = make_client(retry=QUICK)
    fake.inject(fault, route="submit", times=MANY)
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await client.submit_wav("p", "a")
    assert isinstance(info.value.__cause__, VidgoError)
    assert fake.request_count("submit") == QUICK.max_attempts
    assert fake.accept_count["a"] <= 1


@pytest.mark.asyncio
async def test_one_ambiguous_attempt_taints_later_refusals(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """An ambiguous first attempt followed only by refusals is still "outcome unknown"."""
    client = make_client(retry=QUICK)
    fake.inject(Fault.server_error(500), route="submit")
    fake.inject(Fault.server_error(503), route="submit", times=MANY)
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await client.submit_wav("p", "a")
    assert isinstance(info.value.__cause__, ServerError)
    assert info.value.__cause__.status == 503


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.asyncio
async def test_unsent_submits_are_retried_and_never_unknown(make_client: MakeClient) -> None:
    """Refused connections (never sent) are retried up to max_attempts, then raised as is."""
    client = make_client(base_url=f"http://127.0.0.1:{free_port()}", retry=QUICK)
    with pytest.raises(TransportError) as info:
        await client.submit_wav("p", "a")
    assert info.value.sent is False
    assert not isinstance(info.value, SubmitOutcomeUnknownError)


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 422])
async def test_definitive_submit_failure_is_raised_after_one_request(
    fake: FakeVidgo, client: VidgoClient, status: int
) -> None:
    """A definitive answer to a submit is raised at once, never retried."""
    fake.inject(Fault.http_error(status, {"code": status, "message": "no"}), route="submit")
    with pytest.raises(APIError) as info:
        await client.submit_wav("p", "a")
    assert info.value.status == status
    assert fake.request_count("submit") == 1


@pytest.mark.asyncio
async def test_definitive_answer_after_ambiguity_leaves_the_outcome_unknown(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """A 400 to a retry after an ambiguous 500 settles nothing: the first attempt may
    have converted the track, so the outcome is unknown and carries the 400."""
    client = make_client(retry=QUICK)
    fake.inject(Fault.server_error(500), route="submit")
    fake.inject(Fault.http_error(400, {"message": "bad input"}), route="submit")
    with pytest.raises(SubmitOutcomeUnknownError, match="bad input") as info:
        await client.submit_wav("p", "a")
    assert isinstance(info.value.answer, BadRequestError)


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [501, 505, 520, 524, 599])
async def test_other_5xx_submits_are_retried_and_accepted_once(
    fake: FakeVidgo, make_client: MakeClient, status: int
) -> None:
    """501 (refused) and every other 5xx (ambiguous) are retried; the retry is accepted."""
    client = make_client(retry=QUICK)
    fake.inject(Fault.server_error(status), route="submit")
    task = await client.submit_wav("p", "a")
    assert fake.accepted["a"] == [task.task_id]
    assert fake.request_count("submit") == 2


@pytest.mark.asyncio
async def test_spent_retry_budget_stops_a_bare_submit_early(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """With the client-wide budget spent, a bare submit stops before max_attempts."""
    client = make_client(retry=RetryPolicy(max_attempts=10, base_delay=0.001, budget=2.0))
    fake.inject(Fault.server_error(503), route="submit", times=MANY)
    with pytest.raises(ServerError):
        await client.submit_wav("p", "a")
    assert fake.request_count("submit") == 1


@pytest.mark.asyncio
async def test_refused_submit_then_success_is_accepted_once(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """Refusals followed by an acceptance give the task, accepted exactly once."""
    client = make_client(retry=QUICK)
    fake.inject(Fault.server_error(503), route="submit", times=QUICK.max_attempts - 1)
    task = await client.submit_wav("p", "a", callback_url="https://example.com/cb")
    assert fake.accepted["a"] == [task.task_id]
    assert fake.requests_to("submit")[-1].json["callback_url"] == "https://example.com/cb"


# ---------------------------------------------------------------- submit with a deadline


@pytest.mark.asyncio
async def test_deadline_submit_goes_past_max_attempts(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """With a deadline, refused submits are retried beyond max_attempts until it passes."""
    client = make_client(retry=RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.005))
    fake.inject(Fault.server_error(503), route="submit", times=MANY)
    # The last attempt may be cut off by the deadline, which makes it ambiguous.
    with pytest.raises((ServerError, SubmitOutcomeUnknownError)):
        await client.convert_to_wav("p", "a", timeout=0.3)
    assert fake.request_count("submit") > 2
    assert fake.accept_count["a"] == 0


@pytest.mark.asyncio
async def test_no_submit_is_sent_once_the_deadline_has_passed(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """A pause that reaches the deadline ends the submit with the refusal, sending nothing more."""
    client = make_client(retry=RetryPolicy(base_delay=0.001, max_retry_after=5.0))
    busy = Fault.http_error(503, {"code": 503, "message": "busy"}, {"Retry-After": "5"})
    fake.inject(busy, route="submit")
    fake.inject(Fault.stall(0.5), route="submit", times=MANY)  # any later attempt hangs
    with pytest.raises(ServerError):
        await client.convert_to_wav("p", "a", timeout=0.2)
    assert fake.request_count("submit") == 1
    assert fake.accept_count["a"] == 0


@pytest.mark.asyncio
async def test_deadline_submit_ambiguous_to_the_end_is_outcome_unknown(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """With a deadline, ambiguous failures until it passes end as "outcome unknown"."""
    client = make_client(retry=RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.005))
    fake.inject(Fault.server_error(500), route="submit", times=MANY)
    with pytest.raises(SubmitOutcomeUnknownError):
        await client.convert_to_wav("p", "a", timeout=0.3)
    assert fake.request_count("submit") > 2


@pytest.mark.asyncio
async def test_deadline_submit_ignores_the_spent_budget(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """A submit with a deadline keeps retrying refusals even with the budget spent."""
    client = make_client(retry=RetryPolicy(max_attempts=2, base_delay=0.001, budget=1.0))
    fake.inject(Fault.rate_limited(), route="submit", times=5)
    url = await client.convert_to_wav("p", "a", timeout=10)
    assert url.endswith(".wav")
    assert fake.accept_count["a"] == 1


# ---------------------------------------------------------------- 409 after ambiguity


@pytest.mark.asyncio
async def test_clean_409_for_another_model_is_a_plain_conflict(
    fake: FakeVidgo, client: VidgoClient
) -> None:
    """A 409 on a clean first attempt of another model is ConflictError only."""
    await client.submit("separate-vocals", {"task_id": "p", "audio_id": "a"})
    with pytest.raises(ConflictError) as info:
        await client.submit("separate-vocals", {"task_id": "p", "audio_id": "a"})
    assert not isinstance(info.value, AlreadyConvertedError)


@pytest.mark.asyncio
async def test_clean_409_naming_a_task_is_already_converted(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """A 409 on a clean first attempt is AlreadyConvertedError even when it names the task."""
    fake = await make_fake(conflict_includes_task_id=True)
    client = make_client(fake)
    first = await client.submit_wav("p", "a")
    with pytest.raises(AlreadyConvertedError) as info:
        await client.submit_wav("p", "a")
    assert info.value.task_id == first.task_id


@pytest.mark.asyncio
async def test_409_naming_the_task_after_ambiguity_gives_that_task(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """After an unanswered accepted submit, a 409 naming the task hands it back as UNKNOWN."""
    fake = await make_fake(conflict_includes_task_id=True)
    client = make_client(fake, retry=QUICK)
    fake.inject(Fault.reset_after(), route="submit")
    task = await client.submit("convert-to-wav", {"task_id": "p", "audio_id": "a"})
    assert fake.tasks[task.task_id].model == "convert-to-wav"
    assert task.status is TaskStatus.UNKNOWN
    assert fake.request_count("submit") == 2


@pytest.mark.asyncio
async def test_another_models_unanswered_submit_is_not_sent_again(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """Only WAV conversions are refused a second time: another model's accepted,
    unanswered submit is SubmitOutcomeUnknownError, not a second (billed) task."""
    fake = await make_fake(conflict_includes_task_id=True)
    client = make_client(fake, retry=QUICK)
    fake.inject(Fault.reset_after(), route="submit")
    with pytest.raises(SubmitOutcomeUnknownError):
        await client.submit("separate-vocals", {"task_id": "p", "audio_id": "a"})
    assert fake.request_count("submit") == 1
    assert len(fake.tasks) == 1


# ---------------------------------------------------------------- resumed submits (batch journal)


async def run_batch(client: VidgoClient, journal: Path, audio_id: str) -> ConversionResult:
    """One pair through convert_many with ``journal``."""
    results = [r async for r in client.convert_many([("p", audio_id)], journal=journal, timeout=10)]
    (result,) = results
    return result


def interrupted(journal: Path, audio_id: str) -> None:
    """Record the pair as mid-submit, as a run killed during its submit leaves it."""
    book = Journal(journal)
    try:
        book.record("p", audio_id, Entry.written(State.SUBMITTING))
    finally:
        book.close()


@pytest.mark.asyncio
async def test_resumed_submit_meeting_409_is_outcome_unknown(
    fake: FakeVidgo, client: VidgoClient, make_client: MakeClient, tmp_path: Path
) -> None:
    """A re-run of an interrupted submit that meets a bare 409 reports "outcome unknown"."""
    await make_client(fake).submit_wav("p", "a")  # what the killed run got accepted
    interrupted(tmp_path / "j.sqlite", "a")
    result = await run_batch(client, tmp_path / "j.sqlite", "a")
    assert isinstance(result.error, SubmitOutcomeUnknownError)
    assert fake.accept_count["a"] == 1


@pytest.mark.asyncio
async def test_resumed_submit_meeting_409_with_task_id_finishes_that_task(
    make_fake: MakeFake, make_client: MakeClient, tmp_path: Path
) -> None:
    """A re-run of an interrupted submit resumes the task a 409 names."""
    fake = await make_fake(conflict_includes_task_id=True)
    client = make_client(fake)
    first = await client.submit_wav("p", "a")
    interrupted(tmp_path / "j.sqlite", "a")
    result = await run_batch(client, tmp_path / "j.sqlite", "a")
    assert result.ok and result.task_id == first.task_id
    assert fake.accept_count["a"] == 1


@pytest.mark.asyncio
async def test_resumed_submit_never_accepted_is_submitted_once(
    fake: FakeVidgo, client: VidgoClient, tmp_path: Path
) -> None:
    """A re-run of an interrupted submit the server never saw converts the track once."""
    interrupted(tmp_path / "j.sqlite", "a")
    result = await run_batch(client, tmp_path / "j.sqlite", "a")
    assert result.ok
    assert fake.accept_count["a"] == 1


@pytest.mark.parametrize(
    ("status", "account", "pair"),
    [
        (400, False, True),
        (401, True, False),
        (402, True, False),
        (403, True, False),
        (404, False, True),
        (409, False, True),
        (422, False, True),
        (429, False, False),
        (500, False, False),
    ],
)
def test_the_final_answers_by_what_they_refuse(status: int, account: bool, pair: bool) -> None:
    """Which final answers refuse the account or the pair submitted; none ends the task
    waited on (only the server saying it failed does: a 404 or a proxy's 403 on a read
    settled a batch's paid pair as failed for good)."""
    from vidgo_async._timing.classify import ends_the_task, refuses_the_account, refuses_the_pair
    from vidgo_async._wire.envelope import api_error

    exc = api_error(status, None, "no", None, None)
    assert (refuses_the_account(exc), refuses_the_pair(exc)) == (account, pair)
    assert not ends_the_task(exc)


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        # No later answer (the deadline came first): the 409 rule never ran, a re-run
        # runs it. It was "unknown" for good: a paid task never waited on.
        (None, "submitting"),
        (AuthenticationError("refused", status=401), "submitting"),  # likewise
        (AlreadyConvertedError("converted", status=409), "unknown"),  # the rule ran
        (ClientClosedError("closed", sent=False), "submitting"),  # a stop: a re-run settles it
        # The journal could not confirm the claim before the retry (it may be another
        # worker's now): stopped by the batch, as by a stop. It was "unknown" for good.
        (ConfigurationError("the journal could not confirm the claim"), "submitting"),
    ],
    ids=["none", "account", "conflict", "closed", "journal-failed"],
)
def test_a_submit_of_unknown_outcome_is_journalled_by_what_ended_it(
    answer: VidgoError | None, state: str
) -> None:
    unknown = SubmitOutcomeUnknownError("?", model="convert-to-wav", input={}, answer=answer)
    assert state_after_failed_submit(unknown).value == state
