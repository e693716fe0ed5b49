"""The batch journal in PostgreSQL: workers on several hosts share one batch.

``convert_many(pairs, journal="postgresql://...")`` in N processes given the
same input: each pair is claimed by one worker at a time, under a lease on
the database's clock (``claimed_by``, ``lease_until``). A claim is one
``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` the row is free, this
worker's, or its lease expired: the row lock serializes rival claims, and the
loser gets no row back. A worker renews the leases of all its rows every
third of a lease, and keeps them until its batch ends; then it frees the
pairs left unfinished, and keeps the settled ones (finished, failed, unknown, rejected)
for one more lease, so that a worker of the same run starting late does not
report them again.

A pair another worker holds is not this one's to report: the batch sets it
aside, and once its own pairs are done looks again (:meth:`recheck`) every
third of a lease until each is settled (its holder reports it) or free. A
killed worker's unsettled pairs are free once its lease expires; the taker
resumes them as a SQLite re-run would (accepted: wait on the task; caught
mid-submit: resubmit with ``resumed=True``, the submit rule settles it). Its
settled pairs are taken only by a worker started after they settled: the
dead worker reported them in this run. A run started a lease or more after
the last worker ended is a re-run: it finds every row free and answers from
it.

Fencing: a worker paused past its lease (a GC pause, SIGSTOP, a partition
from the database) may find its pairs taken over. Every write of a claimed row
is therefore a compare-and-set on ``claimed_by``: it changes the row only if
this worker still holds it, under the row lock that also serializes claims, so
a write lands either before a takeover (the taker reads it) or not at all
(:class:`LostClaim`). Before each submit attempt and before reporting a result
the batch calls :meth:`PostgresJournal.hold`, the same compare-and-set
extending the lease: a worker that lost the pair sends and reports nothing for
it. A hold the database cannot answer (:class:`JournalWriteError`) sends nothing
more either, but the result is reported: one result too many beats one lost.
(The vendor API knows no fencing token: a pause between that check and the
request's bytes leaving stays possible, and the server's refusal of a second
conversion of one track covers it.) A task id accepted by a worker that then
lost the pair is still written where the row has none, and logged.

Rows are keyed by the pair alone, as a SQLite journal file's are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

try:
    import asyncpg  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise ImportError(
        "a PostgreSQL journal needs asyncpg: pip install 'vidgo-async[postgres]'"
    ) from exc

from .._batch.durations import dump_durations, load_durations
from .._batch.intake import Key
from .._batch.journal import (
    COLUMNS,
    SETTLED,
    Entry,
    JournalWriteError,
    LostClaim,
    entry_of,
)
from .._config import RetryPolicy
from .._timing.deadline import Deadline
from .._timing.schedules import retry_pauses
from .connect import (
    CONNECTION_ERRORS,
    DB_ERRORS,
    OPEN_ERRORS,
    check_ports,
    described,
    open_failure,
)

__all__ = ["LEASE_SECONDS", "PostgresJournal"]

logger = logging.getLogger("vidgo_async")

#: How long a worker's claim outlives its last renewal (renewed every third of it).
LEASE_SECONDS = 30.0
_CONNECT_TIMEOUT = 10.0
_STATEMENT_TIMEOUT = 10.0  # any statement (a lock held elsewhere, a frozen server): then fails
_OUTAGE = RetryPolicy(base_delay=0.05, max_delay=1.0)  # pauses through a lost connection
_SETUP_LOCK = 0x76696468  # pg_advisory_xact_lock key of the journal's set-up

SCHEMA = """
CREATE TABLE IF NOT EXISTS vidgo_async_journal (
    source_task_id text NOT NULL,
    audio_id text NOT NULL,
    state text,
    task_id text,
    wav_url text,
    path text,
    error_type text,
    error text,
    error_status integer,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    claimed_by text,
    lease_until timestamptz,
    -- When its holder last reported the pair with its row unsettled (a failure a re-run
    -- may mend): settled for the workers of that run, who neither wait for it nor take it.
    reported_at timestamptz,
    PRIMARY KEY (source_task_id, audio_id)
);
-- A journal made before reported_at (looked up first: an ALTER would wait for every lock).
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = 'vidgo_async_journal'::regclass
            AND attname = 'reported_at' AND NOT attisdropped) THEN
        ALTER TABLE vidgo_async_journal ADD COLUMN reported_at timestamptz;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS vidgo_async_journal_claimed
    ON vidgo_async_journal (claimed_by) WHERE claimed_by IS NOT NULL;
