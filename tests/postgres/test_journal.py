"""convert_many with a PostgreSQL journal: workers sharing one batch, on a real server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

asyncpg = pytest.importorskip("asyncpg", reason="the postgres extra is not installed")

# Below the check: these import asyncpg.
from pg_server import a_server_of_its_own  # noqa: E402
from support import MakeClient  # noqa: E402

from vidgo_async import ConfigurationError, ConversionResult, VidgoClient  # noqa: E402
from vidgo_async._batch.journal import Entry, State  # noqa: E402
from vidgo_async._postgres import journal as pg_journal  # noqa: E402
from vidgo_async.postgres import SharedJournal  # noqa: E402
from vidgo_async.testing import FakeVidgo, Fault  # noqa: E402

WORKER = Path(__file__).with_name("journal_support.py")
LEASE = 1.0


@pytest.fixture
def prefix() -> str:
    """Audio ids of this test's own: the journal's rows are keyed by the pair alone."""
    return f"a{uuid.uuid4().hex[:8]}"


def pairs_of(prefix: str, count: int) -> list[tuple[str, str]]:
    return [("music", f"{prefix}-{i}") for i in range(count)]


async def run(
    client: VidgoClient, pairs: list[tuple[str, str]], dsn: str, *, lease: float | None = LEASE
) -> list[ConversionResult]:
    """A batch over ``pairs`` with a journal in ``dsn``: leases of a second, renewed every
    third of one (``lease=None``: given as a plain DSN, with the default lease)."""
    journal = dsn if lease is None else SharedJournal(dsn, lease_seconds=lease)
    return [r async for r in client.convert_many(pairs, journal=journal, concurrency=4)]


async def states(dsn: str, prefix: str) -> Counter[str | None]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT state FROM vidgo_async_journal WHERE audio_id LIKE $1", prefix + "-%"
        )
    finally:
        await connection.close()
    return Counter(r["state"] for r in rows)


@pytest.mark.asyncio
async def test_two_clients_share_a_batch_each_pair_converted_and_reported_once(
    postgres_dsn: str, make_client: MakeClient, fake: FakeVidgo, prefix: str
) -> None:
    pairs = pairs_of(prefix, 20)
    first, second = await asyncio.gather(
        run(make_client(), pairs, postgres_dsn), run(make_client(), pairs, postgres_dsn)
    )
    reported = Counter(r.audio_id for r in [*first, *second])
    assert reported == Counter(a for _, a in pairs)
    assert all(r.ok for r in [*first, *second])
    assert first and second  # both did a share
    assert {a: fake.accept_count[a] for _, a in pairs} == {a: 1 for _, a in pairs}
    # A re-run (once the leases ran out) answers every pair from the journal, converting nothing.
    await asyncio.sleep(LEASE + 0.2)
    again = await run(make_client(), pairs, postgres_dsn)
    assert sorted(r.audio_id for r in again) == sorted(a for _, a in pairs)
    assert all(r.ok for r in again)
    assert {a: fake.accept_count[a] for _, a in pairs} == {a: 1 for _, a in pairs}


@pytest.mark.asyncio
async def test_results_a_stopped_worker_never_reported_are_reported_by_another(
    postgres_dsn: str, make_fake: Any, make_client: MakeClient, prefix: str
) -> None:
    """A worker whose consumer stops (or dies) while finished results wait for it
    has not settled those pairs in the journal: the other worker of the run takes
    them over and reports them, so every pair is reported once across the two."""
    fake = await make_fake(run_time=0.2)
    pairs = pairs_of(prefix, 24)

    async def stops_after_one() -> list[ConversionResult]:
        journal = SharedJournal(postgres_dsn, lease_seconds=LEASE)
        batch = client_a.convert_many(pairs, journal=journal, concurrency=4)
        first = await anext(batch)
        await asyncio.sleep(1.0)  # results of its other pairs queue up meanwhile
        await batch.aclose()
        return [first]

    client_a, client_b = make_client(fake), make_client(fake)
    stopped, finished = await asyncio.gather(stops_after_one(), run(client_b, pairs, postgres_dsn))
    reported = Counter(r.audio_id for r in [*stopped, *finished])
    assert reported == Counter(a for _, a in pairs)
    assert all(r.ok for r in [*stopped, *finished])
    assert {a: fake.accept_count[a] for _, a in pairs} == {a: 1 for _, a in pairs}


@pytest.mark.asyncio
async def test_a_journal_of_another_api_is_refused_before_any_request(
    postgres_dsn: str, make_client: MakeClient, fake: FakeVidgo, prefix: str
) -> None:
    """The database's journal is tied to the API host of its first batch (this machine's
    fakes here): a client of another host is refused at the first iteration."""
    pairs = pairs_of(prefix, 2)
    assert all(r.ok for r in await run(make_client(), pairs, postgres_dsn))
    async with VidgoClient("k", base_url="https://api.vidgo.invalid") as client:
        with pytest.raises(ConfigurationError, match=r"not api\.vidgo\.invalid"):
            await run(client, pairs, postgres_dsn)


@pytest.mark.asyncio
async def test_workers_opening_a_fresh_journal_together_are_all_tied_to_their_api(
    postgres_dsn: str,
) -> None:
    """Four workers tie a journal with no host yet at once: each reads the host the
    first one wrote, none reads nothing (and is refused as of "the API at None")."""
    from vidgo_async._postgres.journal import PostgresJournal

    api = "a server on this machine"  # this test database's batches all use fakes
    for _ in range(5):
        journals = await asyncio.gather(*(PostgresJournal.open(postgres_dsn) for _ in range(4)))
        try:
            admin = await asyncpg.connect(postgres_dsn)
            try:
                await admin.execute("DELETE FROM vidgo_async_journal_about")
            finally:
                await admin.close()
            bound = await asyncio.gather(*(journal.bind(api) for journal in journals))
        finally:
            await asyncio.gather(*(journal.close() for journal in journals))
        assert bound == [None] * 4


@pytest.mark.asyncio
async def test_a_bad_dsn_is_a_configuration_error(make_client: MakeClient) -> None:
    from vidgo_async.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        await run(make_client(), [("music", "x")], "postgresql://nobody@127.0.0.1:1/none")


def _spawn(
    dsn: str, fake: FakeVidgo, count: int, out: Path, lease: float = LEASE, prefix: str = "audio"
) -> Any:
    """A worker process; its results in ``out``, its log in ``out`` + ``.log``."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WORKER.parent), *sys.path])}
    args = [dsn, fake.url, fake.api_key, str(lease), str(count), prefix]
    # The child keeps its own copies.
    with out.open("w") as stdout, out.with_suffix(".log").open("w") as stderr:
        return subprocess.Popen(
            [sys.executable, str(WORKER), *args], stdout=stdout, stderr=stderr, env=env
        )


