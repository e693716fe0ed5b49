"""Waiting on tasks: terminal states, deadlines, faults, cancellation, watch, the poll cap."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import pytest
from support import TRANSIENT_FAULTS, MakeClient

from vidgo_async import (
    AuthenticationError,
    NotFoundError,
    PermissionDeniedError,
    PollPolicy,
    RetryPolicy,
    Task,
    TaskError,
    TaskFailedError,
    TaskHandle,
    TaskStatus,
    TaskTimeoutError,
    Timeouts,
    VidgoClient,
)
from vidgo_async.testing import FakeVidgo, Fault

pytestmark = pytest.mark.asyncio


async def eventually(condition: Callable[[], bool]) -> None:
    """Wait, at most about five seconds, until ``condition()`` holds."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


async def test_wait_returns_finished_task(fake: FakeVidgo, client: VidgoClient) -> None:
    """wait() returns the finished task with its files."""
    submitted = await client.submit_wav("p", "audio-1")
    task = await client.wait(submitted.task_id, timeout=10)
    assert task.status is TaskStatus.FINISHED
    assert task.task_id == submitted.task_id
    assert task.wav_url is not None


async def test_await_task_returns_wav_url(fake: FakeVidgo, client: VidgoClient) -> None:
    """await_task() returns the finished task's WAV URL."""
    submitted = await client.submit_wav("p", "audio-1")
    url = await client.await_task(submitted.task_id, timeout=10)
    assert url == f"{fake.url}/files/{submitted.task_id}.wav"


async def test_convert_to_wav_returns_url(fake: FakeVidgo, client: VidgoClient) -> None:
    """convert_to_wav() submits, waits and returns the WAV URL of the new task."""
    url = await client.convert_to_wav("p", "audio-1", timeout=10)
    (task_id,) = fake.accepted["audio-1"]
    assert url == f"{fake.url}/files/{task_id}.wav"


async def test_failed_task_raises_task_failed(fake: FakeVidgo, client: VidgoClient) -> None:
    """A failed task raises TaskFailedError with the server's message and a handle."""
    fake.fail("audio-1", "Audio track too short")
    with pytest.raises(TaskFailedError) as info:
        await client.convert_to_wav("p", "audio-1", timeout=10)
    (task_id,) = fake.accepted["audio-1"]
    assert info.value.error_message == "Audio track too short"
    assert "Audio track too short" in str(info.value)
    assert info.value.handle.task_id == task_id
    assert info.value.handle.audio_id == "audio-1"
    assert info.value.task is not None
    assert info.value.task.status is TaskStatus.FAILED


async def test_wait_on_failed_task_raises(fake: FakeVidgo, client: VidgoClient) -> None:
    """wait() on a task that failed raises TaskFailedError."""
    task_id = fake.seed_task(status="failed", error_message="nope")
    with pytest.raises(TaskFailedError) as info:
        await client.wait(task_id, timeout=10)
    assert info.value.error_message == "nope"
    assert info.value.handle.task_id == task_id


async def test_deadline_raises_task_timeout(fake: FakeVidgo, client: VidgoClient) -> None:
    """A task still running at the deadline raises TaskTimeoutError with handle and snapshot."""
    fake.set_duration("audio-1", run_time=600)
    started = time.monotonic()
    with pytest.raises(TaskTimeoutError) as info:
        await client.convert_to_wav("p", "audio-1", timeout=0.3)
    elapsed = time.monotonic() - started
    (task_id,) = fake.accepted["audio-1"]
    assert isinstance(info.value, TimeoutError)
    assert info.value.handle.task_id == task_id
    assert info.value.task is not None
    assert info.value.task.status in (TaskStatus.NOT_STARTED, TaskStatus.RUNNING)
    assert elapsed < 0.3 + 3.0


async def test_stalled_server_cannot_hold_wait_past_deadline(
    fake: FakeVidgo, client: VidgoClient
) -> None:
    """A server that never answers polls still ends the wait at its deadline."""
    fake.inject(Fault.stall(30), route="detail", times=100)
    started = time.monotonic()
    with pytest.raises(TaskTimeoutError) as info:
        await client.wait("task-1", timeout=0.3)
    assert time.monotonic() - started < 0.3 + 3.0
    assert info.value.task is None
    assert info.value.handle.task_id == "task-1"


