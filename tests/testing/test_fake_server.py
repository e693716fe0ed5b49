"""Tests of FakeVidgo itself, driven by a plain aiohttp client over a real socket."""

from __future__ import annotations

import asyncio
import io
import re
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from vidgo_async import VidgoClient
from vidgo_async.testing import FakeVidgo, Fault, RecordedRequest, iter_wav, serve, wav_header

AUTH = {"Authorization": "Bearer test-key"}
WAV = "convert-to-wav"
MakeFake = Callable[..., Awaitable[FakeVidgo]]


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest_asyncio.fixture
async def make_fake() -> AsyncIterator[MakeFake]:
    """Factory of started fakes; closes every fake it made."""
    made: list[FakeVidgo] = []

    async def make(**kwargs: Any) -> FakeVidgo:
        fake = FakeVidgo(**kwargs)
        await fake.start()
        made.append(fake)
        return fake

    yield make
    for fake in made:
        await fake.close()


@pytest_asyncio.fixture
async def fake(make_fake: MakeFake, clock: ManualClock) -> FakeVidgo:
    return await make_fake(clock=clock, seed=7)


@pytest_asyncio.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as client:
        yield client


async def call(
    session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any
) -> tuple[int, Any]:
    """One request; the status and the JSON body (None when not JSON)."""
    async with session.request(method, url, **kwargs) as response:
        raw = await response.read()
        try:
            return response.status, await response.json(content_type=None)
        except ValueError:
            return response.status, raw or None


async def submit(
    session: aiohttp.ClientSession, fake: FakeVidgo, audio_id: str = "a1", model: str = WAV
) -> tuple[int, Any]:
    body = {"model": model, "input": {"task_id": "parent-1", "audio_id": audio_id}}
    return await call(session, "POST", f"{fake.url}/api/generate/submit", json=body)


async def detail(session: aiohttp.ClientSession, fake: FakeVidgo, task_id: str) -> Any:
    url = f"{fake.url}/api/generate/detail/music"
    status, body = await call(session, "GET", url, params={"task_id": task_id})
    assert status == 200
    return body["data"]


async def submitted(session: aiohttp.ClientSession, fake: FakeVidgo, audio_id: str = "a1") -> str:
    status, body = await submit(session, fake, audio_id)
    assert status == 200
    task_id: str = body["data"]["task_id"]
    return task_id


async def read_into(session: aiohttp.ClientSession, url: str, received: bytearray) -> None:
    """Download ``url`` into ``received``, keeping what arrived if the body breaks."""
    async with session.get(url) as response:
        async for chunk in response.content.iter_any():
            received += chunk


async def until(predicate: Callable[[], bool]) -> None:
    """Wait (at most a second) for ``predicate`` to hold."""
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.005)
    pytest.fail("condition never held")


# -- serving --------------------------------------------------------------------------------


def test_url_before_start_raises() -> None:
    """The URL of a fake that never started is a clear error."""
    with pytest.raises(RuntimeError, match="start"):
        _ = FakeVidgo().url


@pytest.mark.asyncio
async def test_context_manager_serves_on_ephemeral_port(session: aiohttp.ClientSession) -> None:
    """The fake serves on 127.0.0.1 with a port picked by the OS."""
    async with FakeVidgo() as fake:
        assert fake.url.startswith("http://127.0.0.1:")
        status, body = await call(session, "GET", f"{fake.url}/api/user/balance")
    assert (status, body["data"]["credits_amount"]) == (200, 10_000)


