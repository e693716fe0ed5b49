"""Callbacks routed between processes through a real PostgreSQL server (CallbackRelay).

Two relays on one database stand for two worker processes of one web app:
the fake API delivers every callback to worker B's receiver, while the wait
lives in worker A. What A's wait costs is counted at the fake.
``benchmarks/callbacks_workers.py`` runs the same with real processes behind
one port; ``test_worker_processes_behind_one_port`` runs it small.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

asyncpg = pytest.importorskip("asyncpg", reason="the postgres extra is not installed")

# Below the check: these import asyncpg.
from relay_support import QUICK_NET, SECRET, SLOW_NET, MakeRelay, Worker, client_of  # noqa: E402

from vidgo_async import ClientClosedError, ConfigurationError  # noqa: E402
from vidgo_async.postgres import CallbackRelay  # noqa: E402
from vidgo_async.testing import CallbackFaults, FakeVidgo  # noqa: E402
from vidgo_async.webhooks import CallbackReceiver  # noqa: E402

BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "callbacks_workers.py"


pytestmark = pytest.mark.asyncio


async def test_a_callback_reaching_another_process_wakes_the_wait_there(
    fake: FakeVidgo, make_relay: MakeRelay, worker_b: Worker
) -> None:
    """B receives A's callback, checks its HMAC, and relays it: A's wait returns on it
    after one status read, long before its 30 s safety net."""
    url_b = worker_b.url
    relay_a = await make_relay()
    receiver_a = CallbackReceiver(url_b, relay=relay_a)  # the app's one public URL
    started = time.monotonic()
    async with client_of(fake, receiver_a, SLOW_NET) as client:
        wav = await asyncio.wait_for(client.convert_to_wav("t", "a1"), 10)
    assert wav.endswith(".wav")
    assert time.monotonic() - started < 5
    assert fake.request_count("detail") == 1
    assert fake.callbacks.attempts[0].outcome == "answered"
    assert worker_b.relay.stats.forwarded == 1
    assert relay_a.stats.delivered == 1
    assert receiver_a.pending == 0


async def test_many_waits_in_two_processes_each_read_once(
    fake: FakeVidgo, make_relay: MakeRelay, worker_b: Worker
) -> None:
    """Waits in both workers, every callback delivered to B: each task is read once."""
    receiver_b, url_b = worker_b.receiver, worker_b.url
    receiver_a = CallbackReceiver(url_b, relay=await make_relay())
    async with (
        client_of(fake, receiver_a, SLOW_NET) as client_a,
        client_of(fake, receiver_b, SLOW_NET) as client_b,
    ):
        pairs_a = [("t", f"a{index}") for index in range(20)]
        pairs_b = [("t", f"b{index}") for index in range(20)]
        results = await asyncio.wait_for(
            asyncio.gather(
                collect(client_a.convert_many(pairs_a)), collect(client_b.convert_many(pairs_b))
            ),
            20,
        )
    assert all(result.ok for batch in results for result in batch)
    assert fake.request_count("detail") == 40
    assert receiver_a.pending == receiver_b.pending == 0


async def collect(results: Any) -> list[Any]:
    """Every item of an async iterator."""
    return [item async for item in results]


@pytest.mark.parametrize("forge", ["mac", "instance"])
async def test_forged_tokens_are_not_relayed(
    fake: FakeVidgo,
    make_relay: MakeRelay,
    worker_b: Worker,
    forge: str,
) -> None:
    """A token whose HMAC does not hold is acknowledged and goes nowhere: the wait
    sees no hint and returns at its safety net, having read the task there."""
    receiver_b, url_b = worker_b.receiver, worker_b.url
    relay_a = await make_relay()
    receiver_a = CallbackReceiver(url_b, relay=relay_a)
    fake.callbacks.faults = CallbackFaults(drop=1.0)  # the API sends none
    async with client_of(fake, receiver_a, QUICK_NET) as client:
        task = await client.submit_wav("t", "a1")
        [submit] = fake.requests_to("submit")
        token = str((submit.json or {})["callback_url"]).rsplit("/", 1)[1]
        key, _, mac = token.partition(".")
        if forge == "mac":
            token = f"{key}.{mac[:-1]}{'A' if mac[-1] != 'A' else 'B'}"
        else:  # a well-formed key of another instance, with A's MAC
            token = f"{'0' * 8}{key[8:]}.{mac}"
        body = json.dumps({"task_id": task.task_id, "status": "finished"}).encode()
        assert receiver_b.feed(token, body) == 200
        await asyncio.wait_for(client.wait(task.task_id), 10)
    assert worker_b.relay.stats.forwarded == 0
    assert relay_a.stats.delivered == 0


async def test_processes_with_different_secrets_fall_back_to_polling(
    fake: FakeVidgo, make_relay: MakeRelay, worker_b: Worker
) -> None:
    """A worker configured with another secret cannot vouch for A's tokens: nothing is
    relayed, and A's wait still ends, by its safety-net poll."""
    url_b = worker_b.url
    relay_a = await make_relay(secret="t" * 32)
    receiver_a = CallbackReceiver(url_b, relay=relay_a)
    async with client_of(fake, receiver_a, QUICK_NET) as client:
        wav = await asyncio.wait_for(client.convert_to_wav("t", "a1"), 10)
    assert wav.endswith(".wav")
    assert worker_b.relay.stats.forwarded == 0
    assert relay_a.stats.delivered == 0


