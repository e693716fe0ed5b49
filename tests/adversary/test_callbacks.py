"""Callbacks: hostile bodies, forged hints, token release, a lingering receiver (issue 12)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from vidgo_async import (
    BadRequestError,
    PollPolicy,
    RetryPolicy,
    Task,
    TaskTimeoutError,
    VidgoClient,
)
from vidgo_async.webhooks import CallbackReceiver, InvalidCallbackError, parse_callback

from .conftest import MakeSdk
from .server import DETAIL, SUBMIT, Conn, HostileServer, Request, default, gate, reply

PARENT, TRACK = "parent-1", "track-1"
NEVER = 1e9
HUGE = "9" * 400
# Callbacks stretch polling to callback_interval: a missed hint costs seconds.
PATIENT = PollPolicy(initial=0.01, factor=1.5, max_interval=0.05, callback_interval=5)


def body(task_id: str = "wav-1", status: str = "finished", **extra: Any) -> bytes:
    data = {"task_id": task_id, "status": status, "files": [], **extra}
    return json.dumps({"code": 200, "data": data}).encode()


def token_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    yield CallbackReceiver("http://127.0.0.1:9")


async def submitted(server: HostileServer, sdk: VidgoClient, timeout: float = 20) -> Any:
    """A convert_to_wav of a never-finishing task, running; its callback token is known."""
    server.task_defaults = {"finish_after": NEVER}
    wait = asyncio.create_task(sdk.convert_to_wav(PARENT, TRACK, timeout=timeout))
    for _ in range(300):
        if server.callback_urls:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the submit's answer is bound to its token
    return wait


@contextlib.asynccontextmanager
async def waiting(server: HostileServer, sdk: VidgoClient) -> AsyncIterator[Any]:
    """:func:`submitted`, cancelled (and awaited) when the block ends."""
    wait = await submitted(server, sdk)
    try:
        yield wait
    finally:
        wait.cancel()
        await asyncio.gather(wait, return_exceptions=True)


# -- 9. huge integers in callbacks ----------------------------------------------------

HUGE_BODIES = [
    pytest.param(
        b'{"task_id": "t", "status": "running", "progress": %s}' % HUGE.encode(), id="bare"
    ),
    pytest.param(
        b'{"code": 200, "data": {"task_id": "t", "status": "finished", "progress": -%s}}'
        % HUGE.encode(),
        id="enveloped",
    ),
]


@pytest.mark.parametrize("raw", HUGE_BODIES)
def test_parse_callback_huge_progress(raw: bytes) -> None:
    """parse_callback with a ~400-digit progress gives a Task or InvalidCallbackError."""
    with contextlib.suppress(InvalidCallbackError):
        assert isinstance(parse_callback(raw), Task)


@pytest.mark.parametrize("raw", HUGE_BODIES)
def test_feed_huge_progress_answers_400(receiver: CallbackReceiver, raw: bytes) -> None:
    """CallbackReceiver.feed answers 400 to a ~400-digit progress, never raises."""
    assert receiver.feed("abc.def", raw) == 400


# -- 15. lone surrogates in callbacks ---------------------------------------------------

SURROGATE_BODIES = [
    pytest.param(b'{"task_id": "t\\ud800", "status": "finished"}', id="in-id"),
    pytest.param(
        b'{"task_id": "t", "status": "failed", "error_message": "\\udfff"}',
        id="message",
    ),
    pytest.param(
        b'{"code": 200, "data": {"task_id": "t", "status": "fin\\ud800"}}',
        id="status",
    ),
    pytest.param(b'{"\\ud800": 1, "task_id": "t", "status": "finished"}', id="key"),
]


@pytest.mark.parametrize("raw", SURROGATE_BODIES)
def test_feed_lone_surrogate_answers_400(receiver: CallbackReceiver, raw: bytes) -> None:
    """feed() answers 400 to a body with a lone surrogate escape, whatever the token."""
    assert receiver.feed("abc.def", raw) == 400


@pytest.mark.asyncio
async def test_feed_lone_surrogate_with_a_live_token(
    server: HostileServer, make_sdk: MakeSdk, receiver: CallbackReceiver
) -> None:
    """feed() with the live token of a wait answers 400 to a surrogate id, never raises."""
    sdk = make_sdk(callbacks=receiver, poll=PATIENT)
    async with waiting(server, sdk):
        token = token_of(server.callback_urls[0])
        assert receiver.feed(token, b'{"task_id": "wav-\\ud800", "status": "finished"}') == 400


@pytest.mark.parametrize("raw", SURROGATE_BODIES)
@pytest.mark.asyncio
async def test_handler_lone_surrogate_answers_400(raw: bytes) -> None:
    """The receiver's aiohttp handler answers 400, never 500, to a lone surrogate."""
    receiver = CallbackReceiver()
    async with receiver.serve() as local, aiohttp.ClientSession() as session:
        url = f"{local}/vidgo/callbacks/abc.def"
        headers = {"Content-Type": "application/json"}
        async with session.post(url, data=raw, headers=headers) as response:
            assert response.status == 400


