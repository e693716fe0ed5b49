"""The on_event hook: structured events for submits, polls, retries, status changes,
callbacks, and the start and end of operations and requests."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import warnings
from collections.abc import Coroutine, Generator
from pathlib import Path
from typing import Any

import pytest
from support import FAST_POLL, FAST_RETRY, Abort

from vidgo_async import Event, TaskFailedError, TaskStatus, VidgoClient, VidgoError
from vidgo_async.testing import FakeVidgo, Fault

pytestmark = pytest.mark.asyncio


def _client(fake: FakeVidgo, events: list[Event]) -> VidgoClient:
    return VidgoClient(
        fake.api_key,
        base_url=fake.url,
        poll=FAST_POLL,
        retry=FAST_RETRY,
        max_polls_per_second=1000.0,
        on_event=events.append,
    )


async def test_a_conversion_reports_submit_polls_and_status_changes(vidgo_fake: FakeVidgo) -> None:
    """One conversion: a submit event, poll events, and each status change once, in order."""
    events: list[Event] = []
    async with _client(vidgo_fake, events) as client:
        await client.convert_to_wav("music", "audio-1")
    submits = [e for e in events if e.kind == "submit"]
    assert len(submits) == 1
    assert submits[0].task_id and submits[0].error is None
    task_id = submits[0].task_id
    polls = [e for e in events if e.kind == "poll"]
    assert len(polls) == vidgo_fake.request_count("detail")
    assert all(e.task_id == task_id and e.status is not None for e in polls)
    changes = [e.status for e in events if e.kind == "status"]
    assert changes[-1] is TaskStatus.FINISHED
    assert len(changes) == len(set(changes))


async def test_retries_are_reported_with_their_delay(vidgo_fake: FakeVidgo) -> None:
    """A retried submit reports a retry event naming the error, the attempt and the delay."""
    vidgo_fake.inject(Fault.server_error(503), route="submit")
    events: list[Event] = []
    async with _client(vidgo_fake, events) as client:
        await client.submit_wav("music", "audio-1")
    retries = [e for e in events if e.kind == "retry"]
    assert len(retries) == 1
    assert retries[0].error == "ServerError"
    assert retries[0].attempt == 1
    assert retries[0].delay is not None and retries[0].delay >= 0
    assert retries[0].path == "/api/generate/submit"


async def test_failed_polls_are_reported(vidgo_fake: FakeVidgo) -> None:
    """A poll answered 500 is a poll event carrying the error's name."""
    vidgo_fake.inject(Fault.server_error(500), route="detail")
    events: list[Event] = []
    async with _client(vidgo_fake, events) as client:
        await client.convert_to_wav("music", "audio-1")
    assert [e.error for e in events if e.kind == "poll" and e.error] == ["ServerError"]


async def test_a_failing_hook_never_breaks_the_sdk(
    vidgo_fake: FakeVidgo, caplog: pytest.LogCaptureFixture
) -> None:
    """A hook that raises is logged and ignored; the conversion still succeeds."""

    def broken(event: Event) -> None:
        raise RuntimeError("metrics backend down")

    caplog.set_level(logging.ERROR, logger="vidgo_async")
    async with VidgoClient(
        vidgo_fake.api_key, base_url=vidgo_fake.url, poll=FAST_POLL, on_event=broken
    ) as client:
        url = await client.convert_to_wav("music", "audio-1")
    assert url.endswith(".wav")
    assert "on_event hook raised" in caplog.text


@pytest.mark.parametrize("error", [asyncio.CancelledError, Abort], ids=["cancelled", "base"])
@pytest.mark.parametrize("kind", ["submit", "request_end", "operation_start", "operation_end"])
async def test_a_hook_raising_what_is_no_exception_loses_nothing(
    vidgo_fake: FakeVidgo, caplog: pytest.LogCaptureFixture, error: type[BaseException], kind: str
) -> None:
    """A hook raising a CancelledError or another BaseException (once, on each kind of
    event in turn) is logged and ignored as any failing hook: a conversion returns its
    URL, a batch yields a result per pair. (It escaped: the batch ended with a paid pair
    unreported, and convert_to_wav lost the accepted task's id.)"""
    raised: list[str] = []

    def hook(event: Event) -> None:
        if event.kind == kind and len(raised) < 2:
            raised.append(kind)
            raise error()

    caplog.set_level(logging.ERROR, logger="vidgo_async")
    async with VidgoClient(
        vidgo_fake.api_key, base_url=vidgo_fake.url, poll=FAST_POLL, on_event=hook
    ) as client:
        url = await asyncio.wait_for(client.convert_to_wav("music", "audio-1"), 10)
        pairs = [("music", f"b{i}") for i in range(4)]
        results = [r async for r in client.convert_many(pairs, timeout=10)]
    assert url.endswith(".wav") and raised
    assert sorted(r.audio_id for r in results if r.ok) == [a for _, a in pairs]
    assert "on_event hook raised" in caplog.text
    assert max(vidgo_fake.accept_count.values()) == 1


