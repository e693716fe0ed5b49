"""The client's calls and the values they return, against the fake server."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import time
from datetime import datetime

import attrs
import pytest
from aiohttp import web
from support import FAST_RETRY

from vidgo_async import (
    BadRequestError,
    Balance,
    ConfigurationError,
    NotFoundError,
    PollPolicy,
    RetryPolicy,
    Task,
    TaskFile,
    TaskStatus,
    TransportError,
    VidgoClient,
)
from vidgo_async.testing import FakeVidgo, Fault

pytestmark = pytest.mark.asyncio


async def test_get_task_reads_detail_endpoint(fake: FakeVidgo, client: VidgoClient) -> None:
    """get_task asks Query Music Detail with task_id as a query parameter."""
    task_id = fake.seed_task()
    await client.get_task(task_id)
    (request,) = fake.requests
    assert (request.method, request.path) == ("GET", "/api/generate/detail/music")
    assert request.query == {"task_id": task_id}


async def test_get_task_parses_finished_task(fake: FakeVidgo, client: VidgoClient) -> None:
    """A finished task carries its files, WAV URL and creation time."""
    task_id = fake.seed_task(
        files=[{"wav_url": "https://storage.example/x.wav"}], created_time="2025-11-25T08:50:13"
    )
    task = await client.get_task(task_id)
    assert task.status is TaskStatus.FINISHED
    assert task.wav_url == "https://storage.example/x.wav"
    assert task.created_time == datetime(2025, 11, 25, 8, 50, 13)
    assert task.error_message is None


async def test_unfinished_task_has_no_wav_url(fake: FakeVidgo, client: VidgoClient) -> None:
    """A task that is not finished has no files and no WAV URL."""
    task = await client.get_task(fake.seed_task(status="not_started", files=[]))
    assert task.status is TaskStatus.NOT_STARTED
    assert task.files == ()
    assert task.wav_url is None


async def test_unknown_fields_and_file_keys_are_kept(fake: FakeVidgo, client: VidgoClient) -> None:
    """Extra task fields are tolerated and unknown file keys stay readable."""
    files = [{"audio_url": "https://s/a.wav", "lyrics": '{"a": 1}', "duration": 12.5}]
    task_id = fake.seed_task(files=files, extra={"credits_amount": 3, "new_field": [1, 2]})
    task = await client.get_task(task_id)
    (file,) = task.files
    assert isinstance(file, TaskFile)
    assert dict(file) == files[0]
    assert file["lyrics"] == '{"a": 1}'
    assert task.wav_url is None


@pytest.mark.parametrize(
    ("created_time", "expected"),
    [
        ("2025-11-25T08:50:13", datetime(2025, 11, 25, 8, 50, 13)),
        ("not a time", None),
        ("", None),
    ],
)
async def test_created_time_is_lenient(
    fake: FakeVidgo, client: VidgoClient, created_time: str, expected: datetime | None
) -> None:
    """An unparsable created_time becomes None instead of an error."""
    task = await client.get_task(fake.seed_task(created_time=created_time))
    assert task.created_time == expected


async def test_separate_vocals_files(fake: FakeVidgo, client: VidgoClient) -> None:
    """Another music model's result files are read with their own keys."""
    submitted = await client.submit("separate-vocals", {"task_id": "p", "audio_id": "a"})
    task = await client.wait(submitted.task_id, timeout=10)
    (file,) = task.files
    assert file["instrumental_url"].endswith("-instrumental.wav")


async def test_get_status_reads_media_task(fake: FakeVidgo, client: VidgoClient) -> None:
    """get_status reads an image task through the generic status endpoint."""
    task_id = fake.add_media_task("image")
    task = await client.get_status(task_id)
    assert task.task_id == task_id
    assert fake.requests[0].path == f"/api/generate/status/{task_id}"


async def test_get_status_of_music_task_is_bad_request(
    fake: FakeVidgo, client: VidgoClient
) -> None:
    """The generic status endpoint refuses music tasks with BadRequestError."""
    submitted = await client.submit_wav("p", "a")
    with pytest.raises(BadRequestError):
        await client.get_status(submitted.task_id)


async def test_get_status_escapes_id_in_path(fake: FakeVidgo, client: VidgoClient) -> None:
    """An id with a slash stays one path segment of the status URL."""
    with pytest.raises(NotFoundError):
        await client.get_status("a/b")
    assert fake.requests[0].route == "status"


async def test_unknown_task_is_not_found(fake: FakeVidgo, client: VidgoClient) -> None:
    """get_task of an unknown id raises NotFoundError."""
    with pytest.raises(NotFoundError):
        await client.get_task("no-such-task")