CREATE TABLE IF NOT EXISTS vidgo_async_journal_learned (model text PRIMARY KEY, summary text);
CREATE TABLE IF NOT EXISTS vidgo_async_journal_about (name text PRIMARY KEY, value text);
"""
_SETTLED = "(" + ", ".join(sorted(f"'{state.value}'" for state in SETTLED)) + ")"  # in SQL

_CLAIM = f"""
INSERT INTO vidgo_async_journal AS j (source_task_id, audio_id, claimed_by, lease_until)
    VALUES ($1, $2, $3, clock_timestamp() + make_interval(secs => $4))
    ON CONFLICT (source_task_id, audio_id) DO UPDATE
    SET claimed_by = excluded.claimed_by, lease_until = excluded.lease_until
    WHERE j.claimed_by = excluded.claimed_by
        OR (j.reported_at IS NULL OR j.reported_at < $5) AND (j.claimed_by IS NULL
            OR j.lease_until < clock_timestamp()
                AND (j.state IS NULL OR j.state NOT IN {_SETTLED} OR j.updated_at < $5))
    RETURNING {", ".join("j." + c for c in COLUMNS)}
"""
# Pairs other workers held, unsettled and not reported since this worker started: free
# (to claim) or still held.
_RECHECK = f"""
SELECT j.source_task_id, j.audio_id,
        j.claimed_by IS NULL OR j.lease_until < clock_timestamp() AS free
    FROM unnest($1::text[], $2::text[]) AS k(source_task_id, audio_id)
    JOIN vidgo_async_journal AS j USING (source_task_id, audio_id)
    WHERE (j.state IS NULL OR j.state NOT IN {_SETTLED})
        AND (j.reported_at IS NULL OR j.reported_at < $3)
"""
# Every write of a claimed row is fenced: only while this worker holds it (the claim
# inserted the row). Each write extends the lease too.
_RECORD = """
UPDATE vidgo_async_journal SET
    state = $3, task_id = COALESCE($4, task_id), wav_url = $5, path = $6, error_type = $7,
    error = $8, error_status = $9, updated_at = clock_timestamp(),
    lease_until = clock_timestamp() + make_interval(secs => $11)
    WHERE source_task_id = $1 AND audio_id = $2 AND claimed_by = $10
    RETURNING 1
