"""Tests of vidgo_async.webhooks: the receiver, parse_callback, and the callback-or-poll race.

Everything runs over real sockets: FakeVidgo delivers callbacks to a
CallbackReceiver, and forgeries are posted by a plain aiohttp client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from support import FAST_RETRY, FAST_TIMEOUTS, MakeFake

from vidgo_async import (
    ConfigurationError,
    PollPolicy,
    TaskFailedError,
    TaskStatus,
    TaskTimeoutError,
    VidgoClient,
    VidgoError,
)
from vidgo_async.testing import CallbackFaults, FakeVidgo
from vidgo_async.webhooks import (
    DEFAULT_PATH,
    MAX_BODY,
    CallbackReceiver,
    InvalidCallbackError,
    parse_callback,
)

pytestmark = pytest.mark.asyncio

# A safety net far longer than any task here: a wait that returns quickly was woken by a callback.
SLOW_NET = PollPolicy(initial=0.01, factor=1.5, max_interval=0.05, callback_interval=30.0)
QUICK_NET = PollPolicy(initial=0.01, factor=1.5, max_interval=0.05, callback_interval=0.3)
DATA = {"task_id": "task-1", "status": "finished", "files": [{"wav_url": "https://x/1.wav"}]}
MakeCallbackClient = Callable[..., VidgoClient]


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[CallbackReceiver]:
    """A receiver serving itself on 127.0.0.1 (its public URL is the local one)."""
    receiver = CallbackReceiver()
    async with receiver.serve():
        yield receiver


@pytest_asyncio.fixture
async def make_callback_client(
    fake: FakeVidgo, receiver: CallbackReceiver
) -> AsyncIterator[MakeCallbackClient]:
    """A factory of clients of ``fake`` wired to ``receiver``, all closed after."""
    clients: list[VidgoClient] = []

    def make(**kwargs: Any) -> VidgoClient:
        kwargs.setdefault("callbacks", receiver)
        kwargs.setdefault("poll", SLOW_NET)
        client = VidgoClient(
            fake.api_key,
            base_url=fake.url,
            retry=FAST_RETRY,
            timeouts=FAST_TIMEOUTS,
            max_polls_per_second=1000.0,
            **kwargs,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP session, for posting callbacks by hand."""
    async with aiohttp.ClientSession() as session:
        yield session


async def post(http: aiohttp.ClientSession, url: str, body: bytes | Any) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with http.post(url, data=data, headers={"Content-Type": "application/json"}) as answer:
        await answer.read()
        return answer.status


def callback_urls(fake: FakeVidgo) -> list[str]:
    return [str((request.json or {})["callback_url"]) for request in fake.requests_to("submit")]


async def settle() -> None:
    """Give in-flight wake-ups and polls time to happen (they take milliseconds)."""
    await asyncio.sleep(0.15)


# -- parse_callback -------------------------------------------------------------------------


@pytest.mark.parametrize("body", [{"code": 200, "data": DATA}, DATA], ids=["wrapped", "bare"])
async def test_parse_callback_accepts_wrapped_and_bare_bodies(body: Any) -> None:
    """The vendor's envelope and a sister platform's bare data give the same task."""
    task = parse_callback(json.dumps(body).encode(), {"Content-Type": "application/json"})
    assert (task.task_id, task.status) == ("task-1", TaskStatus.FINISHED)
    assert task.wav_url == "https://x/1.wav"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00garbage",
        b"[1, 2]",
        b'"finished"',
        b"{}",
        b'{"code": 500, "data": {"task_id": "t", "status": "finished"}}',
        b'{"code": 200, "data": {"status": "finished"}}',
        b'{"task_id": true, "status": "finished"}',
        b'{"task_id": 7.5, "status": "finished"}',
        b'{"task_id": "t", "status": null}',
        b'{"task_id": "", "status": "finished"}',
        b"[" * 50_000,
    ],
)
async def test_parse_callback_refuses_malformed_bodies(body: bytes) -> None:
    """Non-JSON and wrong shapes raise InvalidCallbackError with status 400."""
    with pytest.raises(InvalidCallbackError) as caught:
        parse_callback(body, {})
    assert caught.value.status == 400
    assert isinstance(caught.value, VidgoError)
    assert isinstance(caught.value, ValueError)


