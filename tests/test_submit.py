"""Submit safety: a track is never converted twice, and an unclear outcome is said plainly."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
from support import MakeClient, MakeFake

from vidgo_async import (
    AlreadyConvertedError,
    BadRequestError,
    ConflictError,
    InsufficientCreditsError,
    RetryPolicy,
    SubmitOutcomeUnknownError,
    TaskStatus,
    Timeouts,
    TransportError,
    VidgoClient,
    VidgoError,
)
from vidgo_async.testing import FakeVidgo, Fault

pytestmark = pytest.mark.asyncio


async def test_submit_wav_returns_new_task(fake: FakeVidgo, client: VidgoClient) -> None:
    """submit_wav answers the new conversion task, not the parent."""
    task = await client.submit_wav("parent-1", "audio-1")
    assert task.task_id != "parent-1"
    assert task.task_id in fake.accepted["audio-1"]
    assert task.status is TaskStatus.NOT_STARTED


async def test_submit_wav_sends_documented_body(fake: FakeVidgo, client: VidgoClient) -> None:
    """The submit body is the documented one, without callback_url when none is given."""
    await client.submit_wav("parent-1", "audio-1")
    (request,) = fake.requests_to("submit")
    assert request.json == {
        "model": "convert-to-wav",
        "input": {"task_id": "parent-1", "audio_id": "audio-1"},
    }


async def test_submit_sends_callback_url_when_given(fake: FakeVidgo, client: VidgoClient) -> None:
    """A given callback_url is sent in the submit body."""
    await client.submit_wav("p", "a", callback_url="https://example.com/cb?token=x")
    (request,) = fake.requests_to("submit")
    assert request.json["callback_url"] == "https://example.com/cb?token=x"


async def test_generic_submit_serves_other_models(fake: FakeVidgo, client: VidgoClient) -> None:
    """submit() sends any model and input as given."""
    task = await client.submit("separate-vocals", {"task_id": "p", "audio_id": "a", "n": 2})
    (request,) = fake.requests_to("submit")
    assert request.json == {
        "model": "separate-vocals",
        "input": {"task_id": "p", "audio_id": "a", "n": 2},
    }
    assert fake.tasks[task.task_id].model == "separate-vocals"


async def test_reset_after_accept_then_409_is_outcome_unknown(
    fake: FakeVidgo, client: VidgoClient
) -> None:
    """A reset after the server accepted, then a retry meeting 409, is SubmitOutcomeUnknownError."""
    fake.inject(Fault.reset_after(), route="submit")
    with pytest.raises(SubmitOutcomeUnknownError) as info:
        await client.submit_wav("p", "audio-1")
    assert fake.accept_count["audio-1"] == 1
    assert info.value.model == "convert-to-wav"
    assert info.value.input == {"task_id": "p", "audio_id": "audio-1"}


async def test_convert_after_accepted_reset_is_outcome_unknown(
    fake: FakeVidgo, client: VidgoClient
) -> None:
    """convert_to_wav reports an unclear submit rather than converting the track again."""
    fake.inject(Fault.reset_after(), route="submit")
    with pytest.raises(SubmitOutcomeUnknownError):
        await client.convert_to_wav("p", "audio-1", timeout=10)
    assert fake.accept_count["audio-1"] == 1


async def test_stalled_accept_then_409_is_outcome_unknown(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """A submit accepted but never answered (timeout) then 409 is SubmitOutcomeUnknownError."""
    client = make_client(timeouts=Timeouts(connect=1.0, total=0.2))
    fake.inject(Fault.stall(30, after_accept=True), route="submit")
    with pytest.raises(SubmitOutcomeUnknownError):
        await client.submit_wav("p", "audio-1")
    assert fake.accept_count["audio-1"] == 1


async def test_409_with_task_id_after_reset_carries_on(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """With a task id in the 409 body, convert_to_wav resumes the accepted task."""
    fake = await make_fake(conflict_includes_task_id=True)
    client = make_client(fake)
    fake.inject(Fault.reset_after(), route="submit")
    url = await client.convert_to_wav("p", "audio-1", timeout=10)
    (accepted,) = fake.accepted["audio-1"]
    assert accepted in url
    assert fake.accept_count["audio-1"] == 1


async def test_409_on_clean_first_attempt_is_already_converted(
    fake: FakeVidgo, client: VidgoClient
) -> None:
    """Submitting a track that was converted before raises AlreadyConvertedError."""
    await client.submit_wav("p", "audio-1")
    with pytest.raises(AlreadyConvertedError) as info:
        await client.submit_wav("p", "audio-1")
    assert isinstance(info.value, ConflictError)
    assert info.value.status == 409
    assert fake.accept_count["audio-1"] == 1
    assert fake.request_count("submit") == 2


async def test_convert_of_converted_track_is_already_converted(
    fake: FakeVidgo, client: VidgoClient, make_client: MakeClient
) -> None:
    """convert_to_wav of a track another client converted raises AlreadyConvertedError
    without a task id (the 409 names none)."""
    await make_client(fake).submit_wav("p", "audio-1")
    with pytest.raises(AlreadyConvertedError) as info:
        await client.convert_to_wav("p", "audio-1", timeout=10)
    assert info.value.task_id is None
    assert fake.accept_count["audio-1"] == 1


async def test_convert_of_a_track_this_client_submitted_waits_on_its_task(
    fake: FakeVidgo, client: VidgoClient
) -> None:
    """The 409 names no task, but this client remembers the one its submit created."""
    first = await client.submit_wav("p", "audio-1")
    url = await client.convert_to_wav("p", "audio-1", timeout=10)
    assert first.task_id in url
    assert fake.accept_count["audio-1"] == 1


async def test_convert_of_converted_track_resumes_with_task_id(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """When the 409 names the earlier task, convert_to_wav waits on it and returns its URL."""
    fake = await make_fake(conflict_includes_task_id=True)
    client = make_client(fake)
    first = await client.submit_wav("p", "audio-1")
    url = await client.convert_to_wav("p", "audio-1", timeout=10)
    assert first.task_id in url
    assert fake.accept_count["audio-1"] == 1


async def test_already_converted_carries_task_id(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """AlreadyConvertedError carries the earlier task's id when the server names it."""
    fake = await make_fake(conflict_includes_task_id=True)
    client = make_client(fake)
    first = await client.submit_wav("p", "audio-1")
    with pytest.raises(AlreadyConvertedError) as info:
        await client.submit_wav("p", "audio-1")
    assert info.value.task_id == first.task_id