async def test_a_relay_that_is_not_open_fails_before_the_submit(
    fake: FakeVidgo, postgres_dsn: str
) -> None:
    """Tokens need a listening relay: a submit through an unopened or closed one raises
    before anything is sent (no paid task whose callback nobody can receive)."""
    relay = CallbackRelay(postgres_dsn, secret=SECRET)
    receiver = CallbackReceiver("https://hooks.example.com", relay=relay)
    async with client_of(fake, receiver, SLOW_NET) as client:
        with pytest.raises(ConfigurationError, match="not open"):
            await client.submit_wav("t", "a1")
        await relay.start()
        await relay.close()
        with pytest.raises(ClientClosedError):
            await client.submit_wav("t", "a1")
    assert fake.request_count("submit") == 0


async def test_an_unreachable_database_is_a_configuration_error() -> None:
    """start() on a database that does not answer raises ConfigurationError, and the
    message carries neither the password nor the secret."""
    relay = CallbackRelay(
        "postgresql://user:hunter2@127.0.0.1:1/db", secret=SECRET, connect_timeout=2
    )
    with pytest.raises(ConfigurationError) as caught:
        await relay.start()
    assert "hunter2" not in str(caught.value)
    assert SECRET not in str(caught.value)
    assert "hunter2" not in repr(relay) and SECRET not in repr(relay)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"secret": "short"}, ValueError),
        ({"secret": 12345}, TypeError),
        ({"secret": SECRET, "max_queue": 0}, ValueError),
        ({"secret": SECRET, "connect_timeout": -1}, ValueError),
    ],
)
async def test_bad_arguments_fail_at_once(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """Bad arguments raise before anything connects."""
    with pytest.raises(error):
        CallbackRelay("postgresql://127.0.0.1/db", **kwargs)


async def test_a_receiver_takes_only_a_relay_as_relay() -> None:
    """relay= is checked when the receiver is made."""
    with pytest.raises(TypeError, match="CallbackRelay"):
        CallbackReceiver("https://hooks.example.com", relay="postgresql://db")  # type: ignore[arg-type]


async def test_the_relay_listens_again_after_its_connection_is_killed(
    fake: FakeVidgo,
    make_relay: MakeRelay,
    worker_b: Worker,
    postgres_dsn: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database drops both workers' connections: they reconnect and listen again,
    and a callback afterwards is relayed as before."""
    url_b = worker_b.url
    relay_a = await make_relay()
    receiver_a = CallbackReceiver(url_b, relay=relay_a)
    admin = await asyncpg.connect(postgres_dsn)
    try:
        with caplog.at_level(logging.WARNING, logger="vidgo_async"):
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = 'vidgo-async callbacks'"
            )
            assert killed >= 2
            await wait_for_listeners(admin, killed)
    finally:
        await admin.close()
    async with client_of(fake, receiver_a, SLOW_NET) as client:
        await asyncio.wait_for(client.convert_to_wav("t", "a1"), 10)
    assert fake.request_count("detail") == 1
    assert relay_a.stats.delivered == 1


async def wait_for_listeners(admin: Any, count: int) -> None:
    """Until ``count`` relay connections are back and listening: idle after a first
    statement, their LISTEN (a connection idle before it, just made, was counted: a
    callback relayed then was lost, and the test's wait ran into its safety-net poll)."""
    for _ in range(100):
        back = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = 'vidgo-async callbacks' AND state = 'idle'"
            " AND query <> ''"
        )
        if back >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the relays did not reconnect within 10 s")


async def test_worker_processes_behind_one_port(postgres_dsn: str) -> None:
    """The benchmark, small: real worker processes behind one SO_REUSEPORT port, the fake
    in its own process; every task is read about once and returns soon after it ends."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCHMARK),
        "--dsn",
        postgres_dsn,
        "--workers",
        "3",
        "--waits",
        "60",
        "--no-baseline",
        "--json",
        stdout=subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["results"] == 60
    assert report["misrouted"] > 0  # the kernel spread the callbacks over the workers
    assert report["reads_per_task"] <= 1.1
    assert report["p95_delay"] < 1.0