def _lines(out: Path) -> Iterator[dict[str, Any]]:
    for line in out.read_text().splitlines():
        yield json.loads(line)


@pytest.mark.asyncio
async def test_two_processes_share_a_batch(
    postgres_dsn: str, fake: FakeVidgo, tmp_path: Path
) -> None:
    count = 16
    outs = [tmp_path / "one.jsonl", tmp_path / "two.jsonl"]
    # The journal's rows are keyed by the pair: clear the worker's ids first.
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute("DELETE FROM vidgo_async_journal WHERE audio_id LIKE 'audio-%'")
    except asyncpg.UndefinedTableError:
        pass
    finally:
        await connection.close()
    workers = [_spawn(postgres_dsn, fake, count, out, lease=10.0) for out in outs]
    for worker in workers:
        assert await asyncio.to_thread(worker.wait, 60) == 0
    seen = [[line["audio_id"] for line in _lines(out)] for out in outs]
    expected = [f"audio-{i}" for i in range(count)]
    assert sorted(seen[0] + seen[1]) == sorted(expected)
    assert {a: fake.accept_count[a] for a in expected} == dict.fromkeys(expected, 1)


@pytest.mark.asyncio
async def test_a_killed_workers_pairs_are_taken_over_after_its_lease(
    postgres_dsn: str, make_fake: Any, make_client: MakeClient, tmp_path: Path
) -> None:
    fake = await make_fake(run_time=3.0)
    count = 6
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute("DELETE FROM vidgo_async_journal WHERE audio_id LIKE 'audio-%'")
    except asyncpg.UndefinedTableError:
        pass
    finally:
        await connection.close()
    worker = _spawn(postgres_dsn, fake, count, tmp_path / "killed.jsonl", lease=3.0)
    try:
        deadline = time.monotonic() + 30
        while (await _safe_states(postgres_dsn, "audio"))["accepted"] < count:
            assert time.monotonic() < deadline, "the worker never got its tasks accepted"
            assert worker.poll() is None
            await asyncio.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    assert list(_lines(tmp_path / "killed.jsonl")) == []
    # Started while the dead worker's lease runs: this worker sets its pairs aside,
    # and takes them over once the lease has run out.
    pairs = [("music", f"audio-{i}") for i in range(count)]
    started = time.monotonic()
    taken = await run(make_client(fake), pairs, postgres_dsn)
    assert time.monotonic() - started > 1.0  # it waited for the lease
    assert sorted(r.audio_id for r in taken) == [a for _, a in pairs]
    assert all(r.ok for r in taken), taken
    assert {a: fake.accept_count[a] for _, a in pairs} == {a: 1 for _, a in pairs}


async def _safe_states(dsn: str, prefix: str) -> Counter[str | None]:
    try:
        return await states(dsn, prefix)
    except asyncpg.UndefinedTableError:
        return Counter()


def test_the_cli_takes_a_dsn_as_its_journal_and_hides_its_password() -> None:
    from vidgo_async._cli.checks import check_journal, journal_label

    dsn = "postgresql://app:secret@db.example/app"
    assert check_journal(dsn) == dsn
    assert journal_label(dsn) == "postgresql://app:***@db.example/app"
    assert journal_label("batch.sqlite") == "batch.sqlite"
    # libpq's query forms too (they were printed as given)
    query = "postgres://app@db/app?sslmode=require&password=S3cret&sslpassword=K3y"
    assert journal_label(query) == (
        "postgres://app@db/app?sslmode=require&password=***&sslpassword=***"
    )


async def left_mid_submit(dsn: str, audio_id: str, *, lease: float) -> None:
    """The pair's row as a worker killed during its submit leaves it (lease from now)."""
    journal = await pg_journal.PostgresJournal.open(dsn, lease_seconds=lease)
    try:
        await journal.claim("music", audio_id)
        await journal.record("music", audio_id, Entry.written(State.SUBMITTING))
    finally:
        journal._renewer.cancel()  # killed: no renewal, no release
        journal._pool.terminate()