class _Lazy:
    """An awaitable that is no coroutine, as aiohttp's ``session.post(...)`` returns."""

    def __init__(self, work: Coroutine[Any, Any, None]) -> None:
        self._work = work

    def __await__(self) -> Generator[Any, None, None]:
        return self._work.__await__()

    def close(self) -> None:
        self._work.close()


@pytest.mark.parametrize("kind", ["coroutine", "awaitable", "instance"])
async def test_a_hook_returning_an_awaitable_is_told_of(vidgo_fake: FakeVidgo, kind: str) -> None:
    """A plain function that returns a coroutine (a lambda around an ``async def``),
    another awaitable (aiohttp's lazy request), or an instance (unhashable) whose
    ``__call__`` does: what it returns is closed, not left unawaited (Python's
    RuntimeWarning per event), a RuntimeWarning of ours says so, and the conversion
    returns its URL (the instance's TypeError escaped into the SDK, losing the task)."""
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    @dataclasses.dataclass
    class Recorder:  # unhashable
        name: str

        def __call__(self, event: Event) -> object:
            return record(event)

    def hook(event: Event) -> object:
        return _Lazy(record(event)) if kind == "awaitable" else record(event)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with VidgoClient(
            vidgo_fake.api_key,
            base_url=vidgo_fake.url,
            poll=FAST_POLL,
            on_event=Recorder("r") if kind == "instance" else hook,
        ) as client:
            url = await asyncio.wait_for(client.convert_to_wav("music", "audio-1"), 10)
            gc.collect()  # an unawaited coroutine would warn here
    assert url.endswith(".wav") and seen == []
    told = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert told and all("returned an awaitable" in message for message in told), told


async def test_operations_and_requests_come_in_nested_pairs(vidgo_fake: FakeVidgo) -> None:
    """convert_to_wav: its submit and wait, and each request, start and end properly nested."""
    events: list[Event] = []
    async with _client(vidgo_fake, events) as client:
        await client.convert_to_wav("music", "audio-1")
    open_: list[str] = []
    for event in events:
        if event.kind.endswith("_start"):
            open_.append(event.operation or event.kind)
        elif event.kind.endswith("_end"):
            assert open_.pop() == (event.operation or "request_start")
            assert event.duration is not None and event.duration >= 0
    assert open_ == []
    operations = [e.operation for e in events if e.kind == "operation_start"]
    assert operations == ["convert_to_wav", "submit", "wait"]
    ends = [e for e in events if e.kind == "request_end"]
    assert len(ends) == 1 + vidgo_fake.request_count("detail")
    assert {(e.method, e.route, e.status_code) for e in ends} == {
        ("POST", "/api/generate/submit", 200),
        ("GET", "/api/generate/detail/music", 200),
    }
    assert all(e.server_address == "127.0.0.1" and e.server_port for e in ends)


async def test_a_failed_operation_ends_with_its_error(vidgo_fake: FakeVidgo) -> None:
    """An operation that raised ends with the error's class name; its task id is known."""
    vidgo_fake.fail("audio-1")
    events: list[Event] = []
    async with _client(vidgo_fake, events) as client:
        with pytest.raises(TaskFailedError):
            await client.convert_to_wav("music", "audio-1")
    ends = {e.operation: e for e in events if e.kind == "operation_end"}
    assert ends["submit"].error is None and ends["submit"].task_id
    assert ends["wait"].error == ends["convert_to_wav"].error == "TaskFailedError"
    assert ends["convert_to_wav"].task_id == ends["submit"].task_id


async def test_events_carry_neither_the_key_nor_a_query(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """No event of a conversion, a retried poll and a download repeats the key or a URL query."""
    vidgo_fake.inject(Fault.server_error(500), route="detail")
    events: list[Event] = []
    async with _client(vidgo_fake, events) as client:
        url = await client.convert_to_wav("music", "audio-1")
        await client.download(url, tmp_path / "a.wav")
    assert {e.operation for e in events if e.kind == "operation_end"} >= {"download", "wait"}
    dumped = repr(events)
    assert vidgo_fake.api_key not in dumped and "?" not in dumped


async def test_a_submit_of_any_input_is_reported(vidgo_fake: FakeVidgo) -> None:
    """A conversion submitted with an input lacking the track's ids is reported all the same."""
    events: list[Event] = []
    async with _client(vidgo_fake, events) as client:
        with pytest.raises(VidgoError):
            await client.submit("convert-to-wav", {"audio_id": "audio-1"})
    (start,) = [e for e in events if e.kind == "operation_start"]
    assert (start.operation, start.model, start.source_task_id) == (
        "submit",
        "convert-to-wav",
        None,
    )
    assert [e.error for e in events if e.kind == "operation_end"] == ["BadRequestError"]