async def test_parse_callback_accepts_integer_task_ids() -> None:
    """Some platforms send integer ids: they are read as their decimal string."""
    task = parse_callback(b'{"code": 200, "data": {"task_id": 7, "status": "finished"}}', {})
    assert task.task_id == "7"


async def test_parse_callback_refuses_oversized_bodies_before_parsing() -> None:
    """Over 64 KiB, by length or by a declared Content-Length, is a 413."""
    with pytest.raises(InvalidCallbackError) as caught:
        parse_callback(b" " * (MAX_BODY + 1), {})
    assert caught.value.status == 413
    with pytest.raises(InvalidCallbackError) as caught:
        parse_callback(b"{}", {"content-length": str(MAX_BODY + 1)})
    assert caught.value.status == 413


@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
async def test_parse_callback_fails_only_with_its_own_error(body: bytes) -> None:
    """Whatever the bytes, the answer is a Task or InvalidCallbackError."""
    with contextlib.suppress(InvalidCallbackError):
        parse_callback(body, {})


# -- the receiver as an HTTP endpoint -------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://hooks.example.com", "ftp://127.0.0.1", "https://h.example/?q=1", "hooks"]
)
async def test_public_url_must_be_https_except_on_loopback(url: str) -> None:
    """The API calls only HTTPS URLs; plain http is for loopback testing."""
    with pytest.raises(ValueError):
        CallbackReceiver(url)


async def test_callback_urls_carry_a_fresh_token_under_the_public_url() -> None:
    """Each submit's URL is {public_url}{path}/{token}, with a token of its own."""
    receiver = CallbackReceiver("https://hooks.example.com/", path="/in/")
    assert receiver.route == "/in/{token}"
    assert receiver.public_url == "https://hooks.example.com"
    with pytest.raises(ValueError):
        CallbackReceiver("https://hooks.example.com", path="no-slash")


async def test_unserved_receiver_without_public_url_cannot_issue(
    make_client: Callable[..., VidgoClient],
) -> None:
    """With no public_url and not serving, a submit fails before any request."""
    client = make_client(callbacks=CallbackReceiver())
    with pytest.raises(ConfigurationError):
        await client.submit_wav("t", "a1")


async def test_client_refuses_something_else_as_callbacks(
    make_client: Callable[..., VidgoClient],
) -> None:
    """callbacks= takes a CallbackReceiver only."""
    with pytest.raises(TypeError):
        make_client(callbacks="https://hooks.example.com")


