"""An adversary's view of CallbackRelay: hostile HTTP callbacks, hostile NOTIFYs,
a database that dies (loudly or silently), and careless lifecycles.

Each test that found a defect of the first version says so in its docstring.
Two relays on one database stand for two worker processes,
as in ``test_callback_relay.py``; a TCP proxy in front of the database plays a
network that drops a connection without telling either end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

asyncpg = pytest.importorskip("asyncpg", reason="the postgres extra is not installed")

# Below the check: these import asyncpg.
import aiohttp  # noqa: E402
import pytest_asyncio  # noqa: E402
from pg_server import a_server_of_its_own  # noqa: E402
from relay_support import QUICK_NET, SECRET, SLOW_NET, MakeRelay, Worker, client_of  # noqa: E402

from vidgo_async import (  # noqa: E402
    ClientClosedError,
    ConfigurationError,
    Task,
    TaskStatus,
    VidgoClient,
)
from vidgo_async.postgres import CallbackRelay, SharedJournal, SharedQuota  # noqa: E402
from vidgo_async.testing import CallbackFaults, FakeVidgo, Fault  # noqa: E402
from vidgo_async.webhooks import CallbackReceiver  # noqa: E402

SENDER = "vidgo-callback-relay"


pytestmark = pytest.mark.asyncio


# Fixtures and helpers.


@pytest_asyncio.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the event loop's exception handler during the test (nothing should)."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    loop.set_exception_handler(previous)


@pytest_asyncio.fixture
async def admin(postgres_dsn: str) -> AsyncIterator[Any]:
    """A plain connection: the hostile party with database access, and our observer."""
    connection = await asyncpg.connect(postgres_dsn)
    yield connection
    await connection.close()


def token_of(fake: FakeVidgo, index: int = -1) -> str:
    """The callback token of the ``index``-th submit the fake received."""
    submit = fake.requests_to("submit")[index]
    return str((submit.json or {})["callback_url"]).rsplit("/", 1)[1]


def body(task_id: str, status: str = "finished") -> bytes:
    return json.dumps({"task_id": task_id, "status": status}).encode()


def channel(relay: CallbackRelay) -> str:
    return f"vidgo_async_callbacks_{relay.instance}"


def sender_tasks() -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == SENDER]


async def reap_senders(keep: set[asyncio.Task[Any]]) -> None:
    """Cancel relay senders a defect left behind, so that the loop closes clean."""
    leftovers = [task for task in sender_tasks() if task not in keep]
    for task in leftovers:
        task.cancel()
    await asyncio.gather(*leftovers, return_exceptions=True)


async def until(predicate: Callable[[], Any], seconds: float, step: float = 0.05) -> bool:
    """Whether ``predicate()`` (sync or async) turned true within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return True
        await asyncio.sleep(step)
    return False