@pytest.mark.asyncio
async def test_a_pair_left_mid_submit_is_resumed_by_the_409_rule_after_the_lease(
    postgres_dsn: str, make_fake: Any, make_client: MakeClient, prefix: str
) -> None:
    fake = await make_fake(conflict_includes_task_id=True)
    client = make_client(fake)
    audio_id = f"{prefix}-0"
    first = await client.submit_wav("music", audio_id)  # what the killed worker got accepted
    await left_mid_submit(postgres_dsn, audio_id, lease=LEASE)
    started = time.monotonic()
    (result,) = await run(client, [("music", audio_id)], postgres_dsn)
    assert time.monotonic() - started > LEASE / 2  # set aside while the lease ran
    assert result.ok and result.task_id == first.task_id
    assert fake.accept_count[audio_id] == 1


@pytest.mark.asyncio
async def test_a_pair_held_by_a_worker_that_never_settles_it_is_waited_for_a_bounded_time(
    postgres_dsn: str,
    make_client: MakeClient,
    fake: FakeVidgo,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A pair another live worker holds and never settles: the batch converts its own
    pairs, waits for that one no longer than its timeout and a lease, then ends without
    reporting it (it is its holder's), saying so in a WARNING."""
    held = f"{prefix}-held"
    holder = await pg_journal.PostgresJournal.open(postgres_dsn, lease_seconds=LEASE)
    try:
        assert (await holder.claim("music", held))[0]  # renewed while this test runs
        await holder.record("music", held, Entry.written(State.SUBMITTING))
        pairs = [("music", held), *pairs_of(prefix, 3)]
        client = make_client()
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="vidgo_async"):
            results = await asyncio.wait_for(
                collect(
                    client.convert_many(
                        pairs, journal=SharedJournal(postgres_dsn, lease_seconds=LEASE), timeout=1.0
                    )
                ),
                20,
            )
        elapsed = time.monotonic() - started
    finally:
        await holder.close()
    assert sorted(r.audio_id for r in results) == [a for _, a in pairs_of(prefix, 3)]
    assert 1.0 < elapsed < 1.0 + LEASE + 3
    assert any("held by other workers" in r.getMessage() for r in caplog.records)
    assert fake.accept_count[held] == 0


async def collect(results: Any) -> list[Any]:
    """Every item of an async iterator."""
    return [item async for item in results]


def _submits_for(fake: FakeVidgo, audio_id: str) -> list[int | None]:
    """The statuses the fake answered to the submits of ``audio_id``, in order."""
    return [
        r.status
        for r in fake.requests_to("submit")
        if isinstance(r.json, dict) and r.json.get("input", {}).get("audio_id") == audio_id
    ]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "statuses"),
    [
        # A's first attempt is refused: A is paused in its back-off, before the paid step.
        (Fault.rate_limited(retry_after="1"), [429, 200]),
        # A's submit is accepted but answered late: A is paused before journalling it.
        (Fault.slow(3.0), [200, 409]),
    ],
    ids=["paused-before-its-submit", "paused-with-its-submit-accepted"],
)
async def test_a_worker_paused_past_its_lease_is_fenced_off_its_pair(
    postgres_dsn: str,
    make_fake: Any,
    make_client: MakeClient,
    tmp_path: Path,
    prefix: str,
    fault: Fault,
    statuses: list[int],
) -> None:
    """A worker SIGSTOPped past its lease neither submits, writes nor reports the pair
    the other worker took over: one conversion, one result."""
    fake = await make_fake(conflict_includes_task_id=True)
    fake.inject(fault, route="submit")
    audio_id = f"{prefix}-0"
    out = tmp_path / "paused.jsonl"
    paused = _spawn(postgres_dsn, fake, 1, out, lease=LEASE, prefix=prefix)
    try:
        deadline = time.monotonic() + 30
        while not _submits_for(fake, audio_id):
            assert time.monotonic() < deadline, "the worker never submitted"
            assert paused.poll() is None
            await asyncio.sleep(0.01)
        paused.send_signal(signal.SIGSTOP)
        await asyncio.sleep(LEASE + 0.5)  # its lease runs out, unrenewed
        taken = await run(make_client(fake), [("music", audio_id)], postgres_dsn)
    finally:
        paused.send_signal(signal.SIGCONT)
    assert await asyncio.to_thread(paused.wait, 30) == 0
    assert list(_lines(out)) == []  # the paused worker reported nothing
    assert [(r.audio_id, r.ok) for r in taken] == [(audio_id, True)]
    assert fake.accept_count[audio_id] == 1
    assert _submits_for(fake, audio_id) == statuses  # nothing sent once the pair was lost
    assert "dropped" in out.with_suffix(".log").read_text()
    assert await states(postgres_dsn, prefix) == Counter({"finished": 1})