async def test_409_for_other_model_is_conflict(fake: FakeVidgo, client: VidgoClient) -> None:
    """A 409 on another model is a ConflictError, not AlreadyConvertedError."""
    await client.submit("separate-vocals", {"task_id": "p", "audio_id": "a"})
    with pytest.raises(ConflictError) as info:
        await client.submit("separate-vocals", {"task_id": "p", "audio_id": "a"})
    assert not isinstance(info.value, AlreadyConvertedError)


REFUSED = [
    pytest.param(Fault.rate_limited(), id="429"),
    pytest.param(Fault.rate_limited("0"), id="429-retry-after"),
    pytest.param(Fault.server_error(503), id="503"),
    pytest.param(Fault.server_error(503, body="html"), id="503-html"),
    pytest.param(Fault.reset_before(), id="reset-before"),
]


@pytest.mark.parametrize("fault", REFUSED)
async def test_refused_submit_is_retried_and_accepted_once(
    fake: FakeVidgo, client: VidgoClient, fault: Fault
) -> None:
    """A submit the server did not process is retried; the track is accepted exactly once."""
    fake.inject(fault, route="submit", times=2)
    task = await client.submit_wav("p", "audio-1")
    assert fake.accepted["audio-1"] == [task.task_id]
    assert fake.request_count("submit") == 3


