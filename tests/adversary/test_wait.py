"""Waits against a hostile server: 5xx, pacing, identity, closing, the poll cap (issue 12)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from vidgo_async import (
    ClientClosedError,
    InvalidResponseError,
    NotFoundError,
    PollPolicy,
    TaskHandle,
    TaskTimeoutError,
    VidgoClient,
    VidgoError,
)

from .conftest import MakeSdk
from .server import DETAIL, STATUS, HostileServer, hang, reply, reset
from .support import FORBIDDEN

PARENT, TRACK = "parent-1", "track-1"
NEVER = 1e9  # finish_after of a task that never finishes
T = TypeVar("T")


async def collect(batch: AsyncIterator[T]) -> list[T]:
    return [item async for item in batch]


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def most_in_window(times: list[float], window: float) -> int:
    """The most requests seen within any ``window`` seconds."""
    times, best, start = sorted(times), 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


# -- 3. a 5xx on a poll is no news --------------------------------------------------

ALL_5XX = [500, 501, 502, 503, 504, 505, 507, 511, 520, 521, 522, 523, 524, 527, 530, 599]


@pytest.mark.parametrize("status", ALL_5XX)
@pytest.mark.asyncio
async def test_one_5xx_on_a_poll_does_not_end_the_wait(
    server: HostileServer, sdk: VidgoClient, status: int
) -> None:
    """A single 5xx of any code on a poll is retried: the wait still returns the finished task."""
    server.add_task("t1")
    server.script(DETAIL, reply(status, b"<html>origin down</html>"))
    task = await asyncio.wait_for(sdk.wait("t1", timeout=3), 5)
    assert task.status.value == "finished"
    assert len(server.hits(DETAIL)) == 2


@pytest.mark.parametrize("status", ALL_5XX)
@pytest.mark.asyncio
async def test_one_5xx_on_get_task_is_retried(
    server: HostileServer, sdk: VidgoClient, status: int
) -> None:
    """A single 5xx of any code on get_task is retried like any idempotent read."""
    server.add_task("t1")
    server.script(DETAIL, reply(status, {"code": status, "message": "busy"}))
    task = await asyncio.wait_for(sdk.get_task("t1"), 5)
    assert task.task_id == "t1"


@pytest.mark.parametrize("status", [520, 502])
@pytest.mark.asyncio
async def test_5xx_until_the_deadline_is_a_timeout(
    server: HostileServer, sdk: VidgoClient, status: int
) -> None:
    """Polls answered only 5xx go on until the deadline: TaskTimeoutError, not ServerError."""
    server.add_task("t1")
    server.script(DETAIL, *[reply(status, b"") for _ in range(10_000)])
    with pytest.raises(VidgoError) as info:
        await asyncio.wait_for(sdk.wait("t1", timeout=0.5), 5)
    assert type(info.value) is TaskTimeoutError, repr(info.value)
    assert len(server.hits(DETAIL)) > 3


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize(
    "retry_after", ["99999999999", "Wed, 21 Oct 2099 07:28:00 GMT", "-1", "1e400", "junk"]
)
@pytest.mark.asyncio
async def test_odd_retry_after_on_polls(
    server: HostileServer, sdk: VidgoClient, status: int, retry_after: str
) -> None:
    """A huge, far-future, negative or junk Retry-After on a poll is capped: the wait goes on."""
    server.add_task("t1")
    server.script(DETAIL, reply(status, b"", [("Retry-After", retry_after)]))
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = await asyncio.wait_for(sdk.wait("t1", timeout=3), 5)
    assert task.status.value == "finished"
    assert loop.time() - started < 1.0


# -- 4. pacing: never past max_interval, a last read before the deadline -------------


@pytest.mark.asyncio
async def test_stuck_progress_never_sleeps_past_max_interval(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """Progress stuck at 1% then finished: polls stay max_interval apart, the wait ends promptly."""
    server.task_defaults = {"finish_after": 0.6, "progress": 1}
    loop = asyncio.get_running_loop()
    started = loop.time()
    url = await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=10), 2.5)
    assert url == f"{server.url}/files/wav-1.wav"
    assert loop.time() - started < 0.6 + 0.4
    # max_interval plus jitter, and room for a busy machine; a progress estimate sleeps seconds.
    assert max(gaps([hit.at for hit in server.hits(DETAIL)])) < 0.05 * 1.1 + 0.2


def _stuck(age: float) -> int:
    return min(99, int(age * 198))


def _flickering() -> Any:
    reads = itertools.count()
    return lambda age: _stuck(age) if age < 0.5 else 98 + next(reads) % 2


def _creeping() -> Any:
    reads = itertools.count()
    return lambda age: _stuck(age) if age < 0.5 else 98 + next(reads) / 100


@pytest.mark.parametrize(
    "progress",
    [lambda: _stuck, _flickering, _creeping],
    ids=["stuck-at-99", "flickering-98-99", "creeping-by-0.01"],
)
@pytest.mark.asyncio
async def test_progress_that_stops_short_of_the_end_is_polled_no_more_than_blind(
    server: HostileServer, sdk: VidgoClient, progress: Any
) -> None:
    """A task that races to 99 % in half a second, then sits there (or flickers between
    98 and 99, or creeps by a hundredth a read) until it finishes at 4 s: once a check
    past the estimated finish finds the progress no further on, the wait polls as it
    would with no progress at all. Before, it aimed each check at a finish "any moment
    now": ~1.5 % of the time elapsed apart, some 100 checks instead of ~10 (and a
    flicker or a creep defeated the first fix: each change aimed again)."""
    policy = PollPolicy(initial=0.1, factor=1.5, max_interval=1.0)
    server.add_task("stuck", finish_after=4.0, progress=progress())
    server.add_task("blind", finish_after=4.0)
    await asyncio.wait_for(
        asyncio.gather(*(sdk.wait(task, timeout=10, poll=policy) for task in ("stuck", "blind"))),
        15,
    )
    checks = {
        task: sum(hit.query.get("task_id") == task for hit in server.hits(DETAIL))
        for task in ("stuck", "blind")
    }
    assert checks["stuck"] <= checks["blind"] + 5, checks


@pytest.mark.parametrize("progress", [1, None, lambda age: 1 if age < 0.3 else 2])
@pytest.mark.asyncio
async def test_a_last_read_before_the_deadline(
    server: HostileServer, sdk: VidgoClient, progress: Any
) -> None:
    """A task that finished before the deadline is found by a last read, even on a slow schedule."""
    server.add_task("t1", finish_after=0.3, progress=progress)
    slow = PollPolicy(initial=5, max_interval=60)  # the next poll is due past the deadline
    task = await asyncio.wait_for(sdk.wait("t1", timeout=1.0, poll=slow), 3)
    assert task.status.value == "finished"


# -- 5, 6. identity: another task, another track ------------------------------------


@pytest.mark.parametrize("read", ["get_task", "get_status"])
@pytest.mark.asyncio
async def test_answer_naming_another_task_is_invalid(
    server: HostileServer, sdk: VidgoClient, read: str
) -> None:
    """get_task('a') answered with task_id 'b' raises InvalidResponseError."""
    server.add_task("a", extra={"task_id": "b"})
    with pytest.raises(InvalidResponseError):
        await asyncio.wait_for(getattr(sdk, read)("a"), 5)
    assert server.hits(DETAIL if read == "get_task" else STATUS)


@pytest.mark.parametrize("named", ["t2", "\\ud800"], ids=["another-id", "a-lone-surrogate"])
@pytest.mark.asyncio
async def test_one_answer_naming_another_task_does_not_end_the_wait(
    server: HostileServer, sdk: VidgoClient, named: str
) -> None:
    """A poll answered once about another task - even by an id that could never be sent
    back - is no news about this one: the wait goes on and sees it finish."""
    server.add_task("t1")
    glitch = f'{{"code": 200, "data": {{"task_id": "{named}", "status": "running"}}}}'
    server.script(DETAIL, reply(200, glitch.encode()))
    task = await asyncio.wait_for(sdk.wait("t1", timeout=3), 5)
    assert (task.task_id, task.status.value) == ("t1", "finished")
    assert len(server.hits(DETAIL)) >= 2


@pytest.mark.asyncio
async def test_convert_never_returns_another_tasks_wav(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """convert_to_wav answered about another task never returns that task's wav_url."""
    other = f"{server.url}/files/other.wav"
    server.task_defaults = {"extra": {"task_id": "other"}, "files": [{"wav_url": other}]}
    with pytest.raises(VidgoError) as info:
        await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=0.5), 5)
    assert not isinstance(info.value, FORBIDDEN)