async def test_balance(fake: FakeVidgo, client: VidgoClient) -> None:
    """balance() returns the account's credits and e-mail."""
    fake.credits = 17276
    balance = await client.balance()
    assert balance == Balance(credits_amount=17276, email="dev@example.com")


async def test_balance_counts_conversions(fake: FakeVidgo, client: VidgoClient) -> None:
    """Each accepted conversion costs one credit."""
    before = (await client.balance()).credits_amount
    await client.submit_wav("p", "a")
    assert (await client.balance()).credits_amount == before - 1


async def test_context_manager_returns_client(fake: FakeVidgo) -> None:
    """async with yields the client itself."""
    client = VidgoClient(fake.api_key, base_url=fake.url)
    async with client as entered:
        assert entered is client


async def test_user_agent_names_sdk(fake: FakeVidgo, client: VidgoClient) -> None:
    """Requests identify the SDK in User-Agent."""
    await client.balance()
    assert fake.requests[0].headers["User-Agent"].startswith("vidgo-async/")


async def test_the_api_session_keeps_no_cookies() -> None:
    """A cookie the API sets is never sent back: the API authenticates by its key alone."""
    cookies: list[str | None] = []

    async def balance(request: web.Request) -> web.Response:
        cookies.append(request.headers.get("Cookie"))
        response = web.json_response({"code": 200, "data": {"credits_amount": 5}})
        response.set_cookie("visitor", "tracked")
        return response

    app = web.Application()
    app.router.add_get("/api/user/balance", balance)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "localhost", 0)  # a host name: a jar keeps no cookie of an IP
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with VidgoClient("test-key", base_url=f"http://localhost:{port}") as client:
            await client.balance()
            await client.balance()
    finally:
        await runner.cleanup()
    assert cookies == [None, None]


async def test_task_is_frozen(fake: FakeVidgo, client: VidgoClient) -> None:
    """A Task snapshot cannot be modified."""
    task = await client.get_task(fake.seed_task())
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        task.status = TaskStatus.FAILED  # type: ignore[misc]


@pytest.mark.parametrize(
    ("status", "terminal"),
    [
        (TaskStatus.NOT_STARTED, False),
        (TaskStatus.RUNNING, False),
        (TaskStatus.FINISHED, True),
        (TaskStatus.FAILED, True),
        (TaskStatus.UNKNOWN, False),
    ],
)
async def test_status_terminality(status: TaskStatus, terminal: bool) -> None:
    """Only finished and failed are terminal."""
    assert status.is_terminal is terminal
    assert Task(task_id="t", status=status).is_terminal is terminal


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("not_started", TaskStatus.NOT_STARTED),
        ("running", TaskStatus.RUNNING),
        ("finished", TaskStatus.FINISHED),
        ("failed", TaskStatus.FAILED),
        ("FINISHED", TaskStatus.FINISHED),
        ("Not Started", TaskStatus.NOT_STARTED),
        ("succeeded", TaskStatus.FINISHED),
        ("SUCCESS", TaskStatus.FINISHED),
        ("completed", TaskStatus.FINISHED),
        ("error", TaskStatus.FAILED),
        ("Cancelled", TaskStatus.FAILED),
        ("queued", TaskStatus.NOT_STARTED),
        ("in-progress", TaskStatus.RUNNING),
        ("GENERATE_AUDIO_FAILED", TaskStatus.FAILED),
        ("SENSITIVE_WORD_ERROR", TaskStatus.FAILED),
        ("TEXT_SUCCESS", TaskStatus.UNKNOWN),
        ("paused", TaskStatus.UNKNOWN),
        ("unknown", TaskStatus.UNKNOWN),
    ],
)
async def test_status_strings(
    fake: FakeVidgo, client: VidgoClient, raw: str, status: TaskStatus
) -> None:
    """Documented status strings, and sister platforms' words for them, map to their
    member; anything else is UNKNOWN."""
    task = await client.get_task(fake.seed_task(status=raw, files=[]))
    assert task.status is status


@pytest.mark.parametrize(
    ("data", "expected_id"),
    [
        pytest.param([{"task_id": "t-1", "status": "running"}], "t-1", id="one-task-list"),
        pytest.param({"id": "t-2", "status": "running"}, "t-2", id="id-key"),
        pytest.param({"status": "running"}, "asked-for", id="no-id"),
        pytest.param({"task_id": 42, "status": "running"}, "42", id="integer-id"),
    ],
)
async def test_detail_shapes_of_other_platforms_are_read(
    fake: FakeVidgo, client: VidgoClient, data: object, expected_id: str
) -> None:
    """A one-task list, an "id" key, no id at all or an integer id still give the task."""
    fake.inject(Fault.http_error(200, {"code": 200, "data": data}), route="detail")
    task = await client.get_task(expected_id)
    assert task.task_id == expected_id
    assert task.status is TaskStatus.RUNNING