async def test_slow_request_timeout_does_not_outlast_deadline(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """A per-request timeout longer than the deadline does not stretch the wait."""
    client = make_client(timeouts=Timeouts(connect=30.0, total=60.0))
    fake.inject(Fault.stall(30), route="detail", times=100)
    started = time.monotonic()
    with pytest.raises(TaskTimeoutError):
        await client.wait("task-1", timeout=0.3)
    assert time.monotonic() - started < 0.3 + 3.0


@pytest.mark.parametrize("fault", TRANSIENT_FAULTS)
async def test_wait_survives_transient_faults(
    fake: FakeVidgo, make_client: MakeClient, fault: Fault
) -> None:
    """Transient failures during a wait, even many in a row, do not end it."""
    client = make_client(timeouts=Timeouts(connect=1.0, total=0.1))
    submitted = await client.submit_wav("p", "audio-1")
    fake.inject(fault, route="detail", times=6)
    task = await client.wait(submitted.task_id, timeout=20)
    assert task.status is TaskStatus.FINISHED


async def test_wait_survives_more_failures_than_max_attempts(
    fake: FakeVidgo, client: VidgoClient
) -> None:
    """A wait goes on through more consecutive failures than a single call would retry."""
    submitted = await client.submit_wav("p", "audio-1")
    fake.inject(Fault.server_error(503), route="detail", times=12)
    task = await client.wait(submitted.task_id, timeout=20)
    assert task.status is TaskStatus.FINISHED


@pytest.mark.parametrize("fault", TRANSIENT_FAULTS)
async def test_convert_survives_transient_faults_everywhere(
    fake: FakeVidgo, make_client: MakeClient, fault: Fault
) -> None:
    """convert_to_wav returns the URL through faults on both submit and polls."""
    client = make_client(timeouts=Timeouts(connect=1.0, total=0.1))
    fake.conflict_includes_task_id = True
    fake.inject(fault, route="detail", times=4)
    fake.inject(fault, route="submit")
    url = await client.convert_to_wav("p", "audio-1", timeout=20)
    assert url.endswith(".wav")
    assert fake.accept_count["audio-1"] == 1


async def test_not_found_ends_wait_at_once(fake: FakeVidgo, client: VidgoClient) -> None:
    """A 404 ends the wait after one request."""
    with pytest.raises(NotFoundError):
        await client.wait("no-such-task", timeout=10)
    assert fake.request_count("detail") == 1


async def test_forbidden_ends_wait_at_once(fake: FakeVidgo, client: VidgoClient) -> None:
    """A 403 ends the wait after one request."""
    task_id = fake.seed_task(status="running")
    fake.set_owner_forbidden(task_id)
    with pytest.raises(PermissionDeniedError):
        await client.wait(task_id, timeout=10)
    assert fake.request_count("detail") == 1


async def test_wrong_key_ends_wait_at_once(fake: FakeVidgo, make_client: MakeClient) -> None:
    """A 401 ends the wait after one request."""
    client = make_client(api_key="wrong-key")
    with pytest.raises(AuthenticationError):
        await client.wait(fake.seed_task(status="running"), timeout=10)
    assert fake.request_count("detail") == 1


@pytest.mark.parametrize("status", ["paused", "archived", "", "FINISHED!", "first_success"])
async def test_unknown_status_never_ends_wait(
    fake: FakeVidgo, client: VidgoClient, status: str
) -> None:
    """A status string the docs do not list keeps the wait going until its deadline."""
    task_id = fake.seed_task(status=status, files=[])
    with pytest.raises(TaskTimeoutError) as info:
        await client.wait(task_id, timeout=0.3)
    assert info.value.task is not None
    assert info.value.task.status is TaskStatus.UNKNOWN
    assert fake.request_count("detail") > 1


async def test_unknown_status_keeps_raw_string(fake: FakeVidgo, client: VidgoClient) -> None:
    """A Task with an undocumented status keeps the string the server sent."""
    task = await client.get_task(fake.seed_task(status="paused"))
    assert task.status is TaskStatus.UNKNOWN
    assert task.raw_status == "paused"


async def test_cancel_stops_polling_at_once(fake: FakeVidgo, client: VidgoClient) -> None:
    """Cancelling a wait raises CancelledError, leaks no task and sends no more requests."""
    fake.set_duration("audio-1", run_time=600)
    submitted = await client.submit_wav("p", "audio-1")
    before = asyncio.all_tasks()
    waiter = asyncio.ensure_future(client.wait(submitted.task_id, timeout=60))
    await eventually(lambda: fake.request_count("detail") >= 3)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert asyncio.all_tasks() == before
    count = fake.request_count("detail")
    await asyncio.sleep(0.2)
    assert fake.request_count("detail") == count


async def test_cancel_during_stalled_poll_is_prompt(fake: FakeVidgo, client: VidgoClient) -> None:
    """Cancelling a wait while a poll hangs ends it at once, not when the poll times out."""
    fake.inject(Fault.stall(30), route="detail", times=10)
    waiter = asyncio.ensure_future(client.wait("task-1", timeout=60))
    await eventually(lambda: fake.request_count("detail") >= 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiter, timeout=2)


async def test_cancel_leaves_remote_task_running(fake: FakeVidgo, client: VidgoClient) -> None:
    """A cancelled convert leaves the accepted task alive; waiting again finishes it."""
    fake.set_duration("audio-1", run_time=0.3)
    waiter = asyncio.ensure_future(client.convert_to_wav("p", "audio-1", timeout=60))
    await eventually(lambda: fake.request_count("detail") >= 1)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    (task_id,) = fake.accepted["audio-1"]
    assert (await client.wait(task_id, timeout=10)).status is TaskStatus.FINISHED


async def test_watch_yields_each_change_and_ends_terminal(
    fake: FakeVidgo, client: VidgoClient
) -> None:
    """watch() yields a snapshot on every change, none twice in a row, ending on finished."""
    fake.set_duration("audio-1", queue_time=0.05, run_time=0.3)
    submitted = await client.submit_wav("p", "audio-1")
    seen = [task async for task in client.watch(submitted.task_id, timeout=10)]
    assert seen[-1].status is TaskStatus.FINISHED
    assert all(not task.is_terminal for task in seen[:-1])
    pairs = [(task.status, task.progress) for task in seen]
    assert all(a != b for a, b in itertools.pairwise(pairs))
    assert len({task.status for task in seen}) >= 2


async def test_watch_yields_failed_task(fake: FakeVidgo, client: VidgoClient) -> None:
    """watch() yields a failed task as its last snapshot instead of raising."""
    fake.fail("audio-1", "bad audio")
    submitted = await client.submit_wav("p", "audio-1")
    seen = [task async for task in client.watch(submitted.task_id, timeout=10)]
    assert seen[-1].status is TaskStatus.FAILED
    assert seen[-1].error_message == "bad audio"


async def test_watch_deadline_raises_task_timeout(fake: FakeVidgo, client: VidgoClient) -> None:
    """watch() ends with TaskTimeoutError when its deadline passes."""
    task_id = fake.seed_task(status="running", files=[], progress=10)
    seen: list[Task] = []

    async def collect() -> None:
        async for task in client.watch(task_id, timeout=0.3):
            seen.append(task)

    with pytest.raises(TaskTimeoutError):
        await collect()
    assert len(seen) == 1


async def test_watch_break_stops_polling(fake: FakeVidgo, client: VidgoClient) -> None:
    """Leaving a watch() loop early stops its polling."""
    fake.set_duration("audio-1", run_time=600)
    submitted = await client.submit_wav("p", "audio-1")
    stream = client.watch(submitted.task_id, timeout=60)
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]
    count = fake.request_count("detail")
    await asyncio.sleep(0.2)
    assert fake.request_count("detail") == count