@pytest.mark.asyncio
async def test_a_wait_whose_every_answer_is_about_another_task_ends_soon(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """An API that answers every read of the task about another one (a fixed example
    id) ends the wait after three such answers in a row with InvalidResponseError
    saying so. Before, it was polled to its deadline (15 minutes by default) and
    timed out as if still running."""
    server.task_defaults = {"extra": {"task_id": "8FDN1I7M7Q68DDG8"}}
    with pytest.raises(InvalidResponseError, match="3 answers in a row about another task"):
        await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=30), 5)
    assert len(server.hits(DETAIL)) == 3


def track_files(server: HostileServer, *audio_ids: str) -> list[dict[str, str]]:
    return [{"audio_id": a, "wav_url": f"{server.url}/files/{a}.wav"} for a in audio_ids]


@pytest.mark.parametrize(
    "listed",
    [
        pytest.param((TRACK,), id="own"),
        pytest.param(("other-track", TRACK), id="other-first"),
    ],
)
@pytest.mark.asyncio
async def test_wav_of_the_pairs_track(
    server: HostileServer, sdk: VidgoClient, listed: tuple[str, ...]
) -> None:
    """When files carry audio_id, the returned wav_url is the pair's track's."""
    server.task_defaults = {"files": track_files(server, *listed)}
    url = await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=3), 5)
    assert url == f"{server.url}/files/{TRACK}.wav"