"""
_HOLD = (
    "UPDATE vidgo_async_journal SET lease_until = clock_timestamp() + make_interval(secs => $4),"
    " reported_at = CASE WHEN $5 THEN clock_timestamp() ELSE reported_at END"
    " WHERE source_task_id = $1 AND audio_id = $2 AND claimed_by = $3 RETURNING 1"
)
# A task id is a fact about the track (the server converts a track once): kept even by a
# worker that lost the pair, where the row has none.
_KEEP_TASK_ID = (
    "UPDATE vidgo_async_journal SET task_id = $3"
    " WHERE source_task_id = $1 AND audio_id = $2 AND task_id IS NULL"
)
_RENEW = (
    "UPDATE vidgo_async_journal SET lease_until = clock_timestamp() + make_interval(secs => $2)"
    " WHERE claimed_by = $1"
)
# At a batch's end: the pairs left unfinished are free at once (a re-run resumes them), the
# settled ones stay this worker's for one more lease (a worker of the same run that comes late
# would otherwise report them again).
_RELEASE = (
    "UPDATE vidgo_async_journal SET"
    f" claimed_by = CASE WHEN state IN {_SETTLED} THEN claimed_by END,"
    f" lease_until = CASE WHEN state IN {_SETTLED}"
    " THEN clock_timestamp() + make_interval(secs => $2) END"
    " WHERE claimed_by = $1"
)
_LEARNED = "SELECT model, summary FROM vidgo_async_journal_learned"
# The row as committed, whoever inserted it (a read beside ON CONFLICT DO NOTHING would
# miss a row another worker is inserting at the same time).
_BIND = (
    "INSERT INTO vidgo_async_journal_about AS a VALUES ('api', $1)"
    " ON CONFLICT (name) DO UPDATE SET value = a.value RETURNING value"
)
_KEEP_LEARNED = (
    "INSERT INTO vidgo_async_journal_learned (model, summary) VALUES ($1, $2)"
    " ON CONFLICT (model) DO UPDATE SET summary = excluded.summary"
)


class PostgresJournal:
    """One worker's view of the shared journal: a small pool and a lease renewer.

    Use :meth:`open`; ``worker`` names this process in ``claimed_by``.
    """

    def __init__(self, pool: Any, *, lease_seconds: float, worker: str, started: Any) -> None:
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.started = started  # on the database's clock
        self._pool = pool
        self._renewer = asyncio.create_task(self._renew())

    @classmethod
    async def open(cls, dsn: str, *, lease_seconds: float | None = None) -> PostgresJournal:
        """Connect, create the tables if they are missing, and start renewing leases.

        Raises:
            ConfigurationError: The database cannot be reached or refuses the set-up.
        """
        try:
            check_ports(dsn)
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=4,
                timeout=_CONNECT_TIMEOUT,
                command_timeout=_STATEMENT_TIMEOUT,
                server_settings={"application_name": "vidgo-async journal"},
                reset=_keep_session,
            )
        except OPEN_ERRORS as exc:
            raise open_failure("the PostgreSQL journal", exc) from None
        try:
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _SETUP_LOCK)
                await connection.execute(SCHEMA)
                started = await connection.fetchval("SELECT clock_timestamp()")
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, OPEN_ERRORS):
                raise open_failure("the PostgreSQL journal", exc) from None
            raise
        worker = f"{uuid.uuid4().hex[:12]}@{time.time():.0f}"
        lease = LEASE_SECONDS if lease_seconds is None else lease_seconds
        return cls(pool, lease_seconds=lease, worker=worker, started=started)

    async def claim(self, source_task_id: str, audio_id: str) -> tuple[bool, Entry | None]:
        """Take the pair unless another worker holds it; its row if it has a state.

        Raises:
            JournalWriteError: The database failed (tried through half a lease).
        """
        args = (source_task_id, audio_id, self.worker, self.lease_seconds, self.started)
        try:
            row = await self._through_outages(self._pool.fetchrow, _CLAIM, *args)
        except DB_ERRORS as exc:
            raise JournalWriteError(f"could not claim the pair: {described(exc)}") from exc
        if row is None:
            return False, None
        if row["state"] is None:  # claimed, nothing recorded yet
            return True, None
        return True, entry_of(row[c] for c in COLUMNS)

    @property
    def recheck_every(self) -> float:
        """Seconds between two looks at the pairs other workers held."""
        return self.lease_seconds / 3

    async def recheck(self, keys: list[Key]) -> tuple[list[Key], list[Key]]:
        """Of pairs other workers held, the unsettled ones free now and those still held."""
        try:
            rows = await self._pool.fetch(
                _RECHECK, [k[0] for k in keys], [k[1] for k in keys], self.started
            )
        except DB_ERRORS as exc:  # all still held, as far as this worker can tell
            logger.warning("could not look at the pairs other workers hold: %s", exc)
            return [], keys
        free = [(r["source_task_id"], r["audio_id"]) for r in rows if r["free"]]
        held = [(r["source_task_id"], r["audio_id"]) for r in rows if not r["free"]]
        return free, held

    async def record(self, source_task_id: str, audio_id: str, entry: Entry) -> None:
        """Write the pair's new row (committed before this returns) if this worker
        still holds the pair.

        Raises:
            LostClaim: Another worker took the pair over; nothing was written (but
                the task id, where the row has none).
            JournalWriteError: The database could not be written (through a lost
                connection: for half a lease).
        """
        task_id = entry.task_id
        row = (
            source_task_id,
            audio_id,
            entry.state.value,
            task_id,
            entry.wav_url,
            entry.path,
            entry.error_type,
            entry.error,
            entry.error_status,
            self.worker,
            self.lease_seconds,
        )
        try:
            written = await self._through_outages(self._pool.fetchval, _RECORD, *row)
        except DB_ERRORS as exc:
            raise JournalWriteError(described(exc)) from exc
        if written is not None:
            return
        if task_id is not None:
            logger.warning(
                "task %s of %s/%s was accepted after this worker lost the pair",
                task_id,
                source_task_id,
                audio_id,
            )
            try:
                await self._pool.execute(_KEEP_TASK_ID, source_task_id, audio_id, task_id)
            except DB_ERRORS as exc:  # the taker's 409 settles it (or the next read)
                logger.warning("could not keep task %s in the journal: %s", task_id, exc)
        raise LostClaim(f"could not record {entry.state.value}: another worker took the pair over")

    async def hold(self, source_task_id: str, audio_id: str, *, reported: bool = False) -> None:
        """Confirm this worker's claim on the pair and extend its lease (``reported``: and
        mark the pair reported, its row unsettled: see :meth:`BatchJournal.hold`).

        Raises:
            LostClaim: Another worker took the pair over.
            JournalWriteError: The database cannot confirm the claim (through a lost
                connection: for half a lease).
        """
        try:
            held = await self._through_outages(
                self._pool.fetchval,
                _HOLD,
                source_task_id,
                audio_id,
                self.worker,
                self.lease_seconds,
                reported,
            )
        except DB_ERRORS as exc:
            raise JournalWriteError(f"cannot confirm the claim: {described(exc)}") from None
        if held is None:
            raise LostClaim("another worker took the pair over")

    async def bind(self, api: str) -> str | None:
        """See :meth:`BatchJournal.bind`.

        Raises:
            JournalWriteError: The database failed.
        """
        try:
            bound = await self._pool.fetchval(_BIND, api)
        except DB_ERRORS as exc:
            raise JournalWriteError(f"the journal's database failed: {described(exc)}") from None
        return None if bound == api else str(bound)

    async def learned(self) -> dict[str, list[tuple[float, float]]]:
        """The task durations an earlier run learned, per model; a failure is only
        logged (the batch starts cold)."""
        try:
            rows = await self._pool.fetch(_LEARNED)
        except DB_ERRORS as exc:
            logger.warning("could not read the learned durations: %s", described(exc))
            return {}
        return {r["model"]: load_durations(r["summary"]) for r in rows if r["summary"]}

    async def keep_learned(self, model: str, observations: list[tuple[float, float]]) -> None:
        """Save what was learned; a failure is only logged (a re-run starts cold)."""
        try:
            await self._pool.execute(_KEEP_LEARNED, model, dump_durations(observations))
        except DB_ERRORS as exc:
            logger.warning("could not save the learned durations to the journal: %s", exc)

    def ending(self) -> None:
        """Nothing to do: other workers wait on claims, not on the batch."""

    async def _through_outages(
        self, fetch: Callable[..., Awaitable[Any]], query: str, *args: Any
    ) -> Any:
        """``fetch(query, *args)`` (the pool's ``fetchval`` or ``fetchrow``), tried again
        through a lost connection (a restart, a failover) for up to half a lease, each
        attempt within what is left. Our loop, not backoff's decorator: the deadline
        bounds each attempt as well. An unsettled row stays claimed by this worker, and
        once the claim lapsed another worker would report its pair again; every
        statement here is idempotent.
        """
        deadline = Deadline.after(self.lease_seconds / 2)
        pauses = retry_pauses(_OUTAGE)
        while True:
            try:
                left = deadline.remaining()
                return await asyncio.wait_for(fetch(query, *args), left)
            except CONNECTION_ERRORS:
                if deadline.expired():
                    raise
                await asyncio.sleep(deadline.clamp(pauses.send(None)))

    async def close(self) -> None:
        """Stop renewing, give up this worker's claims, and disconnect."""
        self._renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewer
        try:
            await self._pool.execute(_RELEASE, self.worker, self.lease_seconds)
        except DB_ERRORS as exc:  # the leases expire anyway
            logger.warning("could not give up the journal's claims: %s", exc)
        finally:
            self._pool.terminate()

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:  # a renewal that stalls longer would let the next one come too late
                await self._pool.execute(
                    _RENEW, self.worker, self.lease_seconds, timeout=self.lease_seconds / 3
                )
            except DB_ERRORS as exc:
                logger.warning("could not renew the journal's claims: %s", exc)


async def _keep_session(connection: Any) -> None:
    """A pool's connection back from a use: nothing to reset, since the journal keeps no
    session state (no SET, LISTEN or session lock; its transactions end before).
    asyncpg's default reset is one more round trip per use, and a result written
    as settled is reported only after the write's use ends."""
