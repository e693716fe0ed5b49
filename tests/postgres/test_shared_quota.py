"""A quota shared through a real PostgreSQL server, measured at the fake on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

asyncpg = pytest.importorskip("asyncpg", reason="the postgres extra is not installed")

# Below the check: these import asyncpg.
import pytest_asyncio  # noqa: E402
from quota_support import QUICK_RETRY, keep_busy, max_in_window, seed_running  # noqa: E402
from support import MakeClient  # noqa: E402

from vidgo_async import (  # noqa: E402
    ClientClosedError,
    RateLimitError,
    RetryPolicy,
    TaskTimeoutError,
    VidgoClient,
)
from vidgo_async.errors import ConfigurationError  # noqa: E402
from vidgo_async.postgres import SharedQuota  # noqa: E402
from vidgo_async.testing import FakeVidgo, Fault  # noqa: E402

CAP = 20
ONE_SHOT = RetryPolicy(max_attempts=1, max_retry_after=5.0)
WORKER = Path(__file__).with_name("quota_support.py")

MakeQuota = Callable[..., Awaitable[SharedQuota]]


@pytest_asyncio.fixture
async def make_quota(postgres_dsn: str, namespace: str) -> AsyncIterator[MakeQuota]:
    """A factory of open quotas on this test's namespace, all closed after the test."""
    quotas: list[SharedQuota] = []

    async def make(**kwargs: Any) -> SharedQuota:
        quota = SharedQuota(postgres_dsn, namespace=namespace, **kwargs)
        await quota.start()
        quotas.append(quota)
        return quota

    yield make
    for quota in quotas:
        await quota.close()


async def quota_row(dsn: str, namespace: str) -> Any:
    """The pause and share of this namespace's status requests, read from the database."""
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchrow(
            "SELECT paused_until > clock_timestamp() AS paused, share FROM vidgo_async_quota"
            " WHERE namespace = $1 AND bucket = 'polls'",
            namespace,
        )
    finally:
        await connection.close()


async def until_recorded(dsn: str, namespace: str, column: str) -> None:
    """Until the 429 one client saw is in the database (it is written in the background)."""
    for _ in range(250):
        row = await quota_row(dsn, namespace)
        if row is not None and (row["paused"] if column == "paused" else row["share"] < 1):
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"the 429 never reached the database ({column})")


# ---------------------------------------------------------------- the cap on the wire


@pytest.mark.asyncio
async def test_clients_sharing_a_namespace_never_exceed_the_cap(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo
) -> None:
    """Three busy clients over two quotas on one namespace: at most CAP status requests a second."""
    first, second = await make_quota(), await make_quota()
    clients = [
        make_client(quota=quota, max_polls_per_second=CAP, retry=QUICK_RETRY)
        for quota in (first, first, second)
    ]
    await keep_busy(clients, seed_running(fake, 60), seconds=2.5)
    times = [r.at for r in fake.requests_to("detail")]
    assert max_in_window(times) <= CAP
    assert len(times) >= 2 * CAP  # the cap is shared, not starved


@pytest.mark.asyncio
async def test_many_waits_at_once_keep_the_cap_in_every_second(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo
) -> None:
    """Two clients start 150 waits each at once, on connections still to be opened and
    a slow server: requests that leave late still count where they land."""
    first, second = await make_quota(), await make_quota()
    clients = [make_client(quota=quota, max_polls_per_second=CAP) for quota in (first, second)]
    fake.inject(Fault.slow(0.05), route="detail", times=100_000)
    await keep_busy(clients, seed_running(fake, 300), seconds=3.0)
    times = [r.at for r in fake.requests_to("detail")]
    assert max_in_window(times) <= CAP
    assert len(times) >= 2 * CAP


@pytest.mark.asyncio
async def test_requests_under_way_keep_counting_after_their_lease_is_spent(
    make_quota: MakeQuota,
) -> None:
    """One process holds the whole cap in requests still under way (queued for a
    connection, or slow to answer): another gets no room while they are, though
    every lease they came from was spent at once."""
    holder, other = await make_quota(lease_seconds=5), await make_quota()
    limiter = holder.poll_limiter(CAP)
    held = [await limiter.acquire(timeout=5) for _ in range(CAP)]
    with pytest.raises(TimeoutError):
        await other.poll_limiter(CAP).acquire(timeout=1.5)
    for slot in held:
        slot.release()