@pytest.mark.asyncio
async def test_a_track_named_by_a_number_is_found(server: HostileServer, sdk: VidgoClient) -> None:
    """A file naming its track by an integer (as some platforms write ids) is the pair's
    track's file when the digits match: the wait returns it rather than timing out."""
    url = f"{server.url}/files/12345.wav"
    server.task_defaults = {"files": [{"audio_id": 12345, "wav_url": url}]}
    assert await asyncio.wait_for(sdk.convert_to_wav(PARENT, "12345", timeout=3), 5) == url


@pytest.mark.asyncio
async def test_a_track_named_in_another_letter_case_is_found(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """A file naming the pair's UUID track lower-cased (a server that normalises ids) is
    its file: the wait returns it; it ended in InvalidResponseError."""
    track = "E231ABCD-8CADC7DC"
    url = f"{server.url}/files/{track.lower()}.wav"
    server.task_defaults = {"files": [{"audio_id": track.lower(), "wav_url": url}]}
    assert await asyncio.wait_for(sdk.convert_to_wav(PARENT, track, timeout=3), 5) == url


@pytest.mark.asyncio
async def test_a_file_naming_the_track_exactly_comes_before_one_in_another_case(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """Two tracks whose hex ids differ by case alone: the pair gets its own, even when
    the other comes first in the list."""
    mine, other = "ABCDEF12", "abcdef12"
    files = [
        {"audio_id": other, "wav_url": f"{server.url}/files/other.wav"},
        {"audio_id": mine, "wav_url": f"{server.url}/files/mine.wav"},
    ]
    server.task_defaults = {"files": files}
    url = await asyncio.wait_for(sdk.convert_to_wav(PARENT, mine, timeout=3), 5)
    assert url == f"{server.url}/files/mine.wav"


@pytest.mark.asyncio
async def test_a_file_naming_the_track_comes_before_one_naming_none(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """A mixdown listed first without an ``audio_id``, then the pair's own file: the wait
    returns the pair's (found by a hostile run: the unnamed one won)."""
    files = [
        {"wav_url": f"{server.url}/files/mixdown.wav"},
        {"audio_id": TRACK, "wav_url": f"{server.url}/files/mine.wav"},
    ]
    server.task_defaults = {"files": files}
    url = await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=3), 5)
    assert url == f"{server.url}/files/mine.wav"


ODD_NAMES = [
    pytest.param({"audio_id": ""}, "mine", id="blank-is-no-track"),
    pytest.param({"audio_id": 12345.0}, "mine", id="whole-float-is-the-number"),
    pytest.param({"audio_id": f" {TRACK} "}, "mine", id="blanks-around"),
    pytest.param({"audio_id": {"id": TRACK}}, "mine", id="an-object-is-no-track"),
    pytest.param({"audioId": "other-track"}, "other", id="audioId-names-another"),
]


@pytest.mark.parametrize(("named", "expected"), ODD_NAMES)
@pytest.mark.asyncio
async def test_a_file_naming_its_track_oddly_is_read_as_a_server_would_mean_it(
    server: HostileServer, sdk: VidgoClient, named: dict[str, Any], expected: str
) -> None:
    """A blank id or an object names no track, 12345.0 is 12345, blanks around an id
    are no part of it, and ``audioId`` names a track as ``audio_id`` does (found by a
    hostile run: the first four missed the pair's file, the last returned another's)."""
    track = "12345" if "12345" in str(named) else TRACK
    files = [{**named, "wav_url": f"{server.url}/files/mine.wav"}]
    server.task_defaults = {"files": files}
    call = sdk.convert_to_wav(PARENT, track, timeout=1)
    if expected == "mine":
        assert await asyncio.wait_for(call, 5) == f"{server.url}/files/mine.wav"
    else:
        with pytest.raises(VidgoError):
            await asyncio.wait_for(call, 5)


@pytest.mark.asyncio
async def test_a_track_whose_id_differs_by_letter_case_alone_is_another_track(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """Ids that are not hex (a UUID's) name other tracks when only their case differs."""
    url = f"{server.url}/files/other.wav"
    server.task_defaults = {"files": [{"audio_id": "Track-Straße", "wav_url": url}]}
    with pytest.raises(VidgoError):
        await asyncio.wait_for(sdk.convert_to_wav(PARENT, "track-STRASSE", timeout=0.5), 5)


@pytest.mark.asyncio
async def test_only_another_tracks_file_is_no_result(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """A finished task listing only another track's file gives no result for this pair."""
    server.task_defaults = {"files": track_files(server, "other-track")}
    with pytest.raises(VidgoError) as info:
        await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=0.5), 5)
    assert not isinstance(info.value, FORBIDDEN)


@pytest.mark.asyncio
async def test_batch_wav_of_the_pairs_track(server: HostileServer, sdk: VidgoClient) -> None:
    """convert_many gives each pair its own track's wav_url when files carry audio_id."""
    server.task_defaults = {"files": track_files(server, "other-track", TRACK)}
    results = [r async for r in sdk.convert_many([(PARENT, TRACK)], timeout=3)]
    assert [r.wav_url for r in results] == [f"{server.url}/files/{TRACK}.wav"]


# -- 7. a task id that cannot be sent back unchanged -----------------------------------

SURROGATE_ID = "t\ud800x"  # sent as the JSON escape "t\ud800x"; yarl drops the \ud800


@pytest.mark.asyncio
async def test_surrogate_task_id_is_invalid(server: HostileServer, sdk: VidgoClient) -> None:
    """A server-issued id with a lone surrogate raises InvalidResponseError, never polls 'tx'."""
    server.next_ids.append(SURROGATE_ID)
    server.add_task("tx", files=[{"wav_url": f"{server.url}/files/someone-else.wav"}])
    with pytest.raises(VidgoError) as info:
        await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=1), 5)
    assert isinstance(info.value, InvalidResponseError), repr(info.value)
    assert [hit.query for hit in server.hits(DETAIL)] == []