async def test_an_api_that_never_answered_fails_fast(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listening at the base URL: convert_to_wav gives up after the retry policy's
    attempts, well before its 15-minute deadline, saying what it could not reach."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with VidgoClient("key", base_url=f"http://127.0.0.1:{port}", retry=FAST_RETRY) as client:
        started = time.monotonic()
        with pytest.raises(TransportError, match="cannot reach the API") as info:
            await client.convert_to_wav("t", "a")
    assert time.monotonic() - started < 5
    assert info.value.sent is False


async def test_a_wait_on_an_api_that_never_answered_fails_fast() -> None:
    """Nothing listening at the base URL: a wait gives up after the retry policy's
    attempts, well before its deadline, with the unsent transport error."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Short pauses between polls (the default's 1 + 1.5 + 2.25 s came to the bound).
    poll = PollPolicy(initial=0.05, max_interval=0.2)
    base_url = f"http://127.0.0.1:{port}"
    async with VidgoClient("key", base_url=base_url, retry=FAST_RETRY, poll=poll) as client:
        started = time.monotonic()
        with pytest.raises(TransportError) as info:
            await client.wait("t", timeout=60)
    assert time.monotonic() - started < 5
    assert info.value.sent is False


async def test_persistent_poll_failures_are_reported_once_as_a_warning(
    fake: FakeVidgo, client: VidgoClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A wait whose polls keep failing says so once (a WARNING), then goes on to its result."""
    fake.inject(Fault.server_error(503), route="detail", times=7)
    with caplog.at_level(logging.WARNING, logger="vidgo_async"):
        task = await client.wait(fake.seed_task(status="finished"))
    assert task.status is TaskStatus.FINISHED
    warned = [r.getMessage() for r in caplog.records if "have failed" in r.getMessage()]
    assert len(warned) == 1


async def test_persistent_read_failures_are_reported_once_as_a_warning(
    fake: FakeVidgo, caplog: pytest.LogCaptureFixture
) -> None:
    """A GET whose attempts keep failing says so once (a WARNING), as polls and submits
    do, then returns its answer. (Reads retried in silence at DEBUG.)"""
    fake.inject(Fault.server_error(503), route="detail", times=7)
    retry = attrs.evolve(FAST_RETRY, max_attempts=10)
    async with VidgoClient(fake.api_key, base_url=fake.url, retry=retry) as client:
        with caplog.at_level(logging.WARNING, logger="vidgo_async"):
            task = await client.get_task(fake.seed_task(status="finished"))
    assert task.status is TaskStatus.FINISHED
    warned = [r.getMessage() for r in caplog.records if "have failed" in r.getMessage()]
    assert len(warned) == 1
    assert fake.api_key not in caplog.text


# The first loop's sessions cannot be closed once it is gone: the user's mistake, warned of.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_client_used_in_a_second_event_loop_says_so(vidgo_fake: FakeVidgo) -> None:
    """A client whose sessions were made under one ``asyncio.run()``, used under a
    second (a script's, in a thread of its own here): a ConfigurationError saying so,
    before anything is sent (it was aiohttp's bare RuntimeError "Event loop is closed",
    and unclosed-transport warnings)."""
    task_id = vidgo_fake.seed_task(status="running")
    once = RetryPolicy(max_attempts=1)
    clients = [VidgoClient(vidgo_fake.api_key, base_url=vidgo_fake.url, retry=once)]

    async def read() -> tuple[type[BaseException] | None, str]:
        # Only the type and text: an exception's traceback would keep the client (and
        # its unclosed sessions) alive past this test's gc.collect().
        try:
            await clients[0].get_task(task_id)
        except BaseException as exc:
            return type(exc), str(exc)
        return None, ""

    def script() -> list[tuple[type[BaseException] | None, str]]:
        return [asyncio.run(read()), asyncio.run(read())]

    first, second = await asyncio.wait_for(asyncio.to_thread(script), 30)
    assert first == (None, "")
    assert second[0] is ConfigurationError and "another event loop" in second[1], second
    assert len(vidgo_fake.requests_to("detail")) == 1
    clients.clear()
    gc.collect()  # its warnings here, under this test's filters