@pytest.mark.asyncio
async def test_a_wait_for_a_free_connection_keeps_to_the_deadline(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo
) -> None:
    """Under a shared quota the client's requests queue for a connection before they
    go: that wait counts against the wait's deadline too."""
    quota = await make_quota()
    client = make_client(quota=quota, max_polls_per_second=CAP, max_connections=1)
    slow, quick = seed_running(fake, 2)
    fake.inject(Fault.slow(3.0), route="detail")
    held = asyncio.ensure_future(client.get_task(slow))  # holds the one connection 3 s
    await asyncio.sleep(0.2)
    started = time.monotonic()
    with pytest.raises(TaskTimeoutError):
        await client.wait(quick, timeout=0.3)
    assert time.monotonic() - started < 1.5
    await held


@pytest.mark.asyncio
async def test_a_token_that_outlives_its_lease_is_swapped_as_it_leaves(
    make_quota: MakeQuota,
) -> None:
    """A token whose request did not leave within its lease's life takes a fresh one."""
    quota = await make_quota(lease_seconds=0.05)
    limiter = quota.poll_limiter(CAP)
    slot = await limiter.acquire(timeout=5)
    await slot.leaving(timeout=5)  # in time: nothing to do
    assert quota.stats.round_trips == 1
    await asyncio.sleep(0.1)
    await slot.leaving(timeout=5)
    assert quota.stats.round_trips == 2
    slot.release()


@pytest.mark.asyncio
async def test_processes_sharing_a_namespace_never_exceed_the_cap(
    postgres_dsn: str, namespace: str, fake: FakeVidgo
) -> None:
    """Three worker processes on one namespace: at most CAP status requests a second."""
    ids = seed_running(fake, 60)
    start_at = time.monotonic() + 4.0  # each worker imports, connects, then waits for this
    common = [postgres_dsn, namespace, fake.url, fake.api_key, str(CAP), str(start_at), "2.5"]
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, str(WORKER), *common, *ids[i::3], stdout=asyncio.subprocess.PIPE
        )
        for i in range(3)
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(w.communicate() for w in workers)), 60)
    assert [w.returncode for w in workers] == [0, 0, 0]
    stats = [json.loads(out) for out, _ in outputs]
    times = [r.at for r in fake.requests_to("detail")]
    assert max_in_window(times) <= CAP
    assert len(times) == sum(s["requests"] for s in stats) >= 2 * CAP


@pytest.mark.asyncio
async def test_submits_share_their_own_cap(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo
) -> None:
    """With max_submits_per_second, two clients' submits together stay under it."""
    quotas = [await make_quota(max_submits_per_second=5) for _ in range(2)]
    clients = [make_client(quota=quota) for quota in quotas]
    submits = [clients[i % 2].submit_wav(f"parent-{i}", f"audio-{i}") for i in range(12)]
    await asyncio.wait_for(asyncio.gather(*submits), 20)
    assert max_in_window([r.at for r in fake.requests_to("submit")]) <= 5


@pytest.mark.asyncio
async def test_a_lease_serves_many_requests(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo
) -> None:
    """A busy client makes about one database round trip per lease, not one per request."""
    quota = await make_quota()
    client = make_client(quota=quota, max_polls_per_second=40, retry=QUICK_RETRY)
    await keep_busy([client], seed_running(fake, 40), seconds=2.0)
    stats = quota.stats
    assert stats.requests == fake.request_count("detail")
    assert stats.round_trips_per_request <= 0.2  # leases of up to 10 tokens


# ---------------------------------------------------------------- a 429 slows every sharer


@pytest.mark.asyncio
async def test_a_429_with_retry_after_seen_by_one_pauses_the_others(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo, postgres_dsn: str,
    namespace: str,
) -> None:  # fmt: skip
    """After one client's 429 with Retry-After: 1, another client's next request waits it out."""
    seen, other = [
        make_client(quota=await make_quota(), retry=ONE_SHOT, max_polls_per_second=CAP)
        for _ in range(2)
    ]
    (task_id,) = seed_running(fake, 1)
    fake.inject(Fault.rate_limited("1"), route="detail")
    with pytest.raises(RateLimitError):
        await seen.get_task(task_id)
    refused_at = time.monotonic()
    await until_recorded(postgres_dsn, namespace, "paused")
    await other.get_task(task_id)
    assert time.monotonic() - refused_at >= 0.95