@pytest.mark.asyncio
async def test_surrogate_task_id_with_journal(
    server: HostileServer, sdk: VidgoClient, tmp_path: Path
) -> None:
    """convert_many with a journal reports the surrogate id as a typed error per pair."""
    server.next_ids.append(SURROGATE_ID)
    pairs = [(PARENT, TRACK), (PARENT, "track-2")]
    batch = sdk.convert_many(pairs, timeout=1, journal=tmp_path / "j.sqlite")
    results = await asyncio.wait_for(collect(batch), 5)
    by_track = {r.audio_id: r for r in results}
    assert isinstance(by_track[TRACK].error, InvalidResponseError), repr(by_track[TRACK].error)
    assert by_track["track-2"].ok
    assert server.creations[TRACK] == 1


@pytest.mark.asyncio
async def test_caller_id_with_surrogate_is_refused_before_sending(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """get_task with an id carrying a lone surrogate raises ValueError before any request."""
    server.add_task("tx")
    with pytest.raises(ValueError):
        await asyncio.wait_for(sdk.get_task(SURROGATE_ID), 5)
    assert server.log == []


# -- 8. wav_url that is no download URL ---------------------------------------------

BAD_URLS = [
    "javascript:alert(document.cookie)",
    "JaVaScRiPt:alert(1)",
    "file:///etc/passwd",
    "data:audio/wav;base64,UklGRiQAAABXQVZF",
    "/files/relative.wav",
    "relative.wav",
    "//evil.example/x.wav",
    # Terminal control sequences: a user's shell prints the URL it is given.
    "https://cdn.example/x.wav\x1b]0;owned\x07\x1b[2J",
    "https://cdn.example/x.wav\r\nDone: https://evil.example/y.wav",
    "https://cdn.example/\x00x.wav",
    "https://cdn.example/x\x85.wav",
]


@pytest.mark.parametrize("entry", ["convert_to_wav", "await_task"])
@pytest.mark.parametrize("bad", BAD_URLS)
@pytest.mark.asyncio
async def test_unusable_wav_url_is_no_result(
    server: HostileServer, sdk: VidgoClient, bad: str, entry: str
) -> None:
    """A wav_url with a javascript:, file:, data: scheme, a relative one or one with
    control characters is never returned."""
    server.task_defaults = {"files": [{"wav_url": bad}]}
    server.add_task("t1", files=[{"wav_url": bad}])
    if entry == "convert_to_wav":
        call = sdk.convert_to_wav(PARENT, TRACK, timeout=0.3)
    else:
        call = sdk.await_task("t1", timeout=0.3)
    with pytest.raises(VidgoError) as info:
        await asyncio.wait_for(call, 5)
    assert not isinstance(info.value, FORBIDDEN)


# -- 11. closing the client ends every pending wait --------------------------------------


@pytest.mark.asyncio
async def test_close_ends_pending_waits(
    server: HostileServer, make_sdk: MakeSdk, caplog: pytest.LogCaptureFixture
) -> None:
    """aclose() ends a sleeping wait, a wait with a poll in flight and a batch with
    ClientClosedError within a second, and logs no traceback."""
    caplog.set_level(logging.DEBUG)
    sdk = make_sdk()
    server.add_task("sleeping", finish_after=NEVER)
    server.add_task("inflight", finish_after=NEVER)
    server.task_defaults = {"finish_after": NEVER}
    in_flight = asyncio.Event()
    server.script(DETAIL, hang(in_flight), task_id="inflight")

    async def batch() -> list[Any]:
        pairs = [(PARENT, f"track-{i}") for i in range(3)]
        return [r.error async for r in sdk.convert_many(pairs, timeout=30)]

    sleepy = PollPolicy(initial=20, max_interval=20)
    waits = {
        "sleeping": asyncio.create_task(sdk.wait("sleeping", timeout=30, poll=sleepy)),
        "inflight": asyncio.create_task(sdk.wait("inflight", timeout=30)),
        "batch": asyncio.create_task(batch()),
    }
    try:
        await asyncio.wait_for(in_flight.wait(), 3)
        while len({hit.query["task_id"] for hit in server.hits(DETAIL)}) < 5:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await asyncio.wait_for(sdk.aclose(), 2)
        done, _ = await asyncio.wait(waits.values(), timeout=1.0)
        assert set(done) == set(waits.values()), "pending waits survived aclose()"
        for name, task in waits.items():
            exc = task.exception()
            if name == "batch" and exc is None:  # or every pair's result carries it
                errors = task.result()
                assert len(errors) == 3
                exc = next(iter(errors))
            assert isinstance(exc, VidgoError), f"{name}: {exc!r}"
            assert type(exc).__name__ == "ClientClosedError", f"{name}: {exc!r}"
        assert [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()] == []
    finally:
        for task in waits.values():
            task.cancel()
        await asyncio.gather(*waits.values(), return_exceptions=True)


# -- 12. the poll cap holds on the wire ------------------------------------------------


@pytest.mark.parametrize(
    "resets",
    [
        pytest.param(False, id="plain"),
        pytest.param(True, id="resets"),
    ],
)
@pytest.mark.asyncio
async def test_poll_cap_holds_on_the_wire(
    server: HostileServer, make_sdk: MakeSdk, resets: bool
) -> None:
    """With max_polls_per_second=10, the server never sees more than 10 status requests a second."""
    sdk = make_sdk(max_polls_per_second=10)
    for name in ("t1", "t2"):
        server.add_task(name, finish_after=NEVER)
    if resets:
        server.script(DETAIL, *[reset(process=False) for _ in range(10_000)])
    waits = [sdk.wait(name, timeout=2.2) for name in ("t1", "t2")]
    outcomes = await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), 5)
    assert all(isinstance(outcome, TaskTimeoutError) for outcome in outcomes), outcomes
    times = [hit.at for hit in server.hits(DETAIL)]
    assert len(times) >= 15  # the cap, not the schedule, was the limit
    assert most_in_window(times, 0.95) <= 10