async def test_client_wide_poll_cap_holds(fake: FakeVidgo, make_client: MakeClient) -> None:
    """Many concurrent waits together stay under max_polls_per_second."""
    cap = 20.0
    client = make_client(
        max_polls_per_second=cap, poll=PollPolicy(initial=0.0, max_interval=0.01, jitter=0)
    )
    for n in range(10):
        fake.set_duration(f"audio-{n}", run_time=0.8)
    tasks = [await client.submit_wav("p", f"audio-{n}") for n in range(10)]
    fake.reset_log()
    started = time.monotonic()
    await asyncio.gather(*(client.wait(task.task_id, timeout=30) for task in tasks))
    elapsed = time.monotonic() - started
    polls = fake.request_count("detail")
    # The bucket allows a one-second burst of ``cap`` on top of the steady rate.
    assert polls <= (cap * elapsed + cap) * 1.5


async def test_rate_limit_slows_whole_client(fake: FakeVidgo, make_client: MakeClient) -> None:
    """A 429 with Retry-After on one wait holds back the polls of the other waits too."""
    client = make_client(
        poll=PollPolicy(initial=0.0, max_interval=0.01, jitter=0),
        retry=RetryPolicy(base_delay=0.001, max_delay=0.01, max_retry_after=10.0),
    )
    tasks = []
    for n in range(2):
        fake.set_duration(f"audio-{n}", run_time=600)
        tasks.append(await client.submit_wav("p", f"audio-{n}"))
    fake.inject(Fault.rate_limited("5"), route="detail")
    results = await asyncio.gather(
        *(client.wait(task.task_id, timeout=0.5) for task in tasks), return_exceptions=True
    )
    assert all(isinstance(result, TaskTimeoutError) for result in results)
    # Unthrottled, two waits polling every 10 ms make dozens of requests in 0.5 s.
    assert fake.request_count("detail") <= 6