@pytest.mark.asyncio
async def test_handler_lone_surrogate_with_a_live_token(
    server: HostileServer, make_sdk: MakeSdk
) -> None:
    """The handler answers 400, never 500, to a surrogate id posted with a wait's live token."""
    receiver = CallbackReceiver()
    async with receiver.serve(), aiohttp.ClientSession() as session:
        sdk = make_sdk(callbacks=receiver, poll=PATIENT)
        async with waiting(server, sdk):
            raw = b'{"task_id": "wav-\\ud800", "status": "finished"}'
            async with session.post(server.callback_urls[0], data=raw) as response:
                assert response.status == 400


# -- 16. a forged hint during the confirming read --------------------------------------


@pytest.mark.asyncio
async def test_real_callback_during_a_confirming_read_is_kept(
    server: HostileServer, make_sdk: MakeSdk, receiver: CallbackReceiver
) -> None:
    """A forged hint's read in flight when the real callback comes: the wait returns promptly."""
    sdk = make_sdk(callbacks=receiver, poll=PATIENT)
    async with waiting(server, sdk) as wait:
        token = token_of(server.callback_urls[0])
        release, arrived = asyncio.Event(), asyncio.Event()
        server.script(DETAIL, gate(release, arrived))
        assert receiver.feed(token, body()) == 200  # forged: the task still runs
        await asyncio.wait_for(arrived.wait(), 2)  # its confirming read is in flight
        server.tasks["wav-1"].finish_after = 0  # now it really finishes ...
        assert receiver.feed(token, body()) == 200  # ... and the real callback comes
        release.set()  # the read answers "running", as of when it was made
        url = await asyncio.wait_for(wait, 1.5)
        assert url == f"{server.url}/files/wav-1.wav"


@pytest.mark.asyncio
async def test_a_callback_wakes_the_wait(
    server: HostileServer, make_sdk: MakeSdk, receiver: CallbackReceiver
) -> None:
    """A real callback ends a wait long before the safety-net poll (one confirming read)."""
    sdk = make_sdk(callbacks=receiver, poll=PATIENT)
    async with waiting(server, sdk) as wait:
        server.tasks["wav-1"].finish_after = 0
        assert receiver.feed(token_of(server.callback_urls[0]), body()) == 200
        assert await asyncio.wait_for(wait, 1.5) == f"{server.url}/files/wav-1.wav"


@pytest.mark.asyncio
async def test_a_callback_ahead_of_the_apis_read_is_read_again_soon(
    server: HostileServer, make_sdk: MakeSdk, receiver: CallbackReceiver
) -> None:
    """The callback comes half a second before the API's read shows the task finished:
    the confirming read refutes it, and the wait polls on as without callbacks instead
    of sleeping until the safety net (5 s here; 60 s by default)."""
    sdk = make_sdk(callbacks=receiver, poll=PATIENT)
    async with waiting(server, sdk) as wait:
        task = server.tasks["wav-1"]
        task.finish_after = time.monotonic() - task.created + 0.5  # finished, to be shown
        assert receiver.feed(token_of(server.callback_urls[0]), body()) == 200
        assert await asyncio.wait_for(wait, 2.5) == f"{server.url}/files/wav-1.wav"


@pytest.mark.asyncio
async def test_a_callback_far_ahead_of_the_apis_read_is_found_by_the_wait_s_own_polls(
    server: HostileServer, make_sdk: MakeSdk, receiver: CallbackReceiver
) -> None:
    """The API's read shows the task finished 1.6 s after its callback (by how much it
    may lag, nobody says): the wait polls on as without callbacks (every 0.05 s here),
    and returns within moments of it; fixed reads again after 1, 2, 4 and 8 s found it
    at 3 s, and a lag past 15 s cost the safety net."""
    sdk = make_sdk(callbacks=receiver, poll=PATIENT)
    async with waiting(server, sdk) as wait:
        task = server.tasks["wav-1"]
        task.finish_after = time.monotonic() - task.created + 1.6
        assert receiver.feed(token_of(server.callback_urls[0]), body()) == 200
        started = time.monotonic()
        assert await asyncio.wait_for(wait, 5) == f"{server.url}/files/wav-1.wav"
        assert time.monotonic() - started < 2.6