@pytest.mark.asyncio
async def test_poll_cap_holds_in_every_second_when_many_waits_start_at_once(
    server: HostileServer, make_sdk: MakeSdk
) -> None:
    """200 waits starting together, on connections still to be opened: never more
    than the cap in any one-second span at the server, late requests included."""
    sdk = make_sdk(max_polls_per_second=30)
    names = [f"many-{n}" for n in range(200)]
    for name in names:
        server.add_task(name, finish_after=NEVER)
    waits = [sdk.wait(name, timeout=2.5) for name in names]
    outcomes = await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), 10)
    assert all(isinstance(outcome, TaskTimeoutError) for outcome in outcomes), outcomes[:3]
    times = [hit.at for hit in server.hits(DETAIL)]
    assert len(times) >= 45  # the cap, not the schedule, was the limit
    assert most_in_window(times, 1.0) <= 30


# -- own cases: odd but plausible detail answers -----------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"status": "FINISHED"}, id="upper"),
        pytest.param({"status": " Finished\n"}, id="padded"),
        pytest.param({"code": "200"}, id="str-code"),
    ],
)
@pytest.mark.asyncio
async def test_loose_status_spelling_finishes(
    server: HostileServer, sdk: VidgoClient, extra: dict[str, Any]
) -> None:
    """A finished status in odd case or padding is still finished."""
    server.add_task("t1", extra=extra)
    task = await asyncio.wait_for(sdk.wait("t1", timeout=2), 5)
    assert task.wav_url == f"{server.url}/files/t1.wav"


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"status": None}, id="null-status"),
        pytest.param({"status": 3}, id="int-status"),
        pytest.param({"status": ["finished"]}, id="list-status"),
        pytest.param({"files": {"wav_url": "https://x/y.wav"}}, id="files-dict"),
        pytest.param({"files": "https://x/y.wav"}, id="files-str"),
        pytest.param({"files": [None, 1, "x", []]}, id="files-junk"),
        pytest.param({"files": [{"wav_url": 7}]}, id="url-int"),
        pytest.param({"progress": "NaN"}, id="progress-nan"),
        pytest.param({"progress": {"p": 1}}, id="progress-dict"),
        pytest.param({"created_time": "9999-99-99T99:99"}, id="bad-time"),
        pytest.param({"error_message": {"deep": [[[1]]]}}, id="message-object"),
    ],
)
@pytest.mark.asyncio
async def test_odd_detail_fields_give_a_typed_outcome(
    server: HostileServer, sdk: VidgoClient, extra: dict[str, Any]
) -> None:
    """Odd status, files, progress or time fields end in a result or a typed error, in time."""
    server.add_task("t1", extra=extra)
    with contextlib.suppress(VidgoError):
        await asyncio.wait_for(sdk.await_task("t1", timeout=0.3), 5)