@pytest.mark.asyncio
async def test_a_429_without_retry_after_seen_by_one_halves_the_others(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo, postgres_dsn: str,
    namespace: str,
) -> None:  # fmt: skip
    """After one client's bare 429, another busy client gets about half the cap."""
    seen = make_client(quota=await make_quota(), retry=ONE_SHOT, max_polls_per_second=40)
    other = make_client(quota=await make_quota(), retry=QUICK_RETRY, max_polls_per_second=40)
    ids = seed_running(fake, 41)
    fake.inject(Fault.rate_limited(), route="detail")
    with pytest.raises(RateLimitError):
        await seen.get_task(ids[0])
    refused_at = time.monotonic()
    await until_recorded(postgres_dsn, namespace, "share")
    fake.reset_log()
    await keep_busy([other], ids[1:], seconds=1.0)
    # Half of 40, won back at 10 % of the rate a second since the 429.
    allowed = int(40 * (0.5 + 0.1 * (time.monotonic() - refused_at)))
    assert max_in_window([r.at for r in fake.requests_to("detail")]) <= allowed < 40


@pytest.mark.asyncio
async def test_bare_429s_of_several_sharers_within_a_window_halve_the_cap_once(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo, postgres_dsn: str,
    namespace: str,
) -> None:  # fmt: skip
    """The 429s answering requests sent before the cap was halved say nothing new:
    two sharers' within one window halve it once, not to a quarter."""
    clients = [
        make_client(quota=await make_quota(), retry=ONE_SHOT, max_polls_per_second=40)
        for _ in range(2)
    ]
    (task_id,) = seed_running(fake, 1)
    fake.inject(Fault.rate_limited(), route="detail", times=2)
    for client in clients:
        with pytest.raises(RateLimitError):
            await client.get_task(task_id)
        await until_recorded(postgres_dsn, namespace, "share")
    await asyncio.sleep(0.3)  # the second back-off is written in the background too
    row = await quota_row(postgres_dsn, namespace)
    assert row["share"] == pytest.approx(0.5, abs=0.01)


@pytest.mark.asyncio
async def test_a_burst_of_bare_429s_costs_one_back_off_and_one_fresh_lease(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo
) -> None:
    """Ten polls sent together, all answered 429: the tokens in hand are dropped and
    the store told once, not once a 429 (each drop costs a lease round trip)."""
    quota = await make_quota()
    client = make_client(quota=quota, retry=ONE_SHOT, max_polls_per_second=40)
    ids = seed_running(fake, 10)
    await client.get_task(ids[0])  # the first lease
    before = quota.stats.round_trips
    fake.inject(Fault.rate_limited(), route="detail", times=10)
    results = await asyncio.gather(*(client.get_task(i) for i in ids), return_exceptions=True)
    assert all(isinstance(r, RateLimitError) for r in results)
    await asyncio.sleep(0.3)  # the back-off is written in the background
    assert quota.stats.round_trips - before <= 3  # a back-off and a lease, or two


@pytest.mark.asyncio
async def test_sharers_of_an_older_version_still_halve_at_every_429(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo, postgres_dsn: str,
    namespace: str,
) -> None:  # fmt: skip
    """The back-off function older versions call (v1) keeps its meaning beside v2."""
    client = make_client(quota=await make_quota(), max_polls_per_second=40)
    (task_id,) = seed_running(fake, 1)
    await client.get_task(task_id)  # the namespace's row exists from the first lease
    connection = await asyncpg.connect(postgres_dsn)
    try:
        for _ in range(2):
            await connection.execute(
                "SELECT vidgo_async_quota_back_off_v1($1, 'polls', 0.0625, 0.0)", namespace
            )
    finally:
        await connection.close()
    row = await quota_row(postgres_dsn, namespace)
    assert row["share"] == pytest.approx(0.25)


# ---------------------------------------------------------------- closing


@pytest.mark.asyncio
async def test_closing_the_quota_ends_pending_requests(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo
) -> None:
    """Requests queued for a token end with ClientClosedError when the quota closes."""
    quota = await make_quota()
    client = make_client(quota=quota, max_polls_per_second=1)
    (task_id,) = seed_running(fake, 1)
    await client.get_task(task_id)  # the one token of this second
    pending = [asyncio.ensure_future(client.get_task(task_id)) for _ in range(3)]
    await asyncio.sleep(0.1)
    assert not any(p.done() for p in pending)
    await quota.close()
    results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 2)
    assert all(isinstance(r, ClientClosedError) for r in results)
    with pytest.raises(ClientClosedError):
        await client.get_task(task_id)


