"""The on_event hook: structured events for submit, poll, retry, status change, callback."""

from __future__ import annotations

import logging

import pytest
from support import FAST_POLL, FAST_RETRY

from vidgo_async import Event, TaskStatus, VidgoClient
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