@pytest.mark.asyncio
async def test_a_lost_claim_refuses_writes_and_holds_but_keeps_a_task_id(
    postgres_dsn: str, prefix: str
) -> None:
    """Once another worker took the pair over, the loser's writes change nothing but a
    missing task id, and its hold fails."""
    from vidgo_async._batch.journal import LostClaim

    audio_id = f"{prefix}-0"
    async with _taken_over(postgres_dsn, audio_id, taker_lease=30.0) as (loser, taker):
        with pytest.raises(LostClaim):
            await loser.hold("music", audio_id)
        with pytest.raises(LostClaim):
            await loser.record(
                "music", audio_id, Entry.written(State.ACCEPTED, task_id="task-of-loser")
            )
        claimed, entry = await taker.claim("music", audio_id)
        assert claimed and entry is not None
        assert (entry.state, entry.task_id) == (State.SUBMITTING, "task-of-loser")
        await taker.hold("music", audio_id)
        await taker.record(
            "music", audio_id, Entry.written(State.FINISHED, task_id="task-of-loser")
        )
    assert await states(postgres_dsn, prefix) == Counter({"finished": 1})


@contextlib.asynccontextmanager
async def _taken_over(
    dsn: str, audio_id: str, *, taker_lease: float
) -> AsyncIterator[tuple[pg_journal.PostgresJournal, pg_journal.PostgresJournal]]:
    """Two workers' journals: the loser, paused (unrenewed) after journalling its submit
    of the pair, and the taker, which claimed the pair once the loser's lease ran out."""
    loser = await pg_journal.PostgresJournal.open(dsn, lease_seconds=1.0)
    taker = await pg_journal.PostgresJournal.open(dsn, lease_seconds=taker_lease)
    try:
        loser._renewer.cancel()  # paused: no renewal
        assert (await loser.claim("music", audio_id))[0]
        await loser.record("music", audio_id, Entry.written(State.SUBMITTING))
        assert not (await taker.claim("music", audio_id))[0]  # the lease still runs
        await asyncio.sleep(1.2)
        assert (await taker.claim("music", audio_id))[0]
        yield loser, taker
    finally:
        await taker.close()
        await loser.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("verdict", ["unclear", "409"])
async def test_a_task_id_kept_by_a_worker_that_lost_the_pair_is_waited_on_by_a_rerun(
    postgres_dsn: str, make_client: MakeClient, fake: FakeVidgo, prefix: str, verdict: str
) -> None:
    """A worker paused while its submit was accepted loses the pair; the taker's 409 names
    no task, so it settles the pair unknown (or failed), and the loser keeps its task id
    in that row. A re-run waits on that task and reports its WAV URL, submitting
    nothing: it reported SubmitOutcomeUnknownError (or the 409) for ever, though the
    journal named the paid task."""
    from vidgo_async._batch.journal import LostClaim
    from vidgo_async.errors import AlreadyConvertedError, SubmitOutcomeUnknownError

    audio_id = f"{prefix}-0"
    client = make_client()
    paid = await client.submit_wav("music", audio_id)  # the loser's submit, accepted
    if verdict == "unclear":
        error: Exception = SubmitOutcomeUnknownError(
            "may have been accepted", model="convert-to-wav", input={}
        )
        state = State.UNKNOWN
    else:
        error, state = AlreadyConvertedError("converted before", status=409), State.FAILED
    async with _taken_over(postgres_dsn, audio_id, taker_lease=1.0) as (loser, taker):
        await taker.record("music", audio_id, Entry.written(state, error=error))
        with pytest.raises(LostClaim):
            await loser.record(
                "music", audio_id, Entry.written(State.ACCEPTED, task_id=paid.task_id)
            )
    submits = fake.request_count("submit")
    await asyncio.sleep(1.2)  # the taker's lease runs out
    [result] = await run(make_client(), [("music", audio_id)], postgres_dsn)
    assert result.ok, result.error
    assert (result.task_id, fake.request_count("submit")) == (paid.task_id, submits)
    assert await states(postgres_dsn, prefix) == Counter({"finished": 1})


@pytest.mark.asyncio
async def test_workers_that_reported_each_others_set_aside_pairs_end_without_waiting(
    postgres_dsn: str, make_client: MakeClient, fake: FakeVidgo, prefix: str
) -> None:
    """Two workers, an outage on every submit: each reports its pairs failed (their rows
    stay unsettled, for a re-run) and set aside those the other held. Each stops waiting
    for them once the other reported them; they waited for each other until the
    patience ran out (timeout and a lease), reporting nothing more."""
    fake.inject(Fault.http_error(503), route="submit", times=10_000)
    pairs = pairs_of(prefix, 8)
    journal = SharedJournal(postgres_dsn, lease_seconds=4.0)

    async def worker(order: list[tuple[str, str]]) -> list[ConversionResult]:
        batch = make_client().convert_many(order, journal=journal, concurrency=4, timeout=1.0)
        return [result async for result in batch]

    started = time.monotonic()
    first, second = await asyncio.gather(worker(pairs), worker(pairs[::-1]))
    assert time.monotonic() - started < 4.0  # before: 1 s of timeout, then 1 + 4 s of patience
    reported = Counter(r.audio_id for r in [*first, *second])
    assert reported == Counter(a for _, a in pairs)  # each pair reported once
    assert not any(r.ok for r in [*first, *second])


@pytest.mark.asyncio
async def test_a_journal_made_before_reported_at_is_given_the_column(
    postgres_dsn: str, make_client: MakeClient, prefix: str
) -> None:
    """A journal table an earlier version made (no ``reported_at``) gets the column when
    a batch opens it, and the batch runs."""
    await run(make_client(), pairs_of(prefix, 1), postgres_dsn)  # the table exists
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute("ALTER TABLE vidgo_async_journal DROP COLUMN reported_at")
        results = await run(make_client(), pairs_of(prefix + "b", 2), postgres_dsn)
        columns = await admin.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'vidgo_async_journal' AND column_name = 'reported_at'"
        )
    finally:
        await admin.close()
    assert all(r.ok for r in results) and len(columns) == 1