async def test_handle_round_trips_json() -> None:
    """A TaskHandle survives to_json/from_json unchanged."""
    handle = TaskHandle(task_id="task-x", source_task_id="parent", audio_id="audio-1")
    assert TaskHandle.from_json(handle.to_json()) == handle


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        "{}",
        "null",
        '{"task_id": ""}',
        '{"task_id": 5.5}',
        '{"task_id": [1]}',
        '{"task_id": "x", "model": 3}',
        '{"task_id": "x", "model": null}',
        '{"task_id": "x", "audio_id": {}}',
        '{"task_id": "x", "source_task_id": false}',
        '"a string"',
        "5",
        '{"task_id": "   "}',
        '{"task_id": "x", "audio_id": 7}',
        "[" * 100_000 + "]" * 100_000,
    ],
)
async def test_handle_from_bad_json_raises_value_error(text: str) -> None:
    """TaskHandle.from_json rejects text that is not a handle with ValueError."""
    with pytest.raises(ValueError):
        TaskHandle.from_json(text)


async def test_wait_on_handle(fake: FakeVidgo, client: VidgoClient) -> None:
    """A handle that went through JSON can be waited on."""
    submitted = await client.submit_wav("p", "audio-1")
    text = TaskHandle(task_id=submitted.task_id, audio_id="audio-1").to_json()
    task = await client.wait(TaskHandle.from_json(text), timeout=10)
    assert task.status is TaskStatus.FINISHED


async def test_timed_out_wait_resumes_from_handle(fake: FakeVidgo, client: VidgoClient) -> None:
    """The handle of a TaskTimeoutError, passed through JSON, resumes the wait to the end."""
    fake.set_duration("audio-1", run_time=600)
    with pytest.raises(TaskError) as info:
        await client.convert_to_wav("p", "audio-1", timeout=0.2)
    fake.set_duration("audio-1", run_time=0.01)
    handle = TaskHandle.from_json(info.value.handle.to_json())
    url = await client.await_task(handle, timeout=10)
    assert url.endswith(f"{handle.task_id}.wav")
    assert fake.accept_count["audio-1"] == 1


async def test_explicit_none_timeout_waits_without_deadline(
    fake: FakeVidgo, client: VidgoClient
) -> None:
    """timeout=None, asked for explicitly, waits until the task finishes."""
    submitted = await client.submit_wav("p", "audio-1")
    task = await asyncio.wait_for(client.wait(submitted.task_id, timeout=None), timeout=10)
    assert task.status is TaskStatus.FINISHED


async def test_running_task_reports_progress(fake: FakeVidgo, client: VidgoClient) -> None:
    """A running task's snapshot carries the progress the server reported."""
    task = await client.get_task(fake.seed_task(status="running", files=[], progress=42))
    assert task.status is TaskStatus.RUNNING
    assert task.progress == 42.0


async def test_first_check_is_fast(fake: FakeVidgo, make_client: MakeClient) -> None:
    """wait() checks at once: a finished task is returned without a poll interval."""
    client = make_client(poll=PollPolicy(initial=30.0))
    task_id = fake.seed_task()
    task = await asyncio.wait_for(client.wait(task_id, timeout=60), timeout=10)
    assert task.status is TaskStatus.FINISHED


async def test_retry_after_never_shortens_poll_interval(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """A "Retry-After: 0" on polls does not make a wait poll faster than its policy."""
    client = make_client(
        poll=PollPolicy(initial=0.2, factor=1.0, max_interval=0.2, jitter=0),
        retry=RetryPolicy(base_delay=0.0, max_delay=0.0, max_retry_after=0.001),
    )
    task_id = fake.seed_task(status="running", files=[])
    fake.inject(Fault.rate_limited("0"), route="detail", times=100)
    with pytest.raises(TaskTimeoutError):
        await client.wait(task_id, timeout=1.0)
    # One immediate check, then one every 0.2 s: about six in a second.
    assert fake.request_count("detail") <= 8