@pytest.mark.asyncio
async def test_a_retry_after_met_while_polling_after_a_refuted_callback_is_honoured(
    server: HostileServer, make_sdk: MakeSdk, receiver: CallbackReceiver
) -> None:
    """After a refuted callback the wait polls quickly (every 0.05 s here); a 503 asking
    for 1 s meanwhile is waited out, as at any other time of the wait."""
    sdk = make_sdk(callbacks=receiver, poll=PATIENT, retry=RetryPolicy(max_retry_after=5))
    async with waiting(server, sdk):
        assert receiver.feed(token_of(server.callback_urls[0]), body()) == 200  # a lie
        await asyncio.sleep(0.2)  # refuted, and polled again a few times
        server.script(DETAIL, reply(503, {"code": 503}, [("Retry-After", "1")]))
        before = len(server.hits(DETAIL))
        await asyncio.sleep(0.5)
        assert len(server.hits(DETAIL)) == before + 1  # the 503, then nothing for 1 s


@pytest.mark.asyncio
async def test_a_callback_whose_confirming_read_fails_is_confirmed_by_the_retry(
    server: HostileServer, make_sdk: MakeSdk, receiver: CallbackReceiver
) -> None:
    """A proxy's 502 answers the read that confirms a real callback: the read is retried
    on the wait's own pauses, not after the safety net (5 s here; 60 s by default)."""
    sdk = make_sdk(callbacks=receiver, poll=PATIENT)
    async with waiting(server, sdk) as wait:
        server.tasks["wav-1"].finish_after = 0
        server.script(DETAIL, reply(502, b"<html>502 Bad Gateway</html>"))
        assert receiver.feed(token_of(server.callback_urls[0]), body()) == 200
        assert await asyncio.wait_for(wait, 2.5) == f"{server.url}/files/wav-1.wav"
        assert len(server.hits(DETAIL)) == 2


@pytest.mark.asyncio
async def test_the_real_early_callback_counts_after_a_crowd_of_forged_ones(
    server: HostileServer, make_sdk: MakeSdk, receiver: CallbackReceiver
) -> None:
    """Forged callbacks that beat the submit answer cannot hide the real one that follows
    them: the wait still returns at once, after one confirming read."""

    async def calls_back_first(server: HostileServer, request: Request, conn: Conn) -> None:
        token = token_of(request.json()["callback_url"])
        for forged in ["wav-x1", "wav-x2", "wav-x3", "wav-x4", "wav-x5"]:
            assert receiver.feed(token, body(forged)) == 200
        assert receiver.feed(token, body("wav-1")) == 200  # the task is done at acceptance
        await default(server, request, conn)

    server.script(SUBMIT, calls_back_first)
    sdk = make_sdk(callbacks=receiver, poll=PATIENT)
    url = await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK), 1.5)
    assert url == f"{server.url}/files/wav-1.wav"
    assert len(server.hits(DETAIL)) == 1


# -- 17. tokens released; a receiver that does not linger ----------------------------------


@pytest.mark.asyncio
async def test_cancelled_wait_releases_its_token(
    server: HostileServer, make_sdk: MakeSdk, receiver: CallbackReceiver
) -> None:
    """Cancelling a convert_to_wav releases its callback token (pending drops back to 0)."""
    sdk = make_sdk(callbacks=receiver, poll=PATIENT)
    wait = await submitted(server, sdk)
    assert receiver.pending == 1
    wait.cancel()
    await asyncio.gather(wait, return_exceptions=True)
    assert receiver.pending == 0


@pytest.mark.asyncio
async def test_timed_out_wait_releases_its_token(
    server: HostileServer, make_sdk: MakeSdk, receiver: CallbackReceiver
) -> None:
    """A convert_to_wav that times out releases its callback token."""
    sdk = make_sdk(callbacks=receiver, poll=PATIENT)
    server.task_defaults = {"finish_after": NEVER}
    with pytest.raises(TaskTimeoutError):
        await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=0.3), 3)
    assert receiver.pending == 0