@pytest.mark.asyncio
async def test_rows_edited_by_hand_are_refused_or_read_again(
    postgres_dsn: str, make_client: MakeClient, fake: FakeVidgo, prefix: str
) -> None:
    """A row in a state this version does not know (written by hand) gives the pair a
    ConfigurationError, nothing sent (it was a bare ValueError); a finished row whose
    URL was emptied has its task read again."""
    pairs = pairs_of(prefix, 2)
    first = await run(make_client(), pairs, postgres_dsn)
    admin = await asyncpg.connect(postgres_dsn)
    try:
        await admin.execute(
            "UPDATE vidgo_async_journal SET state = 'done' WHERE audio_id = $1", pairs[0][1]
        )
        await admin.execute(
            "UPDATE vidgo_async_journal SET wav_url = NULL WHERE audio_id = $1", pairs[1][1]
        )
    finally:
        await admin.close()
    await asyncio.sleep(LEASE * 1.2)  # the first run's claims run out
    again = {r.audio_id: r for r in await run(make_client(), pairs, postgres_dsn)}
    error = again[pairs[0][1]].error
    assert isinstance(error, ConfigurationError) and "'done'" in str(error), error
    assert again[pairs[1][1]].wav_url == next(r.wav_url for r in first if r.audio_id == pairs[1][1])
    assert all(fake.accept_count[audio] == 1 for _, audio in pairs)


@pytest.mark.slow
@pytest.mark.asyncio
async def test_a_result_the_database_missed_is_written_once_it_is_back(
    make_client: MakeClient, fake: FakeVidgo, prefix: str
) -> None:
    """Worker A reports a pair while the database is away longer than half a lease (its
    journal write given up), worker B waits for that pair: A writes the result again
    once the database is back, and B ends at its next look. (The row stayed unsettled:
    B waited the pair's timeout and three of its rechecks while A lived, a fleet idle
    ~15 minutes after an outage of 15 s with the defaults, and once A's batch ended and
    let the pair go, B took it and reported it again.) Each track is converted once."""
    quick, slow = ("music", f"{prefix}-0"), ("music", f"{prefix}-1")
    fake.set_duration(slow[1], queue_time=0.0, run_time=1.0)
    async with a_server_of_its_own() as (server, dsn):
        a = make_client().convert_many(
            [quick, slow], journal=SharedJournal(dsn, lease_seconds=8), timeout=20
        )
        b: Any = None
        try:
            assert (await asyncio.wait_for(anext(a), 10)).audio_id == quick[1]
            # B holds nothing of its own: it finds the slow pair held, and looks every 10 s.
            b_journal = SharedJournal(dsn, lease_seconds=30)
            b = asyncio.create_task(collect(make_client().convert_many([slow], journal=b_journal)))
            await asyncio.sleep(1.5)  # the slow task finished: its result waits in A's queue
            await asyncio.to_thread(server.halt, "immediate")
            try:
                taken = asyncio.create_task(anext(a))  # its write waits out half a lease
                assert (await asyncio.wait_for(taken, 10)).audio_id == slow[1]
            finally:
                await asyncio.to_thread(server.resume)
            resumed = time.monotonic()
            assert [r.audio_id async for r in a] == []  # A ends, writing the result first
            assert await asyncio.wait_for(b, 25) == []  # A reported the pair, not B
            assert time.monotonic() - resumed < 15
        finally:
            await a.aclose()
            if b is not None:
                b.cancel()
                await asyncio.gather(b, return_exceptions=True)
        assert await states(dsn, prefix) == Counter({"finished": 2})
    assert fake.accept_count[quick[1]] == fake.accept_count[slow[1]] == 1


@pytest.mark.asyncio
async def test_the_lease_setting_is_the_journals_lease(
    postgres_dsn: str, make_client: MakeClient, prefix: str
) -> None:
    """SharedJournal(lease_seconds=...) sets how long a claim lives (30 s by default)."""
    from vidgo_async.postgres import SharedJournal

    async def lease_left(audio_id: str) -> float:
        connection = await asyncpg.connect(postgres_dsn)
        try:
            left: float = await connection.fetchval(
                "SELECT extract(epoch FROM lease_until - clock_timestamp())::float8"
                " FROM vidgo_async_journal WHERE audio_id = $1",
                audio_id,
            )
        finally:
            await connection.close()
        return left

    client = make_client()
    short = [("music", f"{prefix}-short")]
    results = [
        r
        async for r in client.convert_many(
            short, journal=SharedJournal(postgres_dsn, lease_seconds=2)
        )
    ]
    assert [r.ok for r in results] == [True]
    assert 0 < await lease_left(f"{prefix}-short") <= 2  # a settled pair is kept one lease
    default = [("music", f"{prefix}-default")]
    assert [r.ok for r in await run(client, default, postgres_dsn, lease=None)] == [True]
    assert 2 < await lease_left(f"{prefix}-default") <= pg_journal.LEASE_SECONDS


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        (("postgresql://db/app",), {"lease_seconds": 0.5}, ValueError),
        (("postgresql://db/app",), {"lease_seconds": 3601}, ValueError),
        (("postgresql://db/app",), {"lease_seconds": float("nan")}, ValueError),
        (("postgresql://db/app",), {"lease_seconds": float("inf")}, ValueError),
        (("postgresql://db/app",), {"lease_seconds": "30"}, TypeError),
        (("postgresql://db/app",), {"lease_seconds": True}, TypeError),
        (("batch.sqlite",), {}, ValueError),
        ((b"postgresql://db/app",), {}, TypeError),
    ],
)
def test_bad_journal_options_are_refused_before_any_connection(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception]
) -> None:
    """SharedJournal checks its arguments when made, before convert_many connects."""
    from vidgo_async.postgres import SharedJournal

    with pytest.raises(error):
        SharedJournal(*args, **kwargs)