@pytest.mark.parametrize("fault", REFUSED)
async def test_convert_survives_refused_submits(
    fake: FakeVidgo, client: VidgoClient, fault: Fault
) -> None:
    """convert_to_wav goes on through refused submits and returns the WAV URL."""
    fake.inject(fault, route="submit", times=3)
    url = await client.convert_to_wav("p", "audio-1", timeout=10)
    assert url.endswith(".wav")
    assert fake.accept_count["audio-1"] == 1


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_connect_refused_submit_is_unsent(make_client: MakeClient) -> None:
    """A submit whose connection is refused raises TransportError(sent=False), not unknown."""
    client = make_client(base_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(TransportError) as info:
        await client.submit_wav("p", "audio-1")
    assert info.value.sent is False
    assert not isinstance(info.value, SubmitOutcomeUnknownError)


async def test_convert_retries_refused_connections_until_server_is_up(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """Once the API has answered this client, convert_to_wav retries refused connections
    (a restart) until the server answers again, accepting once. (An API that never
    answered fails fast instead: test_client.py.)"""
    port = free_port()
    first = await make_fake(port=port)
    client = make_client(first)
    await client.balance()
    await first.close()
    job = asyncio.ensure_future(client.convert_to_wav("p", "audio-1", timeout=20))
    await asyncio.sleep(0.2)
    assert not job.done()
    fake = await make_fake(port=port)
    url = await asyncio.wait_for(job, timeout=20)
    assert url.startswith(fake.url)
    assert fake.accept_count["audio-1"] == 1


AMBIGUOUS = [
    pytest.param(Fault.server_error(500), id="500"),
    pytest.param(Fault.server_error(502, body="html"), id="502-html"),
    pytest.param(Fault.server_error(504, body="empty"), id="504-empty"),
    pytest.param(Fault.garbage("html"), id="garbage-html"),
    pytest.param(Fault.garbage("truncated"), id="garbage-truncated"),
    pytest.param(Fault.code_in_200(500), id="code-500-in-200"),
    pytest.param(Fault.http_error(200, {"code": 200, "data": {}}), id="2xx-no-task-id"),
    pytest.param(Fault.reset_after(), id="reset-after"),
    # The client cannot tell a reset before processing from one after it.
    pytest.param(Fault.reset_before(), id="reset-before"),
]


@pytest.mark.parametrize("fault", AMBIGUOUS)
async def test_ambiguous_failure_then_409_is_outcome_unknown(
    fake: FakeVidgo, client: VidgoClient, make_client: MakeClient, fault: Fault
) -> None:
    """After a failure that may hide an acceptance, a 409 means "outcome unknown"
    (another client converted the track: this one knows no task of it)."""
    await make_client(fake).submit_wav("p", "audio-1")
    fake.inject(fault, route="submit")
    with pytest.raises(SubmitOutcomeUnknownError):
        await client.submit_wav("p", "audio-1")
    assert fake.accept_count["audio-1"] == 1


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault.rate_limited(), id="429"),
        pytest.param(Fault.server_error(503), id="503"),
    ],
)
async def test_refused_failure_then_409_is_already_converted(
    fake: FakeVidgo, client: VidgoClient, fault: Fault
) -> None:
    """After failures that prove nothing was processed, a 409 is AlreadyConvertedError."""
    await client.submit_wav("p", "audio-1")
    fake.inject(fault, route="submit")
    with pytest.raises(AlreadyConvertedError):
        await client.submit_wav("p", "audio-1")


@pytest.mark.parametrize("fault", AMBIGUOUS)
async def test_ambiguous_failure_on_fresh_track_is_retried(
    fake: FakeVidgo, client: VidgoClient, fault: Fault
) -> None:
    """An ambiguous failure on a track never accepted before is retried and accepted once."""
    fake.inject(fault, route="submit")
    try:
        task = await client.submit_wav("p", "audio-1")
    except SubmitOutcomeUnknownError:
        assert fake.accept_count["audio-1"] == 1
    else:
        assert fake.accepted["audio-1"] == [task.task_id]