class SilentProxy:
    """A TCP proxy to the database. ``sever()`` drops the database side of every
    connection open so far, and keeps the client side open and silent: a NAT
    timeout, a failover without RST, a cable pulled. New connections pass."""

    def __init__(self, dsn: str) -> None:
        parts = urllib.parse.urlsplit(dsn)
        if not parts.hostname or not parts.port:
            pytest.skip("the test database is not on host:port")
        self._parts = parts
        self._server: asyncio.Server | None = None
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter, list[bool]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.dsn = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        netloc = self._parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{port}"
        netloc[-1] = host
        self.dsn = urllib.parse.urlunsplit(self._parts._replace(netloc="@".join(netloc)))

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self._parts.hostname, self._parts.port)
        severed = [False]
        self._pairs.append((writer, up_writer, severed))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink, severed))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _pipe(
        source: asyncio.StreamReader, sink: asyncio.StreamWriter, severed: list[bool]
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if severed[0]:
                    continue  # swallowed
                sink.write(data)
                await sink.drain()

    async def sever(self) -> None:
        for _client, upstream, severed in self._pairs:
            severed[0] = True
            upstream.close()
            with contextlib.suppress(ConnectionError):
                await upstream.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client, upstream, _ in self._pairs:
            client.close()
            upstream.close()
        for client, upstream, _ in self._pairs:
            for writer in (client, upstream):
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


@pytest_asyncio.fixture
async def proxy(postgres_dsn: str) -> AsyncIterator[SilentProxy]:
    relay_proxy = SilentProxy(postgres_dsn)
    await relay_proxy.start()
    yield relay_proxy
    await relay_proxy.close()


# Hostile HTTP callbacks posted to a worker that does not hold the wait.


async def test_hostile_tokens_posted_to_a_worker_are_never_relayed_nor_a_500(
    fake: FakeVidgo,
    make_relay: MakeRelay,
    worker_b: Worker,
    loop_errors: list[dict[str, Any]],
) -> None:
    """Forged, truncated, padded, oversized and odd-unicode tokens, over real HTTP:
    every answer is below 500, nothing is relayed, A's wait sees no hint."""
    relay_a = await make_relay()
    receiver_a = CallbackReceiver(worker_b.url, relay=relay_a)
    fake.callbacks.faults = CallbackFaults(drop=1.0)
    async with client_of(fake, receiver_a, SLOW_NET) as client:
        task = await client.submit_wav("t", "a1")
        token = token_of(fake)
        key, _, mac = token.partition(".")
        other = relay_a.instance[:7] + ("0" if relay_a.instance[7] != "0" else "1")
        hostile = [
            f"{key}.{mac[:-1]}",  # short MAC
            f"{key}.{mac}A",  # padded MAC
            f"{key}.{mac.upper()}",
            f"{key.upper()}.{mac}",
            f"{other}{key[8:]}.{mac}",  # another instance, A's MAC
            f"{key}.{mac[:-1]}\uff21",  # a fullwidth letter
            f"{key}.{mac[:-1]}%ED%A0%80",  # the UTF-8 of a lone surrogate
            f"{key}.%00{mac[1:]}",
            f"{key}.{'é' * 32}",
            f"{key[:15]}\u0661.{mac}",  # an Arabic-Indic digit
            f"{key}.",
            f".{mac}",
            "." * 49,
            "A" * 5000,
            f"{key}.{mac}" + "x" * 4000,  # truncated to 50 characters by feed()
        ]
        async with aiohttp.ClientSession() as session:
            for forged in hostile:
                url = f"{worker_b.url}/vidgo/callback/{urllib.parse.quote(forged, safe='%')}"
                for payload in (body(task.task_id), b"{" * 100_000, b"\xff\xfe"):
                    async with session.post(url, data=payload) as response:
                        assert response.status < 500, (forged, payload[:20], response.status)
        await asyncio.sleep(0.3)
        assert worker_b.relay.stats.forwarded == 0
        assert relay_a.stats.delivered == 0
        assert fake.request_count("detail") == 0
    assert not loop_errors


async def a_wait_on_a_finished_task(
    client: Any, fake: FakeVidgo
) -> tuple[Any, asyncio.Task[Any], str]:
    """Submit a task, let it finish at the fake, start waiting on it: the task, the
    wait, and the token its callback would carry."""
    task = await client.submit_wav("t", "a1")
    await asyncio.sleep(0.3)  # the task has finished at the fake
    waiting = asyncio.create_task(client.wait(task.task_id))
    await asyncio.sleep(0.05)
    return task, waiting, token_of(fake)


async def test_a_flood_of_replays_costs_the_waiting_worker_one_read(
    fake: FakeVidgo, make_relay: MakeRelay, worker_b: Worker
) -> None:
    """500 replays of one genuine callback at B: A's wait reads the task once."""
    relay_a = await make_relay()
    receiver_a = CallbackReceiver(worker_b.url, relay=relay_a)
    fake.callbacks.faults = CallbackFaults(drop=1.0)
    async with client_of(fake, receiver_a, SLOW_NET) as client:
        task, waiting, token = await a_wait_on_a_finished_task(client, fake)
        for _ in range(500):
            assert worker_b.receiver.feed(token, body(task.task_id)) == 200
        done = await asyncio.wait_for(waiting, 10)
        assert done.status is TaskStatus.FINISHED
        await until(lambda: relay_a.stats.delivered >= 500, 5)
    assert fake.request_count("detail") == 1


async def test_replays_of_one_genuine_callback_are_relayed_a_bounded_number_of_times(
    fake: FakeVidgo, make_relay: MakeRelay, worker_b: Worker
) -> None:
    """Defect found: every replay of a genuine callback was NOTIFYed again; a hint sent on is
    not sent again for a minute."""
    relay_a = await make_relay()
    receiver_a = CallbackReceiver(worker_b.url, relay=relay_a)
    async with client_of(fake, receiver_a, SLOW_NET) as client:
        await asyncio.wait_for(client.convert_to_wav("t", "a1"), 10)  # genuine, resolved
        [task] = [attempt.task_id for attempt in fake.callbacks.attempts]
        token = token_of(fake)
        for _ in range(500):  # the wait is over: replays of a used token
            worker_b.receiver.feed(token, body(task))
    assert worker_b.relay.stats.forwarded <= 10


async def test_a_forged_hint_for_another_task_does_not_mute_the_genuine_one(
    fake: FakeVidgo, make_relay: MakeRelay, worker_b: Worker
) -> None:
    """A forged callback with a genuine token but another task's id, relayed first, does
    not keep the genuine callback (same token and status) from being relayed after it:
    the wait returns on it, not a safety-net interval later."""
    relay_a = await make_relay()
    receiver_a = CallbackReceiver(worker_b.url, relay=relay_a)
    fake.callbacks.faults = CallbackFaults(drop=1.0)
    async with client_of(fake, receiver_a, SLOW_NET) as client:
        task, waiting, token = await a_wait_on_a_finished_task(client, fake)
        assert worker_b.receiver.feed(token, body("someone-elses-task")) == 200
        await until(lambda: relay_a.stats.delivered >= 1, 5)
        assert worker_b.receiver.feed(token, body(task.task_id)) == 200
        done = await asyncio.wait_for(waiting, 5)  # SLOW_NET's safety net is 30 s away
        assert done.status is TaskStatus.FINISHED


async def test_a_full_queue_does_not_flood_the_log(
    make_relay: MakeRelay,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A thousand distinct hints on a queue of one: all but one dropped, one WARNING."""
    relay_a = await make_relay()
    relay_b = await make_relay(max_queue=1)
    with caplog.at_level(logging.WARNING, logger="vidgo_async"):
        for index in range(1000):  # synchronous: the sender cannot drain in between
            finished = Task(task_id=f"x{index}", status=TaskStatus.FINISHED)
            relay_b.forward(relay_a.instance, f"t{index}", finished)
    assert relay_b.stats.dropped >= 998
    full = [record for record in caplog.records if "queue full" in record.getMessage()]
    assert len(full) <= 10


# Hostile NOTIFYs: a party with database access writes to A's channel directly.


async def test_hostile_notifies_are_dropped_and_the_listener_survives(
    fake: FakeVidgo,
    make_relay: MakeRelay,
    admin: Any,
    loop_errors: list[dict[str, Any]],
) -> None:
    """Garbage, wrong types, huge payloads, a token of another slot, another task's id,
    a non-terminal status: none makes a status read or reaches the loop's exception
    handler; the genuine hint afterwards still wakes the wait (one read)."""
    relay_a = await make_relay()
    receiver_a = CallbackReceiver("https://hooks.example.com", relay=relay_a)
    fake.callbacks.faults = CallbackFaults(drop=1.0)
    async with client_of(fake, receiver_a, SLOW_NET) as client:
        first = await client.submit_wav("t", "a1")
        second = await client.submit_wav("t", "a2")
        token, other_token = token_of(fake, 0), token_of(fake, 1)
        await asyncio.sleep(0.3)  # both finished at the fake
        waiting = asyncio.create_task(client.wait(first.task_id))
        await asyncio.sleep(0.1)
        reads = fake.request_count("detail")

        def hint(tok: Any = token, task_id: Any = first.task_id, status: Any = "finished") -> str:
            return json.dumps({"token": tok, "task_id": task_id, "status": status})

        key, _, mac = token.partition(".")
        payloads = [
            "",
            "null",
            "not json",
            "[]",
            '"a string"',
            "123",
            "{}",
            '{"token": "x"}',
            hint(tok=5),
            hint(tok=None),
            hint(tok=[token]),
            hint(tok={"token": token}),
            hint(task_id=None),
            hint(task_id=True),
            hint(task_id=[first.task_id]),
            hint(task_id={"id": first.task_id}),
            hint(task_id="\ud800"),
            hint(task_id="x" * 7000),
            hint(status="running"),  # not terminal
            hint(status="not_started"),
            hint(task_id=second.task_id),  # A's genuine token, another task
            hint(tok=other_token),  # another slot's genuine token, this task
            hint(tok=f"{key}.{mac[:-1]}B" if mac[-1] != "B" else f"{key}.{mac[:-1]}C"),
            hint(tok=f"{key}.{mac}\ud800"),
            hint(tok="\ud800" * 16 + "." + mac),
            hint(tok=f"{key}.{mac}" + "A" * 7000),
            hint(tok="00000000" + key[8:] + "." + mac),  # another instance: not re-relayed
            "x" * 7999,
        ]
        for payload in payloads:
            await admin.execute("SELECT pg_notify($1, $2)", channel(relay_a), payload)
        await asyncio.sleep(0.5)
        assert not waiting.done()
        assert fake.request_count("detail") == reads
        assert relay_a.stats.forwarded == 0
        await admin.execute("SELECT pg_notify($1, $2)", channel(relay_a), hint())
        done = await asyncio.wait_for(waiting, 5)
    assert done.status is TaskStatus.FINISHED
    assert fake.request_count("detail") == reads + 1
    assert not loop_errors


@pytest.mark.parametrize("status", [None, ["finished"], {"finished": True}])
async def test_a_notify_with_a_status_of_the_wrong_type_is_dropped(
    fake: FakeVidgo, make_relay: MakeRelay, admin: Any, status: Any
) -> None:
    """Defect found: a NOTIFY whose status is not a string cost a status read."""
    relay_a = await make_relay()
    receiver_a = CallbackReceiver("https://hooks.example.com", relay=relay_a)
    fake.callbacks.faults = CallbackFaults(drop=1.0)
    async with client_of(fake, receiver_a, SLOW_NET) as client:
        task = await client.submit_wav("t", "a1")
        await asyncio.sleep(0.3)
        waiting = asyncio.create_task(client.wait(task.task_id))
        await asyncio.sleep(0.1)
        reads = fake.request_count("detail")
        payload = json.dumps({"token": token_of(fake), "task_id": task.task_id, "status": status})
        await admin.execute("SELECT pg_notify($1, $2)", channel(relay_a), payload)
        await asyncio.sleep(0.5)
        woken = waiting.done()
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
    assert not woken
    assert fake.request_count("detail") == reads


async def test_a_deeply_nested_notify_does_not_reach_the_loop(
    make_relay: MakeRelay, admin: Any, loop_errors: list[dict[str, Any]]
) -> None:
    """Defect found: a deeply nested NOTIFY payload raised RecursionError into the loop."""
    relay_a = await make_relay()
    await admin.execute("SELECT pg_notify($1, $2)", channel(relay_a), "[" * 7000)
    await asyncio.sleep(0.3)
    assert not loop_errors


async def test_the_unreadable_hint_log_line_is_well_formed(
    make_relay: MakeRelay, admin: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect found: the debug line for an unreadable hint ended in a literal ":.200"."""
    relay_a = await make_relay()
    with caplog.at_level(logging.DEBUG, logger="vidgo_async"):
        await admin.execute("SELECT pg_notify($1, $2)", channel(relay_a), "not json")
        await until(lambda: any("unreadable" in r.getMessage() for r in caplog.records), 2)
    [line] = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert ":.200" not in line


# Early callbacks, two receivers on one relay, expired tokens, a closed relay.


async def test_a_relayed_callback_that_beats_the_submit_answer_is_kept(
    fake: FakeVidgo, make_relay: MakeRelay, worker_b: Worker
) -> None:
    """The task is done at acceptance and the submit answer comes 0.5 s late: its
    callback reaches B, is relayed to A before A knows the task id, and still wakes A."""
    relay_a = await make_relay()
    receiver_a = CallbackReceiver(worker_b.url, relay=relay_a)
    fake.set_duration("a1", queue_time=0.0, run_time=0.0)
    fake.inject(Fault.slow(0.5), route="submit")
    started = time.monotonic()
    async with client_of(fake, receiver_a, SLOW_NET) as client:
        await asyncio.wait_for(client.convert_to_wav("t", "a1"), 10)
    assert time.monotonic() - started < 5
    assert relay_a.stats.delivered == 1
    assert fake.request_count("detail") == 1


async def test_two_receivers_on_one_relay_each_get_their_hints(
    fake: FakeVidgo, make_relay: MakeRelay, worker_b: Worker
) -> None:
    """Two receivers (two apps) share relay A: a hint for either, relayed from B,
    reaches the right one and is not bounced back out by the other."""
    relay_a = await make_relay()
    first = CallbackReceiver(worker_b.url, relay=relay_a)
    second = CallbackReceiver(worker_b.url, relay=relay_a)
    async with (
        client_of(fake, first, SLOW_NET) as client_1,
        client_of(fake, second, SLOW_NET) as client_2,
    ):
        await asyncio.wait_for(
            asyncio.gather(client_1.convert_to_wav("t", "a1"), client_2.convert_to_wav("t", "a2")),
            10,
        )
    assert fake.request_count("detail") == 2
    assert relay_a.stats.forwarded == 0
    assert first.pending == second.pending == 0


async def test_a_token_gone_before_its_callback_falls_back_to_the_safety_net(
    fake: FakeVidgo, make_relay: MakeRelay, worker_b: Worker
) -> None:
    """max_tokens=1 at A: a second submit evicts the first token; the first task's
    relayed callback finds no slot at A, and its wait ends by polling."""
    relay_a = await make_relay()
    receiver_a = CallbackReceiver(worker_b.url, relay=relay_a, max_tokens=1)
    async with client_of(fake, receiver_a, QUICK_NET) as client:
        first = await client.submit_wav("t", "a1")
        await client.submit_wav("t", "a2")
        done = await asyncio.wait_for(client.wait(first.task_id), 10)
    assert done.status is TaskStatus.FINISHED


async def test_closing_the_relay_while_waits_are_pending(
    fake: FakeVidgo, make_relay: MakeRelay, worker_b: Worker, loop_errors: list[dict[str, Any]]
) -> None:
    """Waits outlive their relay: they end by their safety net; a new submit raises
    ClientClosedError before anything is sent; close() twice and start() after close
    behave."""
    relay_a = await make_relay()
    receiver_a = CallbackReceiver(worker_b.url, relay=relay_a)
    fake.set_duration("a1", queue_time=0.0, run_time=0.5)
    async with client_of(fake, receiver_a, QUICK_NET) as client:
        task = await client.submit_wav("t", "a1")
        waiting = asyncio.create_task(client.wait(task.task_id))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(relay_a.close(), 5)
        await asyncio.wait_for(relay_a.close(), 1)
        done = await asyncio.wait_for(waiting, 10)
        assert done.status is TaskStatus.FINISHED
        submits = fake.request_count("submit")
        with pytest.raises(ClientClosedError):
            await client.submit_wav("t", "a2")
        assert fake.request_count("submit") == submits
    with pytest.raises(ClientClosedError):
        await relay_a.start()
    assert not loop_errors


# Lifecycle races.


async def test_concurrent_starts_open_one_connection(postgres_dsn: str, admin: Any) -> None:
    """Defect found: two concurrent start()s opened two connections and two senders."""
    before = set(sender_tasks())
    relay = CallbackRelay(postgres_dsn, secret=SECRET)
    try:
        await asyncio.gather(relay.start(), relay.start())
        await relay.close()
        assert not (set(sender_tasks()) - before)
    finally:
        await reap_senders(before)


async def test_close_during_start_leaves_the_relay_closed(postgres_dsn: str) -> None:
    """Defect found: close() during start() left the relay open, its sender leaked."""
    before = set(sender_tasks())
    relay = CallbackRelay(postgres_dsn, secret=SECRET)
    try:
        starting = asyncio.create_task(relay.start())
        await asyncio.sleep(0)
        await relay.close()
        with contextlib.suppress(ClientClosedError):
            await starting
        assert "closed" in repr(relay)
        assert not (set(sender_tasks()) - before)
    finally:
        await reap_senders(before)


async def test_a_cancelled_close_can_be_finished(proxy: SilentProxy) -> None:
    """Defect found: a close() cancelled while draining left the sender running for good."""
    before = set(sender_tasks())
    relay = CallbackRelay(proxy.dsn, secret=SECRET, connect_timeout=5)
    await relay.start()
    try:
        await proxy.sever()
        relay.forward("0badf00d", "t", Task(task_id="x", status=TaskStatus.FINISHED))
        await asyncio.sleep(0.2)  # the sender waits forever on the silent connection
        closing = asyncio.create_task(relay.close())
        await asyncio.sleep(0.2)
        closing.cancel()
        await asyncio.gather(closing, return_exceptions=True)
        await asyncio.wait_for(relay.close(), 10)  # finish the job
        assert not (set(sender_tasks()) - before)
    finally:
        await reap_senders(before)


async def test_close_is_bounded_when_the_database_went_silent(proxy: SilentProxy) -> None:
    """A hint queued to a connection that never answers: close() gives up after
    connect_timeout, counts it dropped, and leaves no task behind."""
    before = set(sender_tasks())
    relay = CallbackRelay(proxy.dsn, secret=SECRET, connect_timeout=1)
    await relay.start()
    await proxy.sever()
    relay.forward("0badf00d", "t", Task(task_id="x", status=TaskStatus.FINISHED))
    started = time.monotonic()
    await asyncio.wait_for(relay.close(), 10)
    assert time.monotonic() - started < 3
    assert not (set(sender_tasks()) - before)


async def test_a_hint_in_flight_on_a_silently_dropped_connection_is_sent_again(
    proxy: SilentProxy, make_relay: MakeRelay
) -> None:
    """The sender's NOTIFY goes unanswered: it gives up after connect_timeout, connects
    again and sends it there, before close() returns; nothing is dropped."""
    relay_a = await make_relay()
    relay = CallbackRelay(proxy.dsn, secret=SECRET, connect_timeout=1)
    await relay.start()
    await proxy.sever()
    relay.forward(relay_a.instance, "t", Task(task_id="x", status=TaskStatus.FINISHED))
    await asyncio.sleep(0.2)  # taken by the sender, stuck in executemany
    await asyncio.wait_for(relay.close(), 10)
    assert relay.stats.dropped == 0
    assert await until(lambda: relay_a.stats.delivered == 1, 5)


async def test_a_silently_dropped_connection_is_replaced(proxy: SilentProxy, admin: Any) -> None:
    """Defect found: a connection the network dropped without a reset was never replaced
    (no timeout on the NOTIFY, no check of an idle connection)."""
    relay = CallbackRelay(proxy.dsn, secret=SECRET, connect_timeout=2)
    await relay.start()
    try:
        await proxy.sever()

        readable = json.dumps({"token": "x", "task_id": "y", "status": "failed"})

        async def delivered() -> bool:
            await admin.execute("SELECT pg_notify($1, $2)", channel(relay), readable)
            return relay.stats.delivered > 0

        assert await until(delivered, 10, step=0.5)  # 10 x the idle check
    finally:
        await asyncio.wait_for(relay.close(), 10)


async def test_one_refused_hint_does_not_wedge_the_relay(make_relay: MakeRelay) -> None:
    """Defect found: a hint the server refused was retried forever, reconnecting ~50
    times a second; now the refused hints are dropped and the connection kept."""
    relay_a = await make_relay()
    relay_b = await make_relay()
    # forward() takes any Task: nothing caps the payload (the receiver's ids are short).
    relay_b.forward(relay_a.instance, "t", Task(task_id="x" * 9000, status=TaskStatus.FINISHED))
    await asyncio.sleep(0.2)
    relay_b.forward(relay_a.instance, "u", Task(task_id="y", status=TaskStatus.FINISHED))
    assert await until(lambda: relay_a.stats.delivered >= 1, 5)


async def test_a_malformed_dsn_is_a_configuration_error_without_the_password() -> None:
    """Defect found: a DSN that does not parse raised a bare ValueError quoting part of the
    password."""
    relay = CallbackRelay("postgresql://user:hun/ter2@127.0.0.1/db", secret=SECRET)
    with pytest.raises(ConfigurationError) as caught:
        await relay.start()
    assert "hun" not in str(caught.value)


async def _open_quota(dsn: str) -> None:
    async with SharedQuota(dsn, namespace="n", connect_timeout=2):
        pass


async def _open_journal(dsn: str) -> None:
    async with VidgoClient("key", base_url="http://127.0.0.1:9") as client:
        async for _ in client.convert_many([("m", "a")], journal=SharedJournal(dsn)):
            pass


async def _open_relay(dsn: str) -> None:
    relay = CallbackRelay(dsn, secret=SECRET, connect_timeout=2)
    try:
        await relay.start()
    finally:
        await relay.close()


@pytest.mark.parametrize("where", ["host", "query", "signed", "PGPORT"])
@pytest.mark.parametrize("open_it", [_open_quota, _open_journal, _open_relay])
async def test_a_dsn_port_past_65535_is_refused_not_wrapped(
    where: str, open_it: Callable[[str], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by a hostile run: asyncpg took port P + 65536 of a host name for P, and sent
    a startup message (the user's name) there. It is a ConfigurationError now, and no
    connection reaches P."""
    connected: list[object] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.append(writer.get_extra_info("peername"))
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    async with server:
        port = server.sockets[0].getsockname()[1] + 65536
        dsn = {
            "host": f"postgresql://user:pw@localhost:{port}/db",
            "query": f"postgresql://user:pw@/db?host=localhost&port={port}",
            "signed": f"postgresql://user:pw@localhost:+{port}/db",
            "PGPORT": "postgresql://user:pw@localhost/db",
        }[where]
        if where == "PGPORT":
            monkeypatch.setenv("PGPORT", str(port))
        with pytest.raises(ConfigurationError) as caught:
            await asyncio.wait_for(open_it(dsn), 10)
    assert "pw" not in str(caught.value) and connected == []


# The database restarted under the relays.


@pytest.mark.slow
async def test_a_database_restart_mid_wait(
    fake: FakeVidgo, loop_errors: list[dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """The server stops while a wait is pending and comes back 1 s later: the wait ends
    (by its safety net at worst), both relays listen again, close() is bounded, and no
    log line carries the DSN's password, the secret or the API key."""
    relays: list[CallbackRelay] = []
    async with a_server_of_its_own() as (server, dsn):
        password = "hunter2-dsn-password"  # the server trusts: any password is accepted
        dsn = dsn.replace("vidgo@", f"vidgo:{password}@")
        try:
            with caplog.at_level(logging.DEBUG, logger="vidgo_async"):
                for _ in range(2):
                    relay = CallbackRelay(dsn, secret=SECRET, connect_timeout=2)
                    await relay.start()
                    relays.append(relay)
                relay_a, relay_b = relays
                receiver_b = CallbackReceiver(relay=relay_b)
                async with receiver_b.serve() as url_b:
                    receiver_a = CallbackReceiver(url_b, relay=relay_a)
                    fake.set_duration("a1", queue_time=0.0, run_time=1.0)
                    async with client_of(fake, receiver_a, QUICK_NET) as client:
                        task = await client.submit_wav("t", "a1")
                        waiting = asyncio.create_task(client.wait(task.task_id))
                        await asyncio.to_thread(server.restart, 1.0, "immediate")
                        done = await asyncio.wait_for(waiting, 15)
                        assert done.status is TaskStatus.FINISHED
                        # Both listen again: a hostile-but-harmless NOTIFY reaches each.
                        observer = await asyncpg.connect(dsn)
                        try:
                            for relay in relays:
                                before = relay.stats.delivered

                                async def reached(
                                    r: CallbackRelay = relay, n: int = before
                                ) -> bool:
                                    await observer.execute(
                                        "SELECT pg_notify($1, $2)",
                                        channel(r),
                                        json.dumps(
                                            {"token": "x", "task_id": "y", "status": "failed"}
                                        ),
                                    )
                                    return r.stats.delivered > n

                                assert await until(reached, 15, step=0.5)
                        finally:
                            await observer.close()
                for relay in relays:
                    started = time.monotonic()
                    await asyncio.wait_for(relay.close(), 10)
                    assert time.monotonic() - started < 5
        finally:
            for relay in relays:
                await asyncio.wait_for(relay.close(), 10)
    lines = [record.getMessage() for record in caplog.records]
    assert any("unreachable" in line for line in lines)
    for line in [*lines, *(repr(r) for r in relays), *(str(r.stats) for r in relays)]:
        assert password not in line
        assert SECRET not in line
        assert fake.api_key not in line
    assert not sender_tasks()
    assert not loop_errors