async def test_oversized_and_malformed_posts_are_refused(
    receiver: CallbackReceiver, http: aiohttp.ClientSession
) -> None:
    """413 for a body over 64 KiB (declared or streamed), 400 for garbage."""
    base = f"{receiver.public_url}{DEFAULT_PATH}/some.token"
    assert await post(http, base, b" " * (MAX_BODY + 1)) == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b" " * 1024

    async with http.post(base, data=chunks()) as answer:
        assert answer.status == 413
    assert await post(http, base, b"{not json") == 400
    assert await post(http, base, {"hello": "world"}) == 400


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_body_that_does_not_decompress_is_answered_400_quietly(
    encoding: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A body whose Content-Encoding it does not honour is a malformed callback: 400,
    nothing logged above DEBUG (it was a 500 and an ERROR traceback from aiohttp)."""
    caplog.set_level(logging.INFO)
    receiver = CallbackReceiver()
    async with receiver.serve() as url, aiohttp.ClientSession() as http:
        headers = {"Content-Encoding": encoding, "Content-Type": "application/json"}
        target = f"{url}{DEFAULT_PATH}/some.token"
        async with http.post(target, data=b"not compressed", headers=headers) as r:
            assert r.status == 400
    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []


async def test_a_callback_code_in_text_is_not_repeated() -> None:
    """A callback's error ``code`` given as text (which could echo the API key) is not
    repeated in the error or its log line; a numeric one is."""
    key = "sk-live-abcdefghijklmnopqrstuvwx"
    body = json.dumps({"code": key, "data": {"task_id": "t1", "status": "finished"}}).encode()
    with pytest.raises(InvalidCallbackError) as info:
        parse_callback(body)
    assert key[:8] not in str(info.value)
    body = json.dumps({"code": 500, "data": {"task_id": "t1", "status": "failed"}}).encode()
    with pytest.raises(InvalidCallbackError, match="500"):
        parse_callback(body)


async def test_a_body_sent_too_slowly_is_answered_408_and_frees_the_connection() -> None:
    """A sender that trickles its body holds no connection past ``body_timeout``: many of
    them at once are each answered 408 within it (they stayed open for good before)."""
    receiver = CallbackReceiver(body_timeout=0.3)
    async with receiver.serve() as url:
        host, port = url.split("//")[1].rsplit(":", 1)
        head = (
            f"POST {DEFAULT_PATH}/some.token HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        ).encode()

        async def trickle() -> bytes:
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                writer.write(head)
                await writer.drain()
                status = await asyncio.wait_for(reader.readline(), 3)
                # ... and the server closes the connection: it waits for no more of it.
                await asyncio.wait_for(reader.read(), 2)
                assert reader.at_eof()
                return status
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

        answers = await asyncio.gather(*(trickle() for _ in range(20)))
    assert {line.split()[1] for line in answers} == {b"408"}


@pytest.mark.parametrize(
    ("value", "error"),
    [(0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), ("10", TypeError)],
)
async def test_body_timeout_must_be_a_positive_number(value: Any, error: type[Exception]) -> None:
    """A body_timeout that is not a positive number (or None) is refused when the
    receiver is made."""
    with pytest.raises(error, match="body_timeout"):
        CallbackReceiver(body_timeout=value)


# -- the race -------------------------------------------------------------------------------


async def test_waits_return_on_callbacks_with_about_one_read_per_task(
    fake: FakeVidgo, receiver: CallbackReceiver, make_callback_client: MakeCallbackClient
) -> None:
    """convert_many with callbacks makes about one status read per task, not a dozen."""
    client = make_callback_client()
    pairs = [("t", f"a{index}") for index in range(30)]
    results = [result async for result in client.convert_many(pairs, concurrency=8)]
    assert all(result.ok for result in results)
    assert fake.request_count("detail") <= 30 * 1.2
    assert len(set(callback_urls(fake))) == 30
    assert receiver.pending == 0


@pytest.mark.parametrize("method", ["convert_to_wav", "wait", "await_task"])
async def test_each_wait_returns_on_a_callback(
    fake: FakeVidgo, make_callback_client: MakeCallbackClient, method: str
) -> None:
    """convert_to_wav, wait and await_task all return when the callback comes."""
    client = make_callback_client()
    if method == "convert_to_wav":
        coro = client.convert_to_wav("t", "a1")
    else:
        task = await client.submit_wav("t", "a1")
        coro = getattr(client, method)(task.task_id)
    # The safety net is 30 s away: returning within seconds means a callback woke the wait.
    await asyncio.wait_for(coro, 10)
    assert fake.request_count("detail") == 1


async def test_a_second_wait_that_ends_early_leaves_the_callback_to_the_first(
    fake: FakeVidgo, make_callback_client: MakeCallbackClient
) -> None:
    """Two waits on one task: the one that times out early does not take the callback
    away from the other, which still returns on it (it slept to the safety net, 30 s)."""
    fake.set_duration("a1", queue_time=0.0, run_time=0.5)
    client = make_callback_client()
    task = await client.submit_wav("t", "a1")
    first = asyncio.create_task(client.await_task(task.task_id))
    with pytest.raises(TaskTimeoutError):
        await client.wait(task.task_id, timeout=0.1)
    assert await asyncio.wait_for(first, 10)


async def test_a_watch_never_iterated_keeps_no_token(
    fake: FakeVidgo, receiver: CallbackReceiver, make_callback_client: MakeCallbackClient
) -> None:
    """A ``watch`` made and never iterated holds nothing: once the wait that ran ends
    (here by its deadline), no callback token is left pending (one stayed until its
    time to live)."""
    fake.set_duration("a1", queue_time=0.0, run_time=60.0)
    client = make_callback_client()
    task = await client.submit_wav("t", "a1")
    watched = client.watch(task.task_id)  # never iterated
    with pytest.raises(TaskTimeoutError):
        await client.wait(task.task_id, timeout=0.2)
    assert receiver.pending == 0
    del watched


async def test_bare_callbacks_work_too(
    fake: FakeVidgo, make_callback_client: MakeCallbackClient
) -> None:
    """A sister platform's bare data body wakes the wait as well."""
    fake.callbacks.body = "bare"
    await asyncio.wait_for(make_callback_client().convert_to_wav("t", "a1"), 10)
    assert fake.request_count("detail") == 1


async def test_failed_task_raises_after_confirmation(
    fake: FakeVidgo, make_callback_client: MakeCallbackClient
) -> None:
    """A failure callback is confirmed by a read, then raised as TaskFailedError."""
    fake.fail("a1", "bad audio")
    with pytest.raises(TaskFailedError, match="bad audio"):
        await asyncio.wait_for(make_callback_client().convert_to_wav("t", "a1"), 10)
    assert fake.request_count("detail") == 1


async def test_callback_before_submit_answer_is_not_lost(
    fake: FakeVidgo, make_callback_client: MakeCallbackClient
) -> None:
    """A task done at acceptance calls back before the submit answer; the wait still uses it."""
    fake.set_duration("a1", queue_time=0.0, run_time=0.0)
    await asyncio.wait_for(make_callback_client().convert_to_wav("t", "a1"), 10)
    [attempt] = fake.callbacks.attempts
    assert attempt.status == 200
    assert fake.request_count("detail") == 1


async def test_all_callbacks_dropped_polling_still_wins(
    fake: FakeVidgo, receiver: CallbackReceiver, make_callback_client: MakeCallbackClient
) -> None:
    """With every callback lost, the safety net finds every task, and polling takes over."""
    fake.callbacks.faults = CallbackFaults(drop=1.0)
    client = make_callback_client(poll=QUICK_NET)
    pairs = [("t", f"a{index}") for index in range(20)]
    results = [result async for result in client.convert_many(pairs)]
    assert all(result.ok for result in results)
    assert not receiver.reliable
    assert receiver.pending == 0


async def test_short_deadline_still_polls_before_it(
    fake: FakeVidgo, make_callback_client: MakeCallbackClient
) -> None:
    """A deadline shorter than the safety net still gets a poll in before it passes."""
    fake.callbacks.faults = CallbackFaults(drop=1.0)
    url = await make_callback_client().convert_to_wav("t", "a1", timeout=1.0)
    assert url.endswith(".wav")


async def test_duplicate_callbacks_cost_nothing(
    fake: FakeVidgo, make_callback_client: MakeCallbackClient
) -> None:
    """Every callback delivered twice still means one read per task."""
    fake.callbacks.faults = CallbackFaults(duplicate=1.0)
    client = make_callback_client()
    await asyncio.gather(*(client.convert_to_wav("t", f"a{i}") for i in range(5)))
    await settle()
    assert sum(a.duplicate and a.status == 200 for a in fake.callbacks.attempts) == 5
    assert fake.request_count("detail") == 5


async def test_replayed_callback_after_resolution_has_no_effect(
    fake: FakeVidgo,
    receiver: CallbackReceiver,
    make_callback_client: MakeCallbackClient,
    http: aiohttp.ClientSession,
) -> None:
    """Replaying a delivered callback answers 200 and reads nothing."""
    client = make_callback_client()
    task = await client.submit_wav("t", "a1")
    await client.wait(task.task_id)
    [url] = callback_urls(fake)
    replay = {"code": 200, "data": {"task_id": task.task_id, "status": "finished"}}
    assert await post(http, url, replay) == 200
    await settle()
    assert fake.request_count("detail") == 1
    assert receiver.pending == 0


async def running_waits(
    fake: FakeVidgo, client: VidgoClient, count: int
) -> tuple[list[str], list[asyncio.Task[Any]]]:
    """``count`` long tasks being waited on; their ids and the waits."""
    ids = []
    for index in range(count):
        fake.set_duration(f"a{index}", run_time=60.0)
        ids.append((await client.submit_wav("t", f"a{index}")).task_id)
    waits = [asyncio.create_task(client.wait(task_id)) for task_id in ids]
    await settle()
    return ids, waits


async def cancel(waits: list[asyncio.Task[Any]]) -> None:
    for wait in waits:
        wait.cancel()
    await asyncio.gather(*waits, return_exceptions=True)


async def test_forged_tokens_wake_nothing(
    fake: FakeVidgo, make_callback_client: MakeCallbackClient, http: aiohttp.ClientSession
) -> None:
    """A wrong secret, an unknown key or no token answers 200 and reads nothing."""
    client = make_callback_client()
    [task_id], waits = await running_waits(fake, client, 1)
    reads = fake.request_count("detail")
    [url] = callback_urls(fake)
    base, _, token = url.rpartition("/")
    key, _, secret = token.partition(".")
    lie = {"code": 200, "data": {"task_id": task_id, "status": "finished"}}
    for forged in (f"{key}.{secret[::-1]}", f"{key}.", f"0000000000000000.{secret}", "x"):
        assert await post(http, f"{base}/{forged}", lie) == 200
    await settle()
    assert fake.request_count("detail") == reads
    assert not waits[0].done()
    await cancel(waits)


async def test_callback_naming_another_waiters_task_is_ignored(
    fake: FakeVidgo, make_callback_client: MakeCallbackClient, http: aiohttp.ClientSession
) -> None:
    """Task B's id posted to task A's URL wakes neither wait."""
    client = make_callback_client()
    (_, task_b), waits = await running_waits(fake, client, 2)
    reads = fake.request_count("detail")
    url_a = callback_urls(fake)[0]
    assert await post(http, url_a, {"task_id": task_b, "status": "finished"}) == 200
    await settle()
    assert fake.request_count("detail") == reads
    assert not any(wait.done() for wait in waits)
    await cancel(waits)


async def test_lying_callback_with_a_real_token_costs_one_read_at_once(
    fake: FakeVidgo, make_callback_client: MakeCallbackClient, http: aiohttp.ClientSession
) -> None:
    """A callback is a hint: one confirming read, which says running, and the wait goes on
    (polling as without callbacks: its next read after ``initial``, 1 s)."""
    client = make_callback_client(poll=PollPolicy(callback_interval=30))
    [task_id], waits = await running_waits(fake, client, 1)
    reads = fake.request_count("detail")
    [url] = callback_urls(fake)
    lie = {"code": 200, "data": {"task_id": task_id, "status": "finished"}}
    assert await post(http, url, lie) == 200
    await settle()
    assert fake.request_count("detail") == reads + 1
    assert not waits[0].done()
    await cancel(waits)


async def test_a_lying_callback_costs_at_most_one_callback_interval_of_polls(
    fake: FakeVidgo, make_callback_client: MakeCallbackClient, http: aiohttp.ClientSession
) -> None:
    """After a refuted callback the wait polls as without callbacks (every 0.05 s here)
    for one callback_interval (0.5 s), then only at the safety net: a forged callback
    costs a bounded number of reads, not polling for the rest of the wait."""
    every = PollPolicy(initial=0.05, factor=1.0, max_interval=0.05, callback_interval=0.5)
    client = make_callback_client(poll=every)
    [task_id], waits = await running_waits(fake, client, 1)
    [url] = callback_urls(fake)
    reads = fake.request_count("detail")
    lie = {"code": 200, "data": {"task_id": task_id, "status": "finished"}}
    assert await post(http, url, lie) == 200
    await asyncio.sleep(2.0)
    # About 10 reads in the blind half second, then one per 0.5 s net: far from 40.
    assert 3 <= fake.request_count("detail") - reads <= 20
    assert not waits[0].done()
    await cancel(waits)


async def test_malformed_callback_with_a_real_token_wakes_nothing(
    fake: FakeVidgo, make_callback_client: MakeCallbackClient, http: aiohttp.ClientSession
) -> None:
    """A 400 resolves nothing and reads nothing."""
    client = make_callback_client()
    _, waits = await running_waits(fake, client, 1)
    reads = fake.request_count("detail")
    [url] = callback_urls(fake)
    assert await post(http, url, b'{"code": 200, "data": "finished"}') == 400
    await settle()
    assert fake.request_count("detail") == reads
    await cancel(waits)


async def test_explicit_callback_url_is_kept(
    fake: FakeVidgo, receiver: CallbackReceiver, make_callback_client: MakeCallbackClient
) -> None:
    """A caller's own callback_url is sent as given, and no token is issued."""
    client = make_callback_client()
    await client.submit_wav("t", "a1", callback_url="https://mine.example.com/cb")
    assert callback_urls(fake) == ["https://mine.example.com/cb"]
    assert receiver.pending == 0


async def test_receiver_mounted_in_a_user_app(
    make_fake: MakeFake, http: aiohttp.ClientSession
) -> None:
    """Mounted next to the app's own routes, the receiver works and the routes still answer."""
    fake = await make_fake()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        await _serve_user_app(fake, sock, http)


async def _serve_user_app(
    fake: FakeVidgo, sock: socket.socket, http: aiohttp.ClientSession
) -> None:
    port = sock.getsockname()[1]
    receiver = CallbackReceiver(f"http://127.0.0.1:{port}", path="/hooks/vidgo")
    app = web.Application()
    app.router.add_get("/health", _health)
    app.router.add_post("/hooks/other", _other)
    receiver.add_routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        async with VidgoClient(
            fake.api_key, base_url=fake.url, poll=SLOW_NET, callbacks=receiver
        ) as client:
            await asyncio.wait_for(client.convert_to_wav("t", "a1"), 10)
        async with http.get(f"http://127.0.0.1:{port}/health") as answer:
            assert await answer.text() == "ok"
        async with http.post(f"http://127.0.0.1:{port}/hooks/other") as answer:
            assert await answer.text() == "other"
    finally:
        await runner.cleanup()
    assert fake.request_count("detail") == 1
    assert callback_urls(fake)[0].startswith(f"http://127.0.0.1:{port}/hooks/vidgo/")


async def _health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _other(request: web.Request) -> web.Response:
    return web.Response(text="other")


async def test_feed_serves_other_frameworks(
    fake: FakeVidgo, receiver: CallbackReceiver, make_callback_client: MakeCallbackClient
) -> None:
    """feed(), given a token or a whole path, wakes the wait like the aiohttp handler."""
    client = make_callback_client(poll=PollPolicy(callback_interval=30))
    [task_id], waits = await running_waits(fake, client, 1)
    reads = fake.request_count("detail")
    [url] = callback_urls(fake)
    path = "/" + url.split("/", 3)[3]
    lie = json.dumps({"task_id": task_id, "status": "finished"}).encode()
    assert receiver.feed(path, b"junk", {"Content-Type": "application/json"}) == 400
    assert receiver.feed(path, lie, {"Content-Length": str(MAX_BODY + 1)}) == 413
    assert receiver.feed(path, lie, {}) == 200
    await settle()
    assert fake.request_count("detail") == reads + 1
    await cancel(waits)


async def test_lost_callbacks_are_reported_once_as_a_warning(
    fake: FakeVidgo,
    make_callback_client: MakeCallbackClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """When callbacks stop arriving, one WARNING says so and names the likely causes."""
    fake.callbacks.faults = CallbackFaults(drop=1.0)
    client = make_callback_client(poll=QUICK_NET)
    pairs = [("t", f"a{index}") for index in range(20)]
    with caplog.at_level(logging.WARNING, logger="vidgo_async"):
        results = [result async for result in client.convert_many(pairs)]
    assert all(result.ok for result in results)
    lost = [
        r.getMessage() for r in caplog.records if "callbacks are not arriving" in r.getMessage()
    ]
    assert len(lost) == 1
    assert "public_url" in lost[0]


async def test_after_many_callbacks_a_run_of_lost_ones_goes_back_to_polling_quickly(
    fake: FakeVidgo, make_callback_client: MakeCallbackClient
) -> None:
    """20 conversions whose callbacks came, then callbacks stop (a proxy went down): at
    most the first 3 conversions after that wait out a safety-net interval; the next
    ones poll as usual (11 paid it: misses had to outnumber 20 hits)."""
    client = make_callback_client(poll=QUICK_NET)  # a safety net of 0.3 s
    for index in range(20):
        await asyncio.wait_for(client.convert_to_wav("t", f"ok{index}"), 10)
    fake.callbacks.faults = CallbackFaults(drop=1.0)
    slow = 0
    for index in range(8):
        started = time.monotonic()
        await asyncio.wait_for(client.convert_to_wav("t", f"lost{index}"), 10)
        slow += time.monotonic() - started >= 0.25
    assert slow <= 3


async def test_the_fake_plays_the_proxy_in_front_of_a_public_receiver(
    make_fake: MakeFake,
) -> None:
    """A receiver whose public URL is a public name gets its callbacks through the fake's
    ``callback_proxy``: the wait returns on the callback after one status read."""
    receiver = CallbackReceiver("https://hooks.example.com")
    async with receiver.serve() as local:
        fake = await make_fake(callback_proxy=local)
        async with VidgoClient(
            fake.api_key, base_url=fake.url, callbacks=receiver, poll=SLOW_NET, retry=FAST_RETRY
        ) as client:
            url = await asyncio.wait_for(client.convert_to_wav("t", "a1"), 10)
    assert url.endswith(".wav")
    assert fake.request_count("detail") == 1
    assert fake.callbacks.attempts[0].outcome == "answered"