def test_a_shared_journals_repr_hides_its_dsn() -> None:
    """The DSN may carry a password: the repr shows the lease only."""
    from vidgo_async.postgres import SharedJournal

    assert (
        repr(SharedJournal("postgresql://app:secret@db/app")) == "SharedJournal(lease_seconds=30.0)"
    )


BENCHMARK = Path(__file__).parents[2] / "benchmarks" / "multihost_batch.py"


@pytest.mark.asyncio
async def test_a_fleet_with_a_worker_killed_converts_and_reports_each_pair_once(
    postgres_dsn: str,
) -> None:
    """The multi-host benchmark, small: 3 worker processes with one journal and one
    shared quota, one SIGKILLed a third of the way: every pair converted once and
    reported once across the fleet, the cap held on the wire."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCHMARK),
        *("--dsn", postgres_dsn, "--processes", "3", "--pairs", "300", "--lease", "2"),
        *("--cap", "40", "--json"),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode == 0
    report = json.loads(out.decode().strip().splitlines()[-1])
    assert report["killed after"] is not None
    assert report["created once"] == 300, report
    assert report["reported twice+"] == 0, report
    # A worker SIGKILLed between settling a pair in the journal and printing its result
    # (a few milliseconds per result; its consumer takes one at a time) leaves that
    # one pair unreported in the run; the journal has it for a re-run.
    assert report["not reported"] <= 1, report
    assert report["reported once"] + report["not reported"] == 300, report
    assert report["max any 1 s"] <= 40


@pytest.mark.asyncio
async def test_a_short_database_outage_leaves_no_pair_unsettled(
    make_client: MakeClient, fake: FakeVidgo, prefix: str
) -> None:
    """The database restarts (down a second or two) while results are being settled: the
    writes are tried again, so every row ends finished and every pair is reported once.
    An unsettled row stayed claimed by its worker: another worker reported the pair
    again once the claim lapsed, and waited ``timeout`` and a lease for it first."""
    async with a_server_of_its_own() as (server, dsn):
        pairs = pairs_of(prefix, 40)
        for _, audio_id in pairs:
            fake.set_duration(audio_id, queue_time=0.0, run_time=1.5)
        client = make_client()
        journal = SharedJournal(dsn, lease_seconds=10.0)
        results: list[ConversionResult] = []

        async def batch() -> None:
            async for result in client.convert_many(pairs, journal=journal, concurrency=40):
                results.append(result)

        running = asyncio.create_task(batch())
        await asyncio.sleep(1.0)  # all submitted; they end at 1.5 s, during the outage
        await asyncio.to_thread(server.restart, 1.0)
        await asyncio.wait_for(running, 30)
        assert Counter(r.audio_id for r in results) == Counter(a for _, a in pairs)
        assert all(r.ok for r in results)
        assert await states(dsn, prefix) == Counter({"finished": 40})


@pytest.mark.asyncio
async def test_closing_the_client_ends_a_shared_batch_without_retrying_its_journal(
    postgres_dsn: str, make_fake: Any, make_client: MakeClient, prefix: str
) -> None:
    """The client closed under a loop still taking results: the results queued are
    reported at once, unsettled (their pairs stay accepted for another worker), and the
    loop ends with ClientClosedError. (Each one's write went to the closed journal,
    retried for half a lease: 15 s a result.)"""
    from vidgo_async import ClientClosedError

    fake = await make_fake(run_time=0.1)
    pairs = pairs_of(prefix, 12)
    for _, audio_id in pairs[6:]:  # these keep the batch running
        fake.set_duration(audio_id, run_time=60)
    client = make_client(fake)
    reported: list[ConversionResult] = []

    async def slow_consumer() -> None:
        async for result in client.convert_many(pairs, journal=postgres_dsn, concurrency=4):
            reported.append(result)
            if len(reported) == 1:
                await asyncio.sleep(1.0)  # the other results queue up meanwhile
                asyncio.get_running_loop().call_soon(asyncio.ensure_future, client.aclose())

    started = time.monotonic()
    with pytest.raises(ClientClosedError):
        await asyncio.wait_for(slow_consumer(), 60)
    assert time.monotonic() - started < 10
    assert sorted(r.audio_id for r in reported) == sorted(a for _, a in pairs)
    assert all(r.task_id for r in reported)


@pytest.mark.asyncio
async def test_a_result_being_settled_as_the_client_closes_is_still_reported(
    postgres_dsn: str, make_fake: Any, make_client: MakeClient, prefix: str
) -> None:
    """The client closes while the loop's batch writes a finished pair to the journal:
    the journal is closed only once that write is done, and the pair is reported (it
    was dropped: the close gave up this worker's claims under the write)."""
    from vidgo_async import ClientClosedError
    from vidgo_async._postgres.journal import PostgresJournal

    settling = asyncio.Event()

    class SlowSettle:
        async def open_batch_journal(self) -> object:
            journal = await PostgresJournal.open(postgres_dsn)
            record = journal.record

            async def slow(source_task_id: str, audio_id: str, entry: Entry) -> None:
                if entry.state is State.FINISHED:
                    settling.set()
                    await asyncio.sleep(0.5)
                await record(source_task_id, audio_id, entry)

            journal.record = slow  # type: ignore[method-assign]
            return journal

    fake = await make_fake(run_time=0.05)
    quick, slow_pair = pairs_of(prefix, 2)
    fake.set_duration(slow_pair[1], run_time=60)  # keeps the batch running
    client = make_client(fake)
    reported: list[ConversionResult] = []

    async def consume() -> None:
        async for result in client.convert_many([quick, slow_pair], journal=SlowSettle()):
            reported.append(result)

    consumer = asyncio.create_task(consume())
    await asyncio.wait_for(settling.wait(), 10)
    await asyncio.sleep(0.1)
    await asyncio.wait_for(client.aclose(), 10)
    with pytest.raises(ClientClosedError):
        await asyncio.wait_for(consumer, 10)
    assert [(r.audio_id, r.ok) for r in reported][:1] == [(quick[1], True)]


@contextlib.asynccontextmanager
async def _locked(dsn: str, mode: str, table: str = "vidgo_async_journal") -> AsyncIterator[None]:
    """A session of another program holding ``mode`` on ``table`` in an open transaction
    (a migration, a stuck ``psql``) for the block."""
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute("BEGIN")
        await admin.execute(f"LOCK TABLE {table} IN {mode} MODE")
        yield
    finally:
        await admin.close()


@pytest.mark.asyncio
async def test_a_journal_that_stops_answering_fails_its_pairs_in_bounded_time_sending_nothing(
    postgres_dsn: str, make_client: MakeClient, fake: FakeVidgo, prefix: str, monkeypatch: Any
) -> None:
    """Another session locks the journal's table against writes (it still opens): each
    claim gives up after the statement timeout, tried again through half a lease, and
    the pair's result is a ConfigurationError saying nothing was sent. Before, the claim
    waited for the lock for ever and the batch hung."""
    monkeypatch.setattr(pg_journal, "_STATEMENT_TIMEOUT", 0.5)
    await run(make_client(), pairs_of(prefix, 1), postgres_dsn)  # the tables exist
    fake.reset_log()
    async with _locked(postgres_dsn, "SHARE"):  # reads go on; inserts and updates wait
        started = time.monotonic()
        results = await asyncio.wait_for(
            run(make_client(), pairs_of(prefix + "b", 3), postgres_dsn), 30
        )
        elapsed = time.monotonic() - started
    assert [type(r.error) for r in results] == [ConfigurationError] * 3
    assert all("nothing was sent" in str(r.error) for r in results)
    assert fake.requests == []
    assert elapsed < 10  # half a lease (0.5 s) of 0.5 s attempts, for the pairs at once


@pytest.mark.asyncio
async def test_a_journal_whose_set_up_cannot_finish_is_a_configuration_error_before_any_request(
    postgres_dsn: str, make_client: MakeClient, fake: FakeVidgo, prefix: str, monkeypatch: Any
) -> None:
    """The set-up (CREATE ... IF NOT EXISTS) waits for a lock another session holds: the
    batch fails with ConfigurationError after the statement timeout, having sent nothing.
    Before, it waited for the lock for ever."""
    monkeypatch.setattr(pg_journal, "_STATEMENT_TIMEOUT", 0.5)
    await run(make_client(), pairs_of(prefix, 1), postgres_dsn)  # the tables exist
    fake.reset_log()
    async with _locked(postgres_dsn, "ACCESS EXCLUSIVE"):
        with pytest.raises(ConfigurationError, match="cannot open the PostgreSQL journal"):
            await asyncio.wait_for(run(make_client(), pairs_of(prefix, 2), postgres_dsn), 30)
    assert fake.requests == []


@pytest.mark.asyncio
async def test_learned_durations_that_cannot_be_read_start_the_batch_cold(
    postgres_dsn: str,
    make_client: MakeClient,
    fake: FakeVidgo,
    prefix: str,
    monkeypatch: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The table of learned durations is locked by another session: the batch starts
    without them (a warning), its pairs converted. Before, the read waited for ever."""
    monkeypatch.setattr(pg_journal, "_STATEMENT_TIMEOUT", 0.5)
    await run(make_client(), pairs_of(prefix, 1), postgres_dsn)  # the tables exist
    with caplog.at_level(logging.WARNING, logger="vidgo_async"):
        async with _locked(postgres_dsn, "ACCESS EXCLUSIVE", "vidgo_async_journal_learned"):
            results = await asyncio.wait_for(
                run(make_client(), pairs_of(prefix + "c", 2), postgres_dsn), 30
            )
    assert all(r.ok for r in results)
    assert "learned durations" in caplog.text


@pytest.mark.asyncio
async def test_a_journal_that_cannot_confirm_a_claim_before_a_retry_reports_the_pair_unsent(
    postgres_dsn: str, make_client: MakeClient, fake: FakeVidgo, prefix: str, monkeypatch: Any
) -> None:
    """A single worker: the pair's first submit is refused (429, Retry-After 1 s); during
    the pause another session locks the journal, so the retry cannot confirm the claim.
    Nothing more is sent, and the pair's result says so. Before, a database that could
    not answer counted as "another worker took the pair over": the pair was dropped,
    unreported (there was no other worker)."""
    monkeypatch.setattr(pg_journal, "_STATEMENT_TIMEOUT", 0.5)
    fake.inject(Fault.rate_limited(retry_after="1"), route="submit")
    pairs = pairs_of(prefix, 1)
    batch = asyncio.create_task(run(make_client(), pairs, postgres_dsn))
    async with asyncio.timeout(5):
        while not fake.requests_to("submit"):  # noqa: ASYNC110 - the fake's log is no event
            await asyncio.sleep(0.01)
    async with _locked(postgres_dsn, "ACCESS EXCLUSIVE"):
        [result] = await asyncio.wait_for(batch, 20)
    assert isinstance(result.error, ConfigurationError), result.error
    assert "nothing more was sent" in str(result.error)
    assert len(fake.requests_to("submit")) == 1


@pytest.mark.asyncio
async def test_a_failed_result_whose_claim_cannot_be_confirmed_is_still_reported(
    postgres_dsn: str, make_client: MakeClient, fake: FakeVidgo, prefix: str, monkeypatch: Any
) -> None:
    """A single worker: the pair's wait times out while another session holds the
    journal locked, so the claim cannot be confirmed before the result is reported. The
    result is reported all the same (its row keeps the task for a re-run). Before, it
    was dropped as if another worker held the pair."""
    from vidgo_async import TaskTimeoutError

    monkeypatch.setattr(pg_journal, "_STATEMENT_TIMEOUT", 0.5)
    pairs = pairs_of(prefix, 1)
    fake.set_duration(pairs[0][1], run_time=60)
    client = make_client()
    journal = SharedJournal(postgres_dsn, lease_seconds=LEASE)
    batch = asyncio.create_task(_collect(client.convert_many(pairs, journal=journal, timeout=1.5)))
    await asyncio.sleep(1.0)  # submitted and journalled; the wait ends at 1.5 s
    async with _locked(postgres_dsn, "ACCESS EXCLUSIVE"):
        [result] = await asyncio.wait_for(batch, 20)
    assert isinstance(result.error, TaskTimeoutError), result.error
    assert result.task_id is not None
    assert await states(postgres_dsn, prefix) == Counter({"accepted": 1})


async def _collect(results: Any) -> list[ConversionResult]:
    return [result async for result in results]


@pytest.mark.asyncio
async def test_a_re_run_within_a_lease_says_why_it_reports_nothing(
    postgres_dsn: str, make_client: MakeClient, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A finished batch re-run at once on its PostgreSQL journal: its worker still holds
    the finished pairs for a lease (so that a late worker of the same run does not report
    them again), and the re-run reports none of them. It says so in a warning, which
    the CLI prints; before, it ended silently (and the CLI said the input was empty)."""
    pairs = pairs_of(prefix, 3)
    assert all(r.ok for r in await run(make_client(), pairs, postgres_dsn, lease=30.0))
    with caplog.at_level(logging.WARNING, logger="vidgo_async"):
        again = await asyncio.wait_for(run(make_client(), pairs, postgres_dsn, lease=30.0), 30)
    assert again == []
    assert "3 pairs not reported here" in caplog.text


@pytest.mark.asyncio
async def test_a_stop_that_cuts_the_journal_write_of_an_accepted_task_names_the_task(
    postgres_dsn: str,
    make_client: MakeClient,
    fake: FakeVidgo,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The batch is left while a submit is out; it is accepted, but another session's
    lock holds the journal write of the task past the stop's grace (``Timeouts.total``
    + 2 s): the stop cuts the write, and a WARNING names the task. Before, the warning
    said only that the pair "may have been accepted": a re-run met a 409 naming
    nothing, and the paid task could not be found."""
    from vidgo_async import Timeouts

    await run(make_client(), pairs_of(prefix, 1), postgres_dsn)  # the tables exist
    client = make_client(timeouts=Timeouts(connect=1, total=1))
    caplog.set_level(logging.WARNING, logger="vidgo_async")
    fake.inject(Fault.slow(0.5), route="submit")
    [pair] = pairs_of(prefix + "x", 1)

    async def consume() -> None:
        async for _ in client.convert_many([pair], journal=postgres_dsn):
            pass

    consumer = asyncio.create_task(consume())
    async with asyncio.timeout(10):
        while fake.request_count("submit") < 2:  # noqa: ASYNC110 - the fake's log is no event
            await asyncio.sleep(0.01)  # out, answered in 0.5 s
    async with _locked(postgres_dsn, "SHARE"):  # the task's row waits: past the grace
        consumer.cancel()  # the loop is left: the batch stops
        await asyncio.wait_for(asyncio.gather(consumer, return_exceptions=True), 15)
    [task_id] = fake.accepted[pair[1]]
    named = [r.getMessage() for r in caplog.records if task_id in r.getMessage()]
    assert any("not journalled" in message for message in named), caplog.text