@pytest.mark.asyncio
async def test_http_200_with_5xx_code_on_poll_is_retried(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """An HTTP 200 carrying code 502 on a poll is no news; the wait goes on to the result."""
    server.add_task("t1")
    server.script(DETAIL, reply(200, {"code": 502, "msg": "upstream"}))
    task = await asyncio.wait_for(sdk.wait("t1", timeout=3), 5)
    assert task.status.value == "finished"


@pytest.mark.asyncio
async def test_failed_task_is_typed(server: HostileServer, sdk: VidgoClient) -> None:
    """A failed task raises TaskFailedError carrying the server's message."""
    server.add_task("t1", outcome="failed", error_message="source audio missing")
    with pytest.raises(VidgoError) as info:
        await asyncio.wait_for(sdk.wait("t1", timeout=2), 5)
    assert type(info.value).__name__ == "TaskFailedError"
    assert "source audio missing" in str(info.value)


@pytest.mark.parametrize("status", [400, 401, 403, 410])
@pytest.mark.asyncio
async def test_a_wait_ending_in_an_error_names_the_accepted_task(
    server: HostileServer, sdk: VidgoClient, status: int
) -> None:
    """convert_to_wav's task was accepted (and paid for), then a status read failed for
    good: the error carries the task's handle, so the caller can wait on it again
    rather than meet a 409 on a re-run."""
    server.next_ids.append("conv-7")
    server.script(DETAIL, reply(status, {"code": status, "message": "no"}))
    with pytest.raises(VidgoError) as info:
        await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=3), 5)
    handle = info.value.handle
    assert handle is not None
    assert (handle.task_id, handle.source_task_id, handle.audio_id) == ("conv-7", PARENT, TRACK)