@pytest.mark.asyncio
async def test_closing_a_client_leaves_the_quota_to_the_others(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo
) -> None:
    """A closed client's queued requests end; another client of the quota goes on."""
    quota = await make_quota()
    closing, staying = (make_client(quota=quota, max_polls_per_second=1) for _ in range(2))
    (task_id,) = seed_running(fake, 1)
    await closing.get_task(task_id)
    pending = asyncio.ensure_future(closing.get_task(task_id))
    await asyncio.sleep(0.1)
    await closing.aclose()
    with pytest.raises(ClientClosedError):
        await asyncio.wait_for(pending, 2)
    task = await asyncio.wait_for(staying.get_task(task_id), 5)
    assert task.task_id == task_id


# ---------------------------------------------------------------- the database


@pytest.mark.asyncio
async def test_a_lost_connection_is_made_again(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo, postgres_dsn: str
) -> None:
    """When the server drops the quota's connection, the next request reconnects and goes."""
    client = make_client(quota=await make_quota(max_lease=1), max_polls_per_second=CAP)
    (task_id,) = seed_running(fake, 1)
    await client.get_task(task_id)
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'vidgo-async quota'"
        )
    finally:
        await connection.close()
    task = await asyncio.wait_for(client.get_task(task_id), 10)
    assert task.task_id == task_id


@pytest.mark.asyncio
async def test_a_database_session_that_stops_answering_is_replaced(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo, postgres_dsn: str
) -> None:
    """The quota's database session stops answering (its server process frozen: a
    failover, a network that drops packets without a reset): its statement gives up after
    ``connect_timeout`` and a fresh session serves the next lease. Before, the quota waited
    on the frozen session for ever and every request of the client with it."""
    import os
    import signal

    client = make_client(quota=await make_quota(max_lease=1, connect_timeout=1.0))
    (task_id,) = seed_running(fake, 1)
    await client.get_task(task_id)
    admin = await asyncpg.connect(postgres_dsn)
    try:
        pids = await admin.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'vidgo-async quota'"
        )
        frozen = [row["pid"] for row in pids]
        try:
            for pid in frozen:
                os.kill(pid, signal.SIGSTOP)
        except PermissionError:
            pytest.skip("the database's processes are another user's (run as root)")
        try:
            task = await asyncio.wait_for(client.get_task(task_id), 15)
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
    finally:
        await admin.close()
    assert task.task_id == task_id


# ---------------------------------------------------------------- set-up


@pytest.mark.asyncio
async def test_an_unreachable_database_is_a_configuration_error(unused_tcp_port: int) -> None:
    """Starting a quota whose database does not answer raises ConfigurationError."""
    quota = SharedQuota(f"postgresql://vidgo@127.0.0.1:{unused_tcp_port}/x", namespace="n")
    with pytest.raises(ConfigurationError, match="cannot open the shared quota"):
        await quota.start()
    await quota.close()


def test_a_quota_must_be_open_before_its_clients() -> None:
    """A client of a quota that was never started is refused at once."""
    quota = SharedQuota("postgresql://vidgo@127.0.0.1:1/x", namespace="n")
    with pytest.raises(ConfigurationError, match="not open"):
        VidgoClient("key", quota=quota)


def test_a_quota_is_a_shared_quota() -> None:
    """Anything else as quota= is a TypeError."""
    with pytest.raises(TypeError, match="quota must be a SharedQuota"):
        VidgoClient("key", quota="postgresql://db")  # type: ignore[arg-type]


def test_the_dsn_stays_out_of_the_repr() -> None:
    """A password in the DSN never shows in the quota's repr."""
    quota = SharedQuota("postgresql://app:hunter2@db/app", namespace="prod")
    assert "hunter2" not in repr(quota)
    assert repr(quota) == "SharedQuota(namespace='prod')"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"namespace": ""}, ValueError),
        # PostgreSQL refuses these in text: every status read failed (retried to the
        # deadline) once the conversion was paid for.
        ({"namespace": "a\x00b"}, ValueError),
        ({"namespace": "a\ud800b"}, ValueError),
        ({"namespace": "n", "lease_seconds": 0.01}, ValueError),
        ({"namespace": "n", "max_lease": 0}, ValueError),
        ({"namespace": "n", "max_submits_per_second": "5"}, TypeError),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """Bad arguments raise before anything connects."""
    with pytest.raises(error):
        SharedQuota("postgresql://db", **kwargs)