@pytest.mark.parametrize("ending", ["refused", "finished"])
@pytest.mark.asyncio
async def test_settled_waits_release_their_tokens(
    server: HostileServer, make_sdk: MakeSdk, receiver: CallbackReceiver, ending: str
) -> None:
    """A refused submit and a finished wait leave no pending token."""
    sdk = make_sdk(callbacks=receiver, poll=PollPolicy(initial=0.01, callback_interval=0.05))
    if ending == "refused":
        server.script(SUBMIT, reply(400, {"code": 400, "message": "bad input"}))
    call = asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=2), 5)
    if ending == "refused":
        with pytest.raises(BadRequestError):
            await call
    else:
        assert await call == f"{server.url}/files/wav-1.wav"
    assert receiver.pending == 0


async def stalled_client(port: int, declared: int) -> asyncio.StreamWriter:
    """A client that sends a callback's head declaring ``declared`` bytes, a little, then stalls."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /vidgo/callbacks/abc.def HTTP/1.1\r\nHost: hooks\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    )
    writer.write(head.encode() + b'{"task_id": ')
    await writer.drain()
    return writer


@pytest.mark.parametrize(
    ("declared", "hang_up"),
    [(10**12, True), (10**12, False), (60_000, False)],
    ids=["huge-hung-up", "huge-silent", "under-cap-silent"],
)
@pytest.mark.asyncio
async def test_serve_does_not_linger_after_a_declared_body(declared: int, hang_up: bool) -> None:
    """Leaving serve() is prompt after a client declared a body and hung up or went quiet."""
    receiver = CallbackReceiver()
    leaving = asyncio.Event()
    writer: asyncio.StreamWriter | None = None

    async def serve() -> None:
        nonlocal writer
        async with receiver.serve() as local:
            writer = await stalled_client(int(local.rsplit(":", 1)[1]), declared)
            await asyncio.sleep(0.2)  # the receiver answers 413, or waits for the body
            leaving.set()
            if hang_up:
                writer.close()

    served = asyncio.create_task(serve())
    try:
        await asyncio.wait_for(leaving.wait(), 3)
        done, _ = await asyncio.wait([served], timeout=1.0)
        assert served in done, "serve() still closing after 1 s"
    finally:
        served.cancel()  # bounds the test; the receiver's cleanup is cancelled cleanly
        await asyncio.gather(served, return_exceptions=True)
        if writer is not None:
            writer.close()


@pytest.mark.asyncio
async def test_client_hanging_up_mid_body_logs_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A callback client that hangs up mid-body costs no ERROR traceback in the log."""
    caplog.set_level(logging.DEBUG)
    receiver = CallbackReceiver()
    async with receiver.serve() as local:
        writer = await stalled_client(int(local.rsplit(":", 1)[1]), 60_000)
        await asyncio.sleep(0.1)
        writer.close()
        await asyncio.sleep(0.2)
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []


# -- own: other hostile callback bodies ------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deep"),
        pytest.param(b'{"task_id": "t", "status": "finished"' + b" " * 70_000 + b"}", id="big"),
        pytest.param(b'{"task_id": "t", "status": "finished", "progress": NaN}', id="nan"),
        pytest.param(b"\xef\xbb\xbf" + body(), id="bom"),
        pytest.param(body().decode().encode("utf-16"), id="utf16"),
        pytest.param(b'{"task_id": ["t"], "status": "finished"}', id="list-id"),
        pytest.param(b'{"task_id": true, "status": "finished"}', id="bool-id"),
        pytest.param(b'{"code": "500", "data": {"task_id": "t", "status": "finished"}}', id="code"),
        pytest.param(b'{"task_id": "t", "status": "finished", "files": {"a": 1}}', id="files"),
        pytest.param(b"\xff\xfe\xfd", id="binary"),
        pytest.param(b"", id="empty"),
        pytest.param(b"null", id="null"),
    ],
)
def test_feed_odd_bodies_answers_a_status(receiver: CallbackReceiver, raw: bytes) -> None:
    """feed() answers 200, 400 or 413 to odd bodies, never raises."""
    assert receiver.feed("abc.def", raw) in (200, 400, 413)
    assert receiver.feed("abc.def", raw, {"Content-Length": "99999999999999999999"}) in (400, 413)
    assert receiver.feed("abc.def", raw, {"content-length": "-1"}) in (400, 413)