@pytest.mark.asyncio
async def test_closing_the_client_during_a_conversion_names_the_accepted_task(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """aclose() during convert_to_wav's wait: the ClientClosedError carries the handle."""
    server.next_ids.append("conv-8")
    server.task_defaults = {"finish_after": 60}
    conversion = asyncio.ensure_future(sdk.convert_to_wav(PARENT, TRACK, timeout=30))

    async def first_poll() -> None:
        while not server.hits(DETAIL):  # noqa: ASYNC110 - the server's log is no event
            await asyncio.sleep(0.01)

    await asyncio.wait_for(first_poll(), 5)
    await sdk.aclose()
    with pytest.raises(ClientClosedError) as info:
        await asyncio.wait_for(conversion, 5)
    assert info.value.handle is not None and info.value.handle.task_id == "conv-8"


@pytest.mark.asyncio
async def test_a_wait_ending_in_an_error_names_its_task(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """await_task(id) ended by a 403: the error carries the handle of the task waited on."""
    server.add_task("t9")
    server.script(DETAIL, reply(403, {"code": 403, "message": "no"}))
    with pytest.raises(VidgoError) as info:
        await asyncio.wait_for(sdk.await_task("t9", timeout=3), 5)
    assert info.value.handle is not None and info.value.handle.task_id == "t9"


@pytest.mark.parametrize("code", [0, 302, 999])
@pytest.mark.asyncio
async def test_a_read_answered_with_an_odd_envelope_code_is_retried(
    server: HostileServer, sdk: VidgoClient, code: int
) -> None:
    """A status read answered once with an envelope code neither 2xx, 4xx nor 5xx is no
    news (it ended the wait as a final APIError): the wait goes on and sees the finish."""
    server.add_task("t1")
    server.script(DETAIL, reply(200, {"code": code, "message": "odd"}))
    task = await asyncio.wait_for(sdk.wait("t1", timeout=3), 5)
    assert (task.task_id, task.status.value) == ("t1", "finished")


@pytest.mark.asyncio
async def test_a_finished_task_without_a_wav_url_ends_the_wait_after_a_few_reads(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """The files may lag behind the status, but not for the whole deadline (15 minutes
    by default): 10 s later the wait ends, its error showing what the files held and
    naming the task."""
    server.task_defaults = {"files": [{"mp3_url": f"{server.url}/files/{TRACK}.mp3"}]}
    started = time.monotonic()
    with pytest.raises(InvalidResponseError) as info:
        await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=60), 65)
    assert 10 <= time.monotonic() - started < 20
    assert "mp3_url" in str(info.value)
    assert info.value.handle is not None and info.value.handle.task_id == "wav-1"


@pytest.mark.asyncio
async def test_a_wait_on_a_task_this_client_submitted_takes_its_early_404s_for_no_news(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """``submit_wav`` then ``await_task`` (the README's two steps): the task reads 404
    for a moment, as one just created may; the wait goes on and gets the URL, as
    ``convert_to_wav`` does. Before, the first 404 ended it with NotFoundError, and a
    second submit met 409: the paid task was only in the caller's hands."""
    server.task_defaults["finish_after"] = 0.2
    task = await asyncio.wait_for(sdk.submit_wav("parent", "track"), 5)
    not_found = reply(404, {"code": 404, "message": "task not found"})
    server.script(DETAIL, not_found, not_found)
    url = await asyncio.wait_for(sdk.await_task(task.task_id, timeout=5), 8)
    assert url == f"{server.url}/files/{task.task_id}.wav"


@pytest.mark.asyncio
async def test_a_wait_on_a_task_another_client_submitted_ends_at_its_404(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """A 404 on a task this client knows nothing of is news: the wait ends at once."""
    with pytest.raises(NotFoundError):
        await asyncio.wait_for(sdk.await_task("nobody-made-this", timeout=30), 3)


@pytest.mark.asyncio
async def test_a_wait_on_a_handle_from_another_client_takes_its_early_404s_for_no_news(
    server: HostileServer, make_sdk: MakeSdk
) -> None:
    """A TaskHandle (from a ClientClosedError, a journal, another process's JSON) names a
    task some submit created, maybe moments ago: a new client's ``await_task`` takes
    its first 404s for no news and gets the URL. Before, the first 404 ended it with
    NotFoundError. (A bare id's 404 is still news: see the test above.)"""
    server.task_defaults["finish_after"] = 0.2
    task = await asyncio.wait_for(make_sdk().submit_wav("parent", "track"), 5)
    not_found = reply(404, {"code": 404, "message": "task not found"})
    server.script(DETAIL, not_found, not_found)
    sent = TaskHandle(task_id=task.task_id, source_task_id="parent", audio_id="track")
    handle = TaskHandle.from_json(sent.to_json())  # as another process reads it
    url = await asyncio.wait_for(make_sdk().await_task(handle, timeout=5), 8)
    assert url == f"{server.url}/files/{task.task_id}.wav"