def test_the_public_names_are_sorted_and_exist() -> None:
    """vidgo_async.postgres exports a sorted ``__all__`` of names that exist."""
    import vidgo_async.postgres

    names = list(vidgo_async.postgres.__all__)
    assert names == sorted(names)
    assert names == ["CallbackRelay", "QuotaStats", "RelayStats", "SharedJournal", "SharedQuota"]
    assert all(getattr(vidgo_async.postgres, name) for name in names)


@pytest.mark.parametrize("port", ["99999", "65536", "1" + "0" * 30])
@pytest.mark.asyncio
async def test_a_port_out_of_range_is_a_configuration_error(
    make_client: MakeClient, port: str
) -> None:
    """A DSN with a port past 65535 is a ConfigurationError from the quota, the relay and
    the journal alike (asyncpg's OverflowError escaped before), the password unquoted."""
    from vidgo_async.postgres import CallbackRelay, SharedJournal

    dsn = f"postgresql://app:pw-secret@127.0.0.1:{port}/app"
    with pytest.raises(ConfigurationError) as quota:
        async with SharedQuota(dsn, namespace="n"):
            pass
    with pytest.raises(ConfigurationError) as relay:
        async with CallbackRelay(dsn, secret="s" * 40):
            pass
    async with make_client() as client:
        with pytest.raises(ConfigurationError) as journal:
            async for _ in client.convert_many([("t", "a")], journal=SharedJournal(dsn)):
                pass
    for caught in (quota, relay, journal):
        assert "pw-secret" not in str(caught.value)


@pytest.mark.asyncio
async def test_after_a_lost_connection_no_lease_before_the_old_ones_stopped_counting(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo, postgres_dsn: str
) -> None:
    """The database dropped the quota's connection (as a crash does, whose recovery
    empties the unlogged tables while the leases granted before are still spent): the
    next lease waits until those could all have stopped counting (a lease's length and
    two windows), so that old and new leases never add up over the cap. It came at once."""
    quota = await make_quota()
    client = make_client(quota=quota, max_polls_per_second=CAP, retry=QUICK_RETRY)
    [task_id] = seed_running(fake, 1)
    await client.get_task(task_id)
    # The tokens in hand have run their course (a lease starts up to a window after its
    # grant and lives 0.5 s): the next request needs a new lease.
    await asyncio.sleep(2.0)
    admin = await asyncpg.connect(postgres_dsn)
    try:
        ended = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'vidgo-async quota' AND pid <> pg_backend_pid()"
        )
        assert ended >= 1
        # pg_terminate_backend only signals: wait until the backends are gone, as after a crash.
        for _ in range(250):  # 5 s at most
            if not await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'vidgo-async quota'"
            ):
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail("the quota's backends outlived pg_terminate_backend")
    finally:
        await admin.close()
    started = time.monotonic()
    await asyncio.wait_for(client.get_task(task_id), 10)
    assert time.monotonic() - started >= 2.0


@pytest.mark.asyncio
async def test_closing_the_client_leaves_no_unsent_submit_marked_as_sent(
    make_quota: MakeQuota, make_client: MakeClient, fake: FakeVidgo, tmp_path: Path
) -> None:
    """Submits queued under the shared submit cap when the client closes were never
    sent: their journal rows say so (not ``submitting``, "maybe accepted"), and the
    close does not wait the 10 s grace for them. (They were refused by the closed
    client after their row was written, and kept it.)"""
    quota = await make_quota(max_submits_per_second=1.0)
    client = make_client(quota=quota, max_polls_per_second=CAP)
    journal = tmp_path / "wav.sqlite"
    pairs = [("m", f"q{i}") for i in range(12)]
    consumer = asyncio.ensure_future(
        client.convert_many(pairs, concurrency=12, journal=journal).__anext__()
    )
    await asyncio.sleep(1.5)
    started = time.monotonic()
    await client.aclose()
    assert time.monotonic() - started < 5
    await asyncio.gather(consumer, return_exceptions=True)
    with contextlib.closing(sqlite3.connect(journal)) as db:
        rows = dict(db.execute("SELECT audio_id, state FROM conversions").fetchall())
    never_sent = rows.keys() - fake.accept_count.keys()
    assert never_sent  # the cap held most of them back
    assert {rows[audio_id] for audio_id in never_sent} <= {"unsent"}