async def test_bare_submit_gives_up_after_max_attempts(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """A bare submit against a refusing server stops after max_attempts requests."""
    client = make_client(retry=RetryPolicy(max_attempts=3, base_delay=0.001))
    fake.inject(Fault.server_error(503), route="submit", times=50)
    with pytest.raises(VidgoError):
        await client.submit_wav("p", "audio-1")
    assert fake.request_count("submit") == 3
    assert fake.accept_count["audio-1"] == 0


async def test_bad_request_submit_is_not_retried(fake: FakeVidgo, client: VidgoClient) -> None:
    """A 400 on submit is raised at once, after one request."""
    fake.inject(Fault.http_error(400, {"message": "callback_url is required"}), route="submit")
    with pytest.raises(BadRequestError, match="callback_url is required"):
        await client.submit_wav("p", "audio-1")
    assert fake.request_count("submit") == 1


async def test_no_credits_is_insufficient_credits(fake: FakeVidgo, client: VidgoClient) -> None:
    """A submit without credits left raises InsufficientCreditsError."""
    fake.credits = 0
    with pytest.raises(InsufficientCreditsError):
        await client.convert_to_wav("p", "audio-1", timeout=10)
    assert fake.request_count("submit") == 1


async def test_chaotic_submits_never_convert_twice(
    make_fake: MakeFake, make_client: MakeClient
) -> None:
    """Under random submit faults, every track is accepted at most once and every call settles."""
    fake = await make_fake(seed=7)
    fake.set_fault_rates(
        {
            "server_error": 0.15,
            "rate_limited": 0.1,
            "reset_before": 0.1,
            "reset_after": 0.15,
            "stall": 0.05,
            "garbage": 0.1,
            "code_in_200": 0.05,
        },
        routes=("submit", "detail"),
        stall_seconds=5.0,
    )
    client = make_client(fake, timeouts=Timeouts(connect=1.0, total=0.3))
    audio_ids = [f"audio-{n}" for n in range(30)]

    async def convert(audio_id: str) -> Any:
        try:
            return await client.convert_to_wav("p", audio_id, timeout=10)
        except VidgoError as exc:
            return exc

    results = await asyncio.gather(*(convert(audio_id) for audio_id in audio_ids))
    for result in results:
        assert isinstance(result, (str, SubmitOutcomeUnknownError))
    assert all(count <= 1 for count in fake.accept_count.values())
    assert sum(isinstance(result, str) for result in results) >= len(audio_ids) // 2


async def test_an_answer_naming_only_the_task_is_accepted(
    fake: FakeVidgo, client: VidgoClient
) -> None:
    """A submit answer with the task id alone (no status) is the accepted task, not
    a garbled answer: the submit is not repeated, and the wait goes on with that id."""
    real = await client.submit_wav("parent-1", "audio-1")
    bare = Fault.http_error(200, {"code": 200, "data": {"id": real.task_id}})
    fake.inject(bare, route="submit")
    task = await client.submit_wav("parent-1", "audio-2")
    assert (task.task_id, task.status, task.raw_status) == (real.task_id, TaskStatus.UNKNOWN, "")
    fake.inject(bare, route="submit")
    url = await client.convert_to_wav("parent-1", "audio-3", timeout=10)
    assert real.task_id in url
    assert len(fake.requests_to("submit")) == 3  # none repeated


async def test_a_repeated_conversion_says_how_to_get_its_url_back(
    fake: FakeVidgo, client: VidgoClient, make_client: MakeClient
) -> None:
    """The second conversion of a track (by another client: this one would wait on the
    task it knows) raises AlreadyConvertedError, whose message says where the first
    one's URL can be found."""
    await make_client(fake).convert_to_wav("p", "twice")
    with pytest.raises(AlreadyConvertedError, match="journal"):
        await client.convert_to_wav("p", "twice")