@pytest.mark.asyncio
async def test_serve_prints_url_and_stops_when_cancelled(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """serve() announces itself and ends cleanly on cancellation."""
    task = asyncio.create_task(serve(0, api_key="k"))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if "http://127.0.0.1:" in capsys.readouterr().out:
            break
    else:
        pytest.fail("serve() printed no URL")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# -- life cycle -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_submit_answers_the_documented_shape(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """A submit answers a new unified task id, not_started, and an ISO time."""
    status, body = await submit(session, fake)
    assert status == 200
    assert body["code"] == 200
    data = body["data"]
    assert data["status"] == "not_started"
    assert data["task_id"].startswith("task-unified-")
    assert len(data["task_id"].rsplit("-", 1)[1]) == 8
    assert len(data["created_time"]) == len("2025-11-12T10:30:00")


@pytest.mark.asyncio
async def test_seed_reproduces_task_ids(
    make_fake: MakeFake, clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    """Two fakes with one seed hand out the same ids, their epoch fixed, not the time."""
    runs = []
    for _ in range(2):
        fake = await make_fake(clock=clock, seed=3)
        task_id = await submitted(session, fake)
        clock.now += 1.0
        wav_url = (await detail(session, fake, task_id))["files"][0]["wav_url"]
        runs.append((task_id, wav_url.removeprefix(fake.url), fake.seed_task()))
    assert runs[0] == runs[1]
    assert re.fullmatch(r"task-unified-1757165031-[a-z0-9]{8}", runs[0][0])


@pytest.mark.asyncio
async def test_task_goes_through_its_life_cycle(
    fake: FakeVidgo, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """not_started, then running with progress, then finished with a wav_url."""
    task_id = await submitted(session, fake)
    first = await detail(session, fake, task_id)
    assert (first["status"], first["files"], "progress" in first) == ("not_started", [], False)
    clock.now += 0.02 + 0.05
    running = await detail(session, fake, task_id)
    assert (running["status"], running["progress"]) == ("running", 50)
    clock.now += 0.05
    done = await detail(session, fake, task_id)
    assert done["status"] == "finished"
    assert done["files"] == [{"wav_url": f"{fake.url}/files/{task_id}.wav"}]
    assert done["error_message"] is None


@pytest.mark.asyncio
async def test_progress_can_be_left_out(
    make_fake: MakeFake, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """With report_progress=False a running task sends no progress."""
    fake = await make_fake(clock=clock, report_progress=False)
    task_id = await submitted(session, fake)
    clock.now += 0.05
    data = await detail(session, fake, task_id)
    assert data["status"] == "running"
    assert "progress" not in data


@pytest.mark.asyncio
async def test_set_duration_overrides_one_audio(
    fake: FakeVidgo, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """A per-audio duration keeps that task running longer."""
    fake.set_duration("slow", run_time=10.0)
    slow, fast = await submitted(session, fake, "slow"), await submitted(session, fake, "fast")
    clock.now += 1.0
    assert (await detail(session, fake, slow))["status"] == "running"
    assert (await detail(session, fake, fast))["status"] == "finished"


@pytest.mark.asyncio
async def test_fail_ends_the_task_failed_and_refunds(
    fake: FakeVidgo, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """A failing audio ends failed with its message, no files, and costs nothing."""
    fake.fail("bad", message="Source audio unavailable")
    task_id = await submitted(session, fake, "bad")
    assert fake.credits == 9_999
    clock.now += 1.0
    data = await detail(session, fake, task_id)
    assert (data["status"], data["files"]) == ("failed", [])
    assert data["error_message"] == "Source audio unavailable"
    assert fake.credits == 10_000


@pytest.mark.asyncio
async def test_second_submit_for_an_audio_is_409(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """The same audio converts once; the 409 says so; the count stays at one."""
    first = await submitted(session, fake)
    status, body = await submit(session, fake)
    assert (status, body) == (409, {"code": 409, "message": "Audio track already converted to WAV"})
    assert fake.accepted == {"a1": [first]}
    assert fake.accept_count["a1"] == 1


@pytest.mark.asyncio
async def test_409_can_name_the_existing_task(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """With conflict_includes_task_id the 409 carries data.task_id."""
    fake.conflict_includes_task_id = True
    first = await submitted(session, fake)
    status, body = await submit(session, fake)
    assert (status, body["data"]) == (409, {"task_id": first})


@pytest.mark.asyncio
async def test_other_models_follow_their_own_409_rule(
    fake: FakeVidgo, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """separate-vocals is accepted beside a conversion and fills other file keys."""
    await submitted(session, fake)
    status, body = await submit(session, fake, model="separate-vocals")
    assert status == 200
    assert (await submit(session, fake, model="separate-vocals"))[0] == 409
    clock.now += 1.0
    files = (await detail(session, fake, body["data"]["task_id"]))["files"]
    assert set(files[0]) == {"audio_url", "instrumental_url"}


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        {"input": {"task_id": "p", "audio_id": "a"}},
        {"model": "", "input": {"task_id": "p", "audio_id": "a"}},
        {"model": WAV, "input": "p/a"},
        {"model": WAV, "input": {"task_id": "p"}},
        {"model": WAV, "input": {"task_id": "", "audio_id": "a"}},
        {"model": WAV, "input": {"task_id": "p", "audio_id": 3}},
    ],
)
@pytest.mark.asyncio
async def test_invalid_submits_are_400(
    fake: FakeVidgo, session: aiohttp.ClientSession, body: Any
) -> None:
    """Malformed submits answer 400 with a message and create nothing."""
    kwargs = {"data": body} if isinstance(body, bytes) else {"json": body}
    status, answer = await call(session, "POST", f"{fake.url}/api/generate/submit", **kwargs)
    assert (status, answer["code"]) == (400, 400)
    assert answer["message"]
    assert fake.tasks == {}


@pytest.mark.asyncio
async def test_strict_parents_rejects_unknown_parents(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """With strict_parents a conversion needs a known parent task."""
    fake.strict_parents = True
    assert (await submit(session, fake))[0] == 400
    fake.seed_task("parent-1")
    assert (await submit(session, fake))[0] == 200


@pytest.mark.asyncio
async def test_callback_url_is_recorded(fake: FakeVidgo, session: aiohttp.ClientSession) -> None:
    """The callback URL lands on the task."""
    body = {
        "model": WAV,
        "input": {"task_id": "p", "audio_id": "a"},
        "callback_url": "https://x/cb",
    }
    _, answer = await call(session, "POST", f"{fake.url}/api/generate/submit", json=body)
    assert fake.tasks[answer["data"]["task_id"]].callback_url == "https://x/cb"


@pytest.mark.asyncio
async def test_callback_url_over_2048_characters_is_400(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """The documented limit holds: 2048 characters pass, 2049 answer 400 and create nothing."""
    url = f"{fake.url}/api/generate/submit"
    for audio_id, length, expected in [("a1", 2049, 400), ("a2", 2048, 200)]:
        callback_url = "http://127.0.0.1:9/" + "a" * (length - 19)
        body = {"model": WAV, "input": {"task_id": "p", "audio_id": audio_id}}
        status, answer = await call(
            session, "POST", url, json={**body, "callback_url": callback_url}
        )
        assert (status, answer["code"]) == (expected, expected)
    assert list(fake.accepted) == ["a2"]
    assert all(task.callback_url and len(task.callback_url) == 2048 for task in fake.tasks.values())


@pytest.mark.asyncio
async def test_credits_run_out_with_402(
    make_fake: MakeFake, session: aiohttp.ClientSession
) -> None:
    """A submit without credits answers 402; the balance shows what is left."""
    fake = await make_fake(credits=1)
    await submitted(session, fake, "a1")
    status, body = await submit(session, fake, "a2")
    assert (status, body) == (402, {"code": 402, "message": "Insufficient credits"})
    _, balance = await call(session, "GET", f"{fake.url}/api/user/balance")
    assert balance["data"] == {"email": "dev@example.com", "credits_amount": 0}


# -- reading tasks --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), (AUTH, 200)],
)
@pytest.mark.asyncio
async def test_api_key_is_required(fake: FakeVidgo, headers: dict[str, str], status: int) -> None:
    """Only the right bearer key gets in; others get the documented 401 body."""
    async with aiohttp.ClientSession(headers=headers) as client:
        got, body = await call(client, "GET", f"{fake.url}/api/user/balance")
    assert got == status
    if status == 401:
        assert body == {
            "code": 401,
            "error": {"message": "Invalid API key", "type": "authentication_error"},
        }


@pytest.mark.parametrize(
    ("params", "status"), [({}, 400), ({"task_id": "nope"}, 404), ({"task_id": "mine"}, 403)]
)
@pytest.mark.asyncio
async def test_detail_errors(
    fake: FakeVidgo, session: aiohttp.ClientSession, params: dict[str, str], status: int
) -> None:
    """Missing id 400, unknown id 404, another user's task 403."""
    fake.seed_task("mine")
    fake.set_owner_forbidden("mine")
    url = f"{fake.url}/api/generate/detail/music"
    got, body = await call(session, "GET", url, params=params)
    assert (got, body["code"]) == (status, status)


@pytest.mark.asyncio
async def test_seeded_task_answers_as_given(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """A seeded task answers its fixed fields, extras included."""
    files = [{"wav_url": "https://storage.example/x.wav", "odd": 1}]
    task_id = fake.seed_task(
        status="weird", files=files, progress=7, error_message="e", extra={"credits_amount": 3}
    )
    data = await detail(session, fake, task_id)
    assert data["status"] == "weird"
    assert (data["files"], data["progress"], data["error_message"]) == (files, 7, "e")
    assert data["credits_amount"] == 3


@pytest.mark.asyncio
async def test_status_route_serves_media_tasks_only(
    fake: FakeVidgo, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """Image tasks answer the generic shape; music tasks 400; unknown 404."""
    image = fake.add_media_task("image")
    music = await submitted(session, fake)
    clock.now += 1.0
    status, body = await call(session, "GET", f"{fake.url}/api/generate/status/{image}")
    assert status == 200
    assert body["data"]["files"] == [
        {"file_url": f"{fake.url}/files/{image}.png", "file_type": "image"}
    ]
    assert body["data"]["progress"] == 100
    assert (await call(session, "GET", f"{fake.url}/api/generate/status/{music}"))[0] == 400
    assert (await call(session, "GET", f"{fake.url}/api/generate/status/nope"))[0] == 404


# -- files ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_wav_is_served_without_auth(
    make_fake: MakeFake, clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    """The WAV is a valid file of wav_size bytes; no key is needed or recorded."""
    fake = await make_fake(clock=clock, wav_size=200_000)
    task_id = await submitted(session, fake)
    clock.now += 1.0
    async with (
        aiohttp.ClientSession() as storage,
        storage.get(f"{fake.url}/files/{task_id}.wav") as response,
    ):
        content = await response.read()
        assert response.headers["Content-Type"] == "audio/wav"
        assert int(response.headers["Content-Length"]) == 200_000
    assert (content[:4], content[8:12], len(content)) == (b"RIFF", b"WAVE", 200_000)
    assert struct.unpack("<I", content[40:44])[0] == 200_000 - 44
    (recorded,) = fake.requests_to("files")
    assert "Authorization" not in recorded.headers
    assert recorded.status == 200


@pytest.mark.asyncio
async def test_wav_download_resumes_with_range(
    fake: FakeVidgo, clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    """A reset mid-file leaves a short body; Range fetches exactly the rest."""
    task_id = await submitted(session, fake)
    clock.now += 1.0
    url = f"{fake.url}/files/{task_id}.wav"
    fake.inject(Fault.reset_after(), route="files")
    received = bytearray()
    with pytest.raises(aiohttp.ClientPayloadError):
        await read_into(session, url, received)
    assert 0 < len(received) < 176_444
    async with session.get(url, headers={"Range": f"bytes={len(received)}-"}) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes {len(received)}-176443/176444"
        received += await response.read()
    assert bytes(received) == b"".join(iter_wav(176_444))


@pytest.mark.asyncio
async def test_range_past_the_end_is_416(
    fake: FakeVidgo, clock: ManualClock, session: aiohttp.ClientSession
) -> None:
    """A range starting past the file answers 416."""
    task_id = await submitted(session, fake)
    clock.now += 1.0
    url = f"{fake.url}/files/{task_id}.wav"
    status, body = await call(session, "GET", url, headers={"Range": "bytes=176444-"})
    assert (status, body["code"]) == (416, 416)


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b'{"a":' * 50_000, {}, 400),
        (b"not gzip", {"Content-Encoding": "gzip"}, 400),
        (io.BytesIO(b"x" * 2_000_000), {}, 413),
    ],
    ids=["nested-json", "broken-gzip", "too-large"],
)
@pytest.mark.asyncio
async def test_unreadable_submit_bodies_are_4xx_and_logged(
    fake: FakeVidgo,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    body: bytes | io.BytesIO,
    headers: dict[str, str],
    status: int,
) -> None:
    """A body too deep, undecodable or too large gets a 4xx envelope, logged, no traceback."""
    url = f"{fake.url}/api/generate/submit"
    answered, answer = await call(session, "POST", url, data=body, headers=headers)
    assert (answered, answer["code"]) == (status, status)
    assert isinstance(answer["message"], str)
    (entry,) = fake.requests
    assert (entry.route, entry.status, entry.json) == ("submit", status, None)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.asyncio
async def test_range_with_thousands_of_digits_is_416(
    fake: FakeVidgo,
    clock: ManualClock,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A range offset too long for int() is past the end: 416 in the error envelope."""
    task_id = await submitted(session, fake)
    clock.now += 1.0
    url = f"{fake.url}/files/{task_id}.wav"
    status, body = await call(session, "GET", url, headers={"Range": "bytes=" + "9" * 5000 + "-"})
    assert (status, body["code"]) == (416, 416)
    assert fake.requests[-1].status == 416
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    # An end offset that long is just "to the end".
    status, _ = await call(session, "GET", url, headers={"Range": "bytes=0-" + "9" * 5000})
    assert status == 200


@pytest.mark.asyncio
async def test_unfinished_or_unknown_files_are_404(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """No file exists before the task finishes."""
    task_id = await submitted(session, fake)
    assert (await call(session, "GET", f"{fake.url}/files/{task_id}.wav"))[0] == 404
    assert (await call(session, "GET", f"{fake.url}/files/nope.wav"))[0] == 404


def test_wav_helpers_cut_anywhere() -> None:
    """iter_wav yields the same bytes whatever the chunking and range."""
    whole = b"".join(iter_wav(1000, chunk_size=7))
    assert whole[:44] == wav_header(1000)
    assert b"".join(iter_wav(1000, start=30, stop=600, chunk_size=64)) == whole[30:600]
    with pytest.raises(ValueError):
        wav_header(43)


# -- faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "content_type", "body_start"),
    [
        (Fault.server_error(500, body="json"), 500, "application/json", b'{"code": 500'),
        (Fault.server_error(502, body="html"), 502, "text/html", b"<html>"),
        (Fault.server_error(503, body="empty"), 503, None, b""),
        (Fault.rate_limited(), 429, "application/json", b'{"code": 429'),
        (Fault.garbage(), 200, "application/json", b"<html>oops"),
        (Fault.garbage("truncated"), 200, "application/json", b'{"code": 200, "data'),
        (Fault.code_in_200(500, "internal"), 200, "application/json", b'{"code": 500, "msg"'),
        (Fault.http_error(418, b"teapot"), 418, "application/octet-stream", b"teapot"),
        (Fault.http_error(400, {"code": 400, "msg": "x"}), 400, "application/json", b"{"),
    ],
)
@pytest.mark.asyncio
async def test_answering_faults(
    fake: FakeVidgo,
    session: aiohttp.ClientSession,
    fault: Fault,
    status: int,
    content_type: str | None,
    body_start: bytes,
) -> None:
    """Each answering fault reaches the client as scripted, and no task is created."""
    fake.inject(fault, route="submit")
    url = f"{fake.url}/api/generate/submit"
    async with session.post(url, json={"model": WAV, "input": {}}) as response:
        body = await response.read()
        assert response.status == status
        assert response.headers.get("Content-Type") == content_type
    assert body.startswith(body_start)
    assert fake.tasks == {}
    assert fake.requests[-1].fault == fault.kind


@pytest.mark.asyncio
async def test_rate_limited_sends_retry_after(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """A scripted 429 carries the Retry-After asked for."""
    fake.inject(Fault.rate_limited(retry_after="2"), route="detail")
    url = f"{fake.url}/api/generate/detail/music?task_id=x"
    async with session.get(url) as response:
        assert (response.status, response.headers["Retry-After"]) == (429, "2")


@pytest.mark.asyncio
async def test_reset_before_creates_nothing(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """The connection drops before processing: no task, no answer logged."""
    fake.inject(Fault.reset_before(), route="submit")
    with pytest.raises(aiohttp.ClientConnectionError):
        await submit(session, fake)
    assert (fake.tasks, fake.undelivered_accepts) == ({}, 0)
    assert fake.requests[-1].status is None
    assert fake.requests[-1].fault == "reset_before"


@pytest.mark.asyncio
async def test_reset_after_accepts_silently(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """The submit is accepted and counted, but the client only sees a dropped connection."""
    fake.inject(Fault.reset_after(), route="submit")
    with pytest.raises(aiohttp.ClientConnectionError):
        await submit(session, fake)
    assert fake.accept_count["a1"] == 1
    assert fake.undelivered_accepts == 1
    assert (await submit(session, fake))[0] == 409


@pytest.mark.asyncio
async def test_stall_outlasts_a_client_timeout(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """A stall says nothing; the client's timeout fires first."""
    fake.inject(Fault.stall(seconds=5), route="*")
    with pytest.raises(asyncio.TimeoutError):
        await submit_with_timeout(session, fake, 0.1)
    assert fake.tasks == {}


@pytest.mark.asyncio
async def test_stall_after_accept_counts_as_undelivered(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """A stall after acceptance creates the task and never answers."""
    fake.inject(Fault.stall(seconds=0.05, after_accept=True), route="submit")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await submit(session, fake)
    assert (len(fake.tasks), fake.undelivered_accepts) == (1, 1)


async def submit_with_timeout(
    session: aiohttp.ClientSession, fake: FakeVidgo, seconds: float
) -> tuple[int, Any]:
    body = {"model": WAV, "input": {"task_id": "p", "audio_id": "a1"}}
    timeout = aiohttp.ClientTimeout(total=seconds)
    url = f"{fake.url}/api/generate/submit"
    return await call(session, "POST", url, json=body, timeout=timeout)


@pytest.mark.asyncio
async def test_close_with_a_stall_in_flight_is_fast(session: aiohttp.ClientSession) -> None:
    """Closing ends stalls at once instead of waiting them out."""
    fake = FakeVidgo()
    await fake.start()
    fake.inject(Fault.stall(seconds=30))
    request = asyncio.create_task(call(session, "GET", f"{fake.url}/api/user/balance"))
    await until(lambda: bool(fake.requests))
    started = time.monotonic()
    await fake.close()
    assert time.monotonic() - started < 1.0
    with pytest.raises(aiohttp.ClientConnectionError):
        await request


@pytest.mark.asyncio
async def test_queued_faults_are_fifo_per_route(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """A route's queue runs first, in order, `times` each, then the '*' queue."""
    fake.inject(Fault.server_error(503), route="*")
    fake.inject(Fault.rate_limited(), route="balance", times=2)
    fake.inject(Fault.server_error(500), route="balance")
    url = f"{fake.url}/api/user/balance"
    statuses = [(await call(session, "GET", url))[0] for _ in range(5)]
    assert statuses == [429, 429, 500, 503, 200]


@pytest.mark.asyncio
async def test_faults_apply_before_auth(fake: FakeVidgo) -> None:
    """A failing proxy answers before the key is checked."""
    fake.inject(Fault.server_error(502, body="html"))
    async with aiohttp.ClientSession() as anonymous:
        assert (await call(anonymous, "GET", f"{fake.url}/api/user/balance"))[0] == 502


@pytest.mark.parametrize(
    ("call_args", "message"),
    [
        ({"fault": Fault.reset_before(), "route": "nowhere"}, "route"),
        ({"fault": Fault.reset_before(), "times": 0}, "times"),
    ],
)
def test_inject_checks_its_arguments(call_args: dict[str, Any], message: str) -> None:
    """Unknown routes and non-positive counts are refused."""
    with pytest.raises(ValueError, match=message):
        FakeVidgo().inject(**call_args)


async def run_random_mix(make_fake: MakeFake, seed: int) -> list[tuple[str | None, int | None]]:
    fake = await make_fake(seed=seed)
    rates = {"server_error": 0.2, "rate_limited": 0.1, "garbage": 0.1, "code_in_200": 0.1}
    fake.set_fault_rates(rates, routes=("balance",))
    async with aiohttp.ClientSession(headers=AUTH) as client:
        for _ in range(30):
            await call(client, "GET", f"{fake.url}/api/user/balance")
    return [(r.fault, r.status) for r in fake.requests]


@pytest.mark.asyncio
async def test_random_faults_are_reproducible(make_fake: MakeFake) -> None:
    """The same seed gives the same faults; another seed another mix."""
    first = await run_random_mix(make_fake, seed=3)
    assert first == await run_random_mix(make_fake, seed=3)
    assert first != await run_random_mix(make_fake, seed=4)
    assert {fault for fault, _ in first} >= {None, "server_error"}


def test_fault_rates_are_checked() -> None:
    """Unknown kinds and rates summing past 1 are refused."""
    fake = FakeVidgo()
    with pytest.raises(ValueError, match="unknown"):
        fake.set_fault_rates({"meteor": 0.1})
    with pytest.raises(ValueError, match="sum"):
        fake.set_fault_rates({"stall": 0.6, "garbage": 0.6})


# -- request log ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_requests_are_logged_in_order(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """Each request is logged with its route, query, headers, body and answer."""
    task_id = await submitted(session, fake)
    await detail(session, fake, task_id)
    submit_log, detail_log = fake.requests
    assert isinstance(submit_log, RecordedRequest)
    assert (submit_log.method, submit_log.route, submit_log.status) == ("POST", "submit", 200)
    assert submit_log.json == {"model": WAV, "input": {"task_id": "parent-1", "audio_id": "a1"}}
    assert submit_log.headers["Authorization"] == "Bearer test-key"
    assert (detail_log.path, detail_log.query) == (
        "/api/generate/detail/music",
        {"task_id": task_id},
    )
    assert fake.requests_to("/api/generate/submit") == [submit_log]
    assert fake.request_count("detail") == 1
    fake.reset_log()
    assert fake.requests == []


@pytest.mark.asyncio
async def test_unknown_paths_are_logged_as_404(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """A path outside the API answers 404 and is still logged."""
    assert (await call(session, "GET", f"{fake.url}/nowhere"))[0] == 404
    (entry,) = fake.requests
    assert (entry.route, entry.status) == (None, 404)


@pytest.mark.asyncio
async def test_close_is_idempotent() -> None:
    """close() twice is harmless; a closed fake does not restart."""
    fake = FakeVidgo()
    await fake.start()
    await fake.close()
    await fake.close()
    with pytest.raises(RuntimeError, match="once"):
        await fake.start()


# -- quirks of an eventually consistent API ----------------------------------------------------


@pytest.mark.asyncio
async def test_files_lag_reports_finished_without_files_first(
    make_fake: MakeFake, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """With files_lag a task is finished with files: [] until the lag has passed."""
    fake = await make_fake(clock=clock, files_lag=1.0)
    task_id = await submitted(session, fake)
    clock.now += 0.5
    early = await detail(session, fake, task_id)
    assert (early["status"], early["files"]) == ("finished", [])
    clock.now += 1.0
    assert (await detail(session, fake, task_id))["files"] == [
        {"wav_url": f"{fake.url}/files/{task_id}.wav"}
    ]


@pytest.mark.asyncio
async def test_files_lag_per_audio(
    fake: FakeVidgo, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """set_duration(files_lag=...) delays one audio's files, past and future tasks alike."""
    lagging = await submitted(session, fake, "lagging")
    fake.set_duration("lagging", files_lag=5.0)
    other = await submitted(session, fake, "other")
    clock.now += 1.0
    assert (await detail(session, fake, lagging))["files"] == []
    assert (await detail(session, fake, other))["files"] != []
    assert fake.files_lag == 0.0


def test_lags_must_not_be_negative() -> None:
    """Negative lags are refused."""
    with pytest.raises(ValueError, match="files_lag"):
        FakeVidgo(files_lag=-1)
    with pytest.raises(ValueError, match="visibility_lag"):
        FakeVidgo(visibility_lag=-0.5)


@pytest.mark.asyncio
async def test_visibility_lag_hides_a_new_task_for_a_while(
    make_fake: MakeFake, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """For visibility_lag seconds after the submit, detail answers 404 Task not found."""
    fake = await make_fake(clock=clock, visibility_lag=0.3)
    task_id = await submitted(session, fake)
    url = f"{fake.url}/api/generate/detail/music"
    status, body = await call(session, "GET", url, params={"task_id": task_id})
    assert (status, body) == (404, {"code": 404, "message": "Task not found"})
    clock.now += 0.3
    assert (await detail(session, fake, task_id))["task_id"] == task_id
    seeded = fake.seed_task()  # seeded tasks are visible at once
    assert (await detail(session, fake, seeded))["status"] == "finished"


@pytest.mark.asyncio
async def test_integer_task_ids_everywhere_but_the_query(
    make_fake: MakeFake, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """Integer ids: submit, detail and 409 bodies carry ints; the query takes the digits."""
    fake = await make_fake(clock=clock, integer_task_ids=True, conflict_includes_task_id=True)
    status, body = await submit(session, fake)
    task_id = body["data"]["task_id"]
    assert status == 200
    assert type(task_id) is int
    assert str(task_id) in fake.tasks
    clock.now += 1.0
    data = await detail(session, fake, str(task_id))
    assert data["task_id"] == task_id
    assert data["files"] == [{"wav_url": f"{fake.url}/files/{task_id}.wav"}]
    status, conflict = await submit(session, fake)
    assert (status, conflict["data"]) == (409, {"task_id": task_id})


@pytest.mark.asyncio
async def test_integer_task_ids_in_callbacks(make_fake: MakeFake) -> None:
    """Callback bodies carry the integer id too."""
    received: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        fake = await make_fake(integer_task_ids=True, queue_time=0.0, run_time=0.01)
        async with aiohttp.ClientSession(headers=AUTH) as http:
            body = {
                "model": WAV,
                "callback_url": f"http://127.0.0.1:{port}/hook",
                "input": {"task_id": "p", "audio_id": "a1"},
            }
            _, answer = await call(http, "POST", f"{fake.url}/api/generate/submit", json=body)
        await until(lambda: bool(received))
    finally:
        await runner.cleanup()
    assert received[0]["data"]["task_id"] == answer["data"]["task_id"]
    assert type(received[0]["data"]["task_id"]) is int


@pytest.mark.asyncio
async def test_status_aliases_replace_status_words(
    make_fake: MakeFake, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """status_aliases renames life-cycle statuses in every answer; seeded tasks keep theirs."""
    fake = await make_fake(clock=clock, status_aliases={"not_started": "queued"})
    _, body = await submit(session, fake)
    assert body["data"]["status"] == "queued"
    fake.status_aliases = {"finished": "succeeded"}
    clock.now += 1.0
    data = await detail(session, fake, body["data"]["task_id"])
    assert data["status"] == "succeeded"
    assert data["files"] != []
    assert (await detail(session, fake, fake.seed_task()))["status"] == "finished"
    assert dict(fake.status_aliases) == {"finished": "succeeded"}


@pytest.mark.asyncio
async def test_redirect_fault_answers_a_3xx(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """Fault.redirect answers its 3xx with Location, on its route only."""
    fake.inject(Fault.redirect(307, location="http://127.0.0.1:9/x"), route="detail")
    url = f"{fake.url}/api/generate/detail/music?task_id=x"
    async with session.get(url, allow_redirects=False) as response:
        assert (response.status, response.headers["Location"]) == (307, "http://127.0.0.1:9/x")
    assert fake.requests[-1].fault == "redirect"
    async with session.get(url, allow_redirects=False) as response:
        assert response.status == 404
    with pytest.raises(ValueError, match="3xx"):
        Fault.redirect(200, location="/x")


@pytest.mark.asyncio
async def test_malformed_fault_breaks_the_http_parser(
    fake: FakeVidgo, session: aiohttp.ClientSession
) -> None:
    """Fault.malformed writes a broken status block; the request is not processed."""
    fake.inject(Fault.malformed(), route="submit")
    with pytest.raises(aiohttp.ClientResponseError):
        await submit(session, fake)
    assert fake.tasks == {}
    assert (fake.requests[-1].fault, fake.requests[-1].status) == ("malformed", None)
    status, _ = await submit(session, fake)  # the fake itself is unharmed
    assert status == 200


@pytest.mark.asyncio
async def test_malformed_fault_sends_raw_bytes(fake: FakeVidgo) -> None:
    """The raw bytes given reach the socket as they are, then the connection closes."""
    fake.inject(Fault.malformed(b"NOT HTTP AT ALL\r\n"), route="balance")
    host, port = fake.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /api/user/balance HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        assert await asyncio.wait_for(reader.read(), 5) == b"NOT HTTP AT ALL\r\n"
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
async def test_a_fake_on_ipv6_loopback_gives_a_usable_url() -> None:
    """``FakeVidgo(host="::1")`` (``fake-server --host ::1``): its URL brackets the
    address, and a client converts through it; ``http://::1:PORT`` was refused."""
    try:
        fake = FakeVidgo(host="::1")
        await fake.start()
    except OSError as exc:  # no IPv6 on this machine
        pytest.skip(f"no IPv6 loopback: {exc}")
    try:
        assert fake.url.startswith("http://[::1]:")
        async with VidgoClient(fake.api_key, base_url=fake.url) as client:
            url = await asyncio.wait_for(client.convert_to_wav("m", "a1"), 20)
        assert url.startswith(fake.url)
    finally:
        await fake.close()
