"""Tests of FakeVidgo's callback delivery, received by a plain aiohttp app over a real socket."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from vidgo_async.testing import CallbackFaults, FakeVidgo

pytestmark = pytest.mark.asyncio

AUTH = {"Authorization": "Bearer test-key"}
MakeFake = Callable[..., Awaitable[FakeVidgo]]


class Sink:
    """A receiver that records every callback and answers from a script (then 200)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], Any]] = []
        self.statuses: list[int] = []
        self.url = ""
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((request.raw_path, dict(request.headers), await request.json()))
        self.arrived.set()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def wait_for(self, count: int) -> None:
        while len(self.received) < count:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 5)


@pytest_asyncio.fixture
async def sink() -> AsyncIterator[Sink]:
    """A recording callback receiver on 127.0.0.1."""
    sink = Sink()
    app = web.Application()
    app.router.add_post("/cb/{name}", sink.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    sink.url = f"http://{host}:{port}/cb"
    yield sink
    await runner.cleanup()


@pytest_asyncio.fixture
async def make_fake() -> AsyncIterator[MakeFake]:
    """Factory of started fakes (fast callback retries); closes every fake it made."""
    fakes: list[FakeVidgo] = []

    async def make(**kwargs: Any) -> FakeVidgo:
        kwargs.setdefault("callback_retry_scale", 0.001)
        fake = FakeVidgo(**kwargs)
        await fake.start()
        fakes.append(fake)
        return fake

    yield make
    for fake in fakes:
        await fake.close()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client session."""
    async with aiohttp.ClientSession() as session:
        yield session


async def submit(
    http: aiohttp.ClientSession, fake: FakeVidgo, audio_id: str, callback_url: str | None
) -> str:
    body: dict[str, Any] = {
        "model": "convert-to-wav",
        "input": {"task_id": "t", "audio_id": audio_id},
    }
    if callback_url is not None:
        body["callback_url"] = callback_url
    async with http.post(f"{fake.url}/api/generate/submit", json=body, headers=AUTH) as response:
        assert response.status == 200
        task_id: str = (await response.json())["data"]["task_id"]
    return task_id


async def detail(http: aiohttp.ClientSession, fake: FakeVidgo, task_id: str) -> Any:
    url = f"{fake.url}/api/generate/detail/music"
    async with http.get(url, params={"task_id": task_id}, headers=AUTH) as response:
        return await response.json()


async def test_callback_carries_the_detail_answer(
    make_fake: MakeFake, sink: Sink, http: aiohttp.ClientSession
) -> None:
    """A finished task's callback is the JSON detail answer, wrapped in code 200."""
    fake = await make_fake()
    task_id = await submit(http, fake, "a1", f"{sink.url}/x")
    await sink.wait_for(1)
    path, headers, body = sink.received[0]
    assert path == "/cb/x"
    assert headers["Content-Type"] == "application/json"
    assert body == await detail(http, fake, task_id)
    assert body["data"]["status"] == "finished"
    assert fake.callbacks.attempts[0].outcome == "answered"


async def test_bare_body_is_the_data_object(
    make_fake: MakeFake, sink: Sink, http: aiohttp.ClientSession
) -> None:
    """With callback_body="bare" the callback is the data object alone."""
    fake = await make_fake(callback_body="bare")
    task_id = await submit(http, fake, "a1", f"{sink.url}/x")
    await sink.wait_for(1)
    assert sink.received[0][2] == (await detail(http, fake, task_id))["data"]


async def test_failed_task_calls_back_too(
    make_fake: MakeFake, sink: Sink, http: aiohttp.ClientSession
) -> None:
    """A failed task's callback says failed, with the error message."""
    fake = await make_fake()
    fake.fail("a1", "boom")
    await submit(http, fake, "a1", f"{sink.url}/x")
    await sink.wait_for(1)
    data = sink.received[0][2]["data"]
    assert (data["status"], data["error_message"]) == ("failed", "boom")


@pytest.mark.parametrize(
    ("statuses", "attempts"),
    [([500, 503], 3), ([500, 500, 500, 500], 4), ([404, 200], 2)],
)
async def test_non_2xx_answers_are_retried_three_times(
    make_fake: MakeFake,
    sink: Sink,
    http: aiohttp.ClientSession,
    statuses: list[int],
    attempts: int,
) -> None:
    """A receiver that does not answer 2xx gets the vendor's 3 retries, then no more."""
    fake = await make_fake()
    sink.statuses = list(statuses)
    await submit(http, fake, "a1", f"{sink.url}/x")
    await sink.wait_for(attempts)
    await asyncio.sleep(0.05)
    assert len(sink.received) == attempts
    assert [a.attempt for a in fake.callbacks.attempts] == list(range(1, attempts + 1))


async def test_unreachable_receiver_is_retried_then_given_up(
    make_fake: MakeFake, http: aiohttp.ClientSession
) -> None:
    """Connection failures count as failed attempts: four in all."""
    fake = await make_fake()
    await submit(http, fake, "a1", f"http://127.0.0.1:{closed_port()}/cb")
    for _ in range(200):
        if fake.callbacks.pending == 0:
            break
        await asyncio.sleep(0.01)
    assert [a.outcome for a in fake.callbacks.attempts] == ["failed"] * 4


async def test_dropped_callbacks_are_never_sent(
    make_fake: MakeFake, sink: Sink, http: aiohttp.ClientSession
) -> None:
    """drop=1.0 loses every callback; the attempts say so."""
    fake = await make_fake(callback_faults=CallbackFaults(drop=1.0))
    await submit(http, fake, "a1", f"{sink.url}/x")
    await asyncio.sleep(0.3)
    assert sink.received == []
    assert [a.outcome for a in fake.callbacks.attempts] == ["dropped"]


async def test_duplicated_callbacks_arrive_twice(
    make_fake: MakeFake, sink: Sink, http: aiohttp.ClientSession
) -> None:
    """duplicate=1.0 delivers the same body twice."""
    fake = await make_fake()
    fake.callbacks.faults = CallbackFaults(duplicate=1.0)
    await submit(http, fake, "a1", f"{sink.url}/x")
    await sink.wait_for(2)
    assert sink.received[0][2] == sink.received[1][2]
    assert [a.duplicate for a in fake.callbacks.attempts] == [False, True]


async def test_reordered_callbacks_arrive_out_of_order(
    make_fake: MakeFake, sink: Sink, http: aiohttp.ClientSession
) -> None:
    """reorder spreads deliveries so they arrive in another order than tasks ended."""
    fake = await make_fake(seed=7, callback_faults=CallbackFaults(reorder=0.5))
    ended = []
    for index in range(8):
        fake.set_duration(f"a{index}", queue_time=0.0, run_time=0.05 + 0.01 * index)
        ended.append(await submit(http, fake, f"a{index}", f"{sink.url}/{index}"))
    await sink.wait_for(8)
    arrived = [body["data"]["task_id"] for _, _, body in sink.received]
    assert sorted(arrived) == sorted(ended)
    assert arrived != ended


async def test_delay_postpones_delivery(
    make_fake: MakeFake, sink: Sink, http: aiohttp.ClientSession
) -> None:
    """delay holds every delivery back after its task ends."""
    fake = await make_fake(callback_faults=CallbackFaults(delay=0.3), run_time=0.0, queue_time=0.0)
    await submit(http, fake, "a1", f"{sink.url}/x")
    await asyncio.sleep(0.1)
    assert sink.received == []
    await sink.wait_for(1)


async def test_task_ended_at_acceptance_calls_back_before_the_answer(
    make_fake: MakeFake, http: aiohttp.ClientSession
) -> None:
    """An ended task's first callback is on the wire before its submit is answered."""
    fake = await make_fake()
    fake.set_duration("a1", queue_time=0.0, run_time=0.0)
    with silent_receiver() as (listener, url):
        await submit(http, fake, "a1", url)
        connection, _ = listener.accept()
        with connection:
            connection.setblocking(False)
            assert connection.recv(65536).startswith(b"POST /cb/x HTTP/1.1")


async def test_submit_does_not_wait_for_the_receiver(
    make_fake: MakeFake, http: aiohttp.ClientSession
) -> None:
    """A receiver that never answers does not hold up the submit answer of an ended task."""
    fake = await make_fake(queue_time=0.0, run_time=0.0)
    with silent_receiver() as (_, url):
        await asyncio.wait_for(submit(http, fake, "a1", url), 2)
        assert fake.callbacks.pending == 1
        assert fake.callbacks.attempts == []


async def test_non_loopback_urls_are_skipped_by_default(
    make_fake: MakeFake, http: aiohttp.ClientSession
) -> None:
    """The fake never calls the internet unless told to."""
    fake = await make_fake(run_time=0.0, queue_time=0.0)
    await submit(http, fake, "a1", "https://hooks.example.com/cb")
    assert [a.outcome for a in fake.callbacks.attempts] == ["skipped"]


async def test_proxy_keeps_path_and_query(
    make_fake: MakeFake, sink: Sink, http: aiohttp.ClientSession
) -> None:
    """callback_proxy sends to its origin with the callback URL's path and query."""
    origin = sink.url.removesuffix("/cb")
    fake = await make_fake(callback_proxy=origin, queue_time=0.0, run_time=0.0)
    await submit(http, fake, "a1", "https://hooks.example.com/cb/x?token=s3cr3t&b=1")
    await sink.wait_for(1)
    assert sink.received[0][0] == "/cb/x?token=s3cr3t&b=1"


async def test_shortened_task_calls_back_at_its_new_end(
    make_fake: MakeFake, sink: Sink, http: aiohttp.ClientSession
) -> None:
    """set_duration that ends an accepted task now moves its callback to now."""
    fake = await make_fake(run_time=30.0)
    await submit(http, fake, "a1", f"{sink.url}/x")
    fake.set_duration("a1", queue_time=0.0, run_time=0.0)
    await sink.wait_for(1)
    assert sink.received[0][2]["data"]["status"] == "finished"


async def test_lengthened_task_calls_back_at_its_new_end(
    make_fake: MakeFake, sink: Sink, http: aiohttp.ClientSession
) -> None:
    """set_duration that prolongs an accepted task holds its callback back."""
    fake = await make_fake(run_time=0.05)
    await submit(http, fake, "a1", f"{sink.url}/x")
    fake.set_duration("a1", run_time=30.0)
    await asyncio.sleep(0.2)
    assert sink.received == []
    assert fake.callbacks.pending == 1


async def test_custom_clock_calls_back_on_the_next_request(
    make_fake: MakeFake, sink: Sink, http: aiohttp.ClientSession
) -> None:
    """With a clock of the test's own, a callback due on it goes out at the next request."""
    now = [0.0]
    fake = await make_fake(clock=lambda: now[0], queue_time=0.0, run_time=600.0)
    task_id = await submit(http, fake, "a1", f"{sink.url}/x")
    now[0] += 601.0
    await asyncio.sleep(0.05)
    assert sink.received == []
    assert (await detail(http, fake, task_id))["data"]["status"] == "finished"
    await sink.wait_for(1)
    assert sink.received[0][2]["data"]["task_id"] == task_id


async def test_close_cancels_pending_deliveries(
    make_fake: MakeFake, sink: Sink, http: aiohttp.ClientSession
) -> None:
    """Closing the fake leaves no timer or delivery behind."""
    fake = await make_fake(run_time=30.0)
    await submit(http, fake, "a1", f"{sink.url}/x")
    assert fake.callbacks.pending == 1
    await fake.close()
    assert fake.callbacks.pending == 0
    assert sink.received == []


async def test_submit_without_callback_url_sends_nothing(
    make_fake: MakeFake, sink: Sink, http: aiohttp.ClientSession
) -> None:
    """No callback_url, no callback."""
    fake = await make_fake(run_time=0.0, queue_time=0.0)
    await submit(http, fake, "a1", None)
    assert fake.callbacks.attempts == []
    assert fake.callbacks.pending == 0


async def test_bad_settings_are_refused() -> None:
    """Fractions outside [0, 1], negative delays and unknown bodies raise ValueError."""
    with pytest.raises(ValueError):
        CallbackFaults(drop=1.5)
    with pytest.raises(ValueError):
        CallbackFaults(delay=-1.0)
    with pytest.raises(ValueError):
        FakeVidgo(callback_body="xml")  # type: ignore[arg-type]


@contextlib.contextmanager
def silent_receiver() -> Iterator[tuple[socket.socket, str]]:
    """A listening loopback socket that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port: int = listener.getsockname()[1]
        yield listener, f"http://127.0.0.1:{port}/cb/x"


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
