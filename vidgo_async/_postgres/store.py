"""The shared quota's state in PostgreSQL: its tables, its SQL, and the one connection.

Per namespace and kind of request (``bucket``: ``"polls"``, ``"submits"``),
a row in ``vidgo_async_quota`` holds the pause and the backed-off share that
every sharer reads at its next lease, and serializes the grants
(``SELECT ... FOR UPDATE``); ``vidgo_async_quota_lease`` holds the leases that
still count. A lease is one call of ``vidgo_async_quota_lease_v1``: one round
trip, on the database's clock (``clock_timestamp()`` once the row is locked),
so that the hosts' clocks never matter. Both tables are UNLOGGED: a quota is
worth nothing after a crash of the database. The leases granted before one are
still being spent, though, and the emptied tables would grant as many again: so
after its connection was lost, a store grants itself no lease before the leases
of the time could all have started, ended and stopped counting (a lease's length
and two windows), whether the tables survived (a clean restart) or not.

The rule the function keeps (see ``leased.py`` for the client's half): a
lease that starts at ``s`` and ends at ``e`` counts until ``e + window``, and
a lease starts only where the leases still counting, itself included, hold
at most ``limit`` tokens. Leases of a row start in the order they are
granted, so every window-long span then meets at most ``limit`` tokens that
could be spent in it. When there is no room now, the lease is granted at
once to start when there will be (within a window): a busy process makes
one round trip per lease, and the processes of a namespace are served in
turn rather than racing for each token that frees up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

try:
    # asyncpg ships no type hints: this module is its one user, and what it
    # returns is read into typed values here.
    import asyncpg  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - the extra is installed wherever tests run
    raise ImportError(
        "vidgo_async.postgres needs asyncpg: pip install 'vidgo-async[postgres]'"
    ) from exc

from .._timing.limits import MIN_SHARE, RECOVERY
from ..errors import ClientClosedError, ConfigurationError, TransportError
from .connect import DB_ERRORS, MALFORMED_DSN, check_ports, open_failure
from .leased import Lease, Spent

__all__ = ["BucketSource", "QuotaStore"]

logger = logging.getLogger("vidgo_async")

T = TypeVar("T")

_SETUP_LOCK = 0x76696467  # pg_advisory_xact_lock key: one schema set-up at a time ("vidg")
_MAX_WAIT = 60.0  # a sleeping limiter asks again at least this often
_MIN_WAIT = 0.001

SCHEMA = """
CREATE UNLOGGED TABLE IF NOT EXISTS vidgo_async_quota (
    namespace text NOT NULL,
    bucket text NOT NULL,
    paused_until timestamptz NOT NULL DEFAULT '-infinity',
    share double precision NOT NULL DEFAULT 1,
    shared_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_lease bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, bucket)
);
CREATE UNLOGGED TABLE IF NOT EXISTS vidgo_async_quota_lease (
    namespace text NOT NULL,
    bucket text NOT NULL,
    lease_id bigint NOT NULL,
    starts timestamptz NOT NULL,
    ends timestamptz NOT NULL,
    tokens integer NOT NULL,
    PRIMARY KEY (namespace, bucket, lease_id)
);

-- The share of the rate in force: halved by a back-off, recovering linearly.
CREATE OR REPLACE FUNCTION vidgo_async_quota_share_v1(
    p_share double precision, p_shared_at timestamptz, p_at timestamptz,
    p_recovery double precision)
RETURNS double precision LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_share >= 1 THEN 1.0::double precision
        ELSE least(1.0, p_share
            + extract(epoch FROM p_at - p_shared_at)::double precision * p_recovery) END
$$;

CREATE OR REPLACE FUNCTION vidgo_async_quota_lease_v1(
    p_namespace text, p_bucket text, p_limit integer, p_window double precision,
    p_want integer, p_seconds double precision,
    p_spent_id bigint, p_spent_after double precision, p_recovery double precision,
    OUT o_lease bigint, OUT o_tokens integer, OUT o_wait double precision)
LANGUAGE plpgsql AS $$
DECLARE
    q vidgo_async_quota;
    t timestamptz;
    w interval := make_interval(secs => p_window);
    cap integer;
    base timestamptz;
    s timestamptz;
    room integer;
BEGIN
    o_tokens := 0;
    INSERT INTO vidgo_async_quota (namespace, bucket) VALUES (p_namespace, p_bucket)
        ON CONFLICT DO NOTHING;
    SELECT * INTO STRICT q FROM vidgo_async_quota r
        WHERE r.namespace = p_namespace AND r.bucket = p_bucket FOR UPDATE;
    -- Read once the row is locked: the grants of a row are made in time order.
    t := clock_timestamp();
    IF p_spent_id IS NOT NULL THEN
        UPDATE vidgo_async_quota_lease l
            SET ends = least(l.ends, l.starts + make_interval(secs => p_spent_after))
            WHERE l.namespace = p_namespace AND l.bucket = p_bucket AND l.lease_id = p_spent_id;
    END IF;
    DELETE FROM vidgo_async_quota_lease l
        WHERE l.namespace = p_namespace AND l.bucket = p_bucket AND l.ends <= t - w;
    cap := greatest(1, floor(p_limit
        * vidgo_async_quota_share_v1(q.share, q.shared_at, t, p_recovery)));
    -- A lease starts no earlier than now, the end of a pause, or any lease before it;
    -- so at its start, the leases that still count are all it can share a span with.
    SELECT greatest(t, q.paused_until, max(l.starts)) INTO base FROM vidgo_async_quota_lease l
        WHERE l.namespace = p_namespace AND l.bucket = p_bucket;
    -- The first instant from there with room: base, or when a lease stops counting.
    SELECT c.at, c.room INTO s, room FROM (
        SELECT x.at, cap - (SELECT coalesce(sum(l.tokens), 0) FROM vidgo_async_quota_lease l
                WHERE l.namespace = p_namespace AND l.bucket = p_bucket AND l.ends > x.at - w)
            AS room
        FROM (SELECT base AS at UNION ALL
              SELECT l.ends + w FROM vidgo_async_quota_lease l
              WHERE l.namespace = p_namespace AND l.bucket = p_bucket AND l.ends + w > base) x
    ) c WHERE c.room > 0 ORDER BY c.at LIMIT 1;
    o_wait := extract(epoch FROM s - t);
    IF s > t + w THEN
        RETURN;  -- too far ahead (a long pause): ask again then
    END IF;
    -- Granted now, to start in o_wait seconds: one round trip per lease, busy or not.
    o_tokens := least(room, p_want);
    o_lease := q.last_lease + 1;
    UPDATE vidgo_async_quota r SET last_lease = o_lease
        WHERE r.namespace = p_namespace AND r.bucket = p_bucket;
    INSERT INTO vidgo_async_quota_lease
        VALUES (p_namespace, p_bucket, o_lease, s, s + make_interval(secs => p_seconds), o_tokens);
END
$$;

CREATE OR REPLACE FUNCTION vidgo_async_quota_pause_v1(
    p_namespace text, p_bucket text, p_seconds double precision)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO vidgo_async_quota AS r (namespace, bucket, paused_until)
        VALUES (p_namespace, p_bucket, clock_timestamp() + make_interval(secs => p_seconds))
        ON CONFLICT (namespace, bucket)
        DO UPDATE SET paused_until = greatest(r.paused_until, excluded.paused_until)
$$;

-- Halved once a window: the 429s answering requests sent before the last halving
-- say nothing new.
CREATE OR REPLACE FUNCTION vidgo_async_quota_back_off_v2(
    p_namespace text, p_bucket text, p_floor double precision, p_recovery double precision,
    p_window double precision)
RETURNS void LANGUAGE sql AS $$
    UPDATE vidgo_async_quota r
        SET share = greatest(p_floor, vidgo_async_quota_share_v1(
                r.share, r.shared_at, clock_timestamp(), p_recovery) / 2),
            shared_at = clock_timestamp()
        WHERE r.namespace = p_namespace AND r.bucket = p_bucket
            AND (r.share >= 1 OR r.shared_at <= clock_timestamp() - make_interval(secs => p_window))
$$;

-- What older sharers call: halved at every call.
CREATE OR REPLACE FUNCTION vidgo_async_quota_back_off_v1(
    p_namespace text, p_bucket text, p_floor double precision, p_recovery double precision)
RETURNS void LANGUAGE sql AS $$
    SELECT vidgo_async_quota_back_off_v2(p_namespace, p_bucket, p_floor, p_recovery, 0)
$$;
"""

_LEASE = (
    "SELECT o_lease, o_tokens, o_wait"
    " FROM vidgo_async_quota_lease_v1($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
_PAUSE = "SELECT vidgo_async_quota_pause_v1($1, $2, $3)"
_BACK_OFF = "SELECT vidgo_async_quota_back_off_v2($1, $2, $3, $4, $5)"


class QuotaStore:
    """One namespace's quota rows, through one connection used by one call at a time.

    One connection rather than a pool: a pool resets a connection after each
    use, a second round trip per lease. Calls run in tasks of their own, so
    that a caller cancelled mid-call never leaves the connection mid-statement.
    """

    def __init__(self, dsn: str, namespace: str, *, connect_timeout: float) -> None:
        self.namespace = namespace
        self.round_trips = 0  # statements sent for leases, pauses and back-offs
        self._dsn = dsn
        self._connect_timeout = connect_timeout
        self._connection: Any = None
        self._statements: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._calls: set[asyncio.Task[Any]] = set()
        self._ready = False  # the schema is in place
        self._closed = False
        self._lost_at: float | None = None  # when the connection was last lost

    async def open(self) -> None:
        """Connect, and create the tables and functions if they are missing.

        Raises:
            ConfigurationError: The database cannot be reached or refuses the set-up.
        """
        try:
            await self._call(_nothing)
        except TransportError as exc:
            raise ConfigurationError(f"cannot open the shared quota: {exc}") from exc

    async def close(self) -> None:
        """Let the calls in flight end (a few seconds at most), then disconnect."""
        self._closed = True
        if self._calls:
            await asyncio.wait(set(self._calls), timeout=self._connect_timeout)
        for call in set(self._calls):
            call.cancel()
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()

    async def lease(
        self, bucket: str, limit: int, window: float, want: int, seconds: float, spent: Spent | None
    ) -> Lease:
        """One lease of ``bucket`` (see the module docstring).

        Raises:
            TransportError: The database could not be reached (``sent=False``).
            ClientClosedError: The quota is closed.
        """
        args = (
            self.namespace,
            bucket,
            limit,
            window,
            want,
            seconds,
            None if spent is None else spent.lease_id,
            None if spent is None else spent.after,
            RECOVERY,
        )
        return await self._call(lambda: self._lease(args, seconds, window))

    async def _lease(self, args: tuple[Any, ...], seconds: float, window: float) -> Lease:
        """The lease, asked under the lock once a dropped connection was noticed (asked
        before, a loss noticed meanwhile would let a lease through at once)."""
        if self._lost_at is not None:
            # A lease may start up to a window after its grant, and counts a window on.
            quiet = self._lost_at + seconds + 2 * window - time.monotonic()
            if quiet > 0:  # the leases granted before the loss may still count
                return Lease(None, 0, min(_MAX_WAIT, quiet))
        lease_id, tokens, wait = await self._fetch(_LEASE, args)
        if lease_id is None:  # none: ask again then (never in a busy loop)
            return Lease(None, 0, min(_MAX_WAIT, max(_MIN_WAIT, float(wait))))
        return Lease(int(lease_id), int(tokens), max(0.0, float(wait)))

    def pause_soon(self, bucket: str, seconds: float) -> None:
        """Record a pause of ``bucket`` for every sharer, in the background."""
        self._post(_PAUSE, (self.namespace, bucket, seconds))

    def back_off_soon(self, bucket: str, window: float) -> None:
        """Record a back-off of ``bucket`` (windows of ``window`` seconds) for every
        sharer, in the background."""
        self._post(_BACK_OFF, (self.namespace, bucket, MIN_SHARE, RECOVERY, window))

    # -- calls ------------------------------------------------------------------------------

    def _post(self, statement: str, args: tuple[Any, ...]) -> None:
        if not self._closed:
            self._start(lambda: self._fetch(statement, args)).add_done_callback(_log_failure)

    async def _call(self, work: Callable[[], Awaitable[T]]) -> T:
        if self._closed:
            raise ClientClosedError("the shared quota was closed")
        call = self._start(work)
        call.add_done_callback(_retrieve)  # read even when the caller was cancelled
        try:
            return await asyncio.shield(call)
        except DB_ERRORS as exc:
            raise TransportError(
                f"the shared quota's database failed ({type(exc).__name__}: {exc})", sent=False
            ) from exc

    def _start(self, work: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        call = asyncio.ensure_future(self._run(work))
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)
        return call

    async def _run(self, work: Callable[[], Awaitable[T]]) -> T:
        async with self._lock:
            try:
                self._notice_a_dropped_connection()
                if self._connection is None:
                    await self._connect()
                return await work()
            except DB_ERRORS:
                # Whatever state the connection is in, the next call starts afresh.
                connection, self._connection = self._connection, None
                if connection is not None:
                    connection.terminate()
                    self._lost_at = time.monotonic()
                raise

    def _notice_a_dropped_connection(self) -> None:
        """A connection the server closed (a restart, a crash) counts as lost."""
        if self._connection is not None and self._connection.is_closed():
            self._connection, self._lost_at = None, time.monotonic()

    async def _connect(self) -> None:
        try:
            check_ports(self._dsn)
            connection = await asyncpg.connect(
                self._dsn,
                timeout=self._connect_timeout,
                # A statement may take as long: a session that stopped answering (a frozen
                # server, a dropped route) fails, and the next call connects afresh.
                command_timeout=self._connect_timeout,
                server_settings={"application_name": "vidgo-async quota"},
            )
        except MALFORMED_DSN as exc:  # a DSN that does not parse: never quoted
            raise open_failure("the shared quota", exc) from None
        self._connection = connection
        if not self._ready:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", _SETUP_LOCK)
                await connection.execute(SCHEMA)
            self._ready = True
        # Prepared once: each call is then a single round trip (bind, execute, sync).
        self._statements = {
            sql: await connection.prepare(sql) for sql in (_LEASE, _PAUSE, _BACK_OFF)
        }

    async def _fetch(self, statement: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        self.round_trips += 1
        row = await self._statements[statement].fetchrow(*args)
        return tuple(row)


class BucketSource:
    """One kind of request of a :class:`QuotaStore`, as a limiter's lease source."""

    def __init__(self, store: QuotaStore, bucket: str, limit: int, window: float) -> None:
        self._store = store
        self._bucket = bucket
        self._limit = limit
        self._window = window

    async def lease(self, want: int, seconds: float, spent: Spent | None) -> Lease:
        """Up to ``want`` tokens for ``seconds``, ending the ``spent`` lease early."""
        return await self._store.lease(
            self._bucket, self._limit, self._window, want, seconds, spent
        )

    def pause(self, seconds: float) -> None:
        """Every sharer starts no request for ``seconds``."""
        self._store.pause_soon(self._bucket, seconds)

    def back_off(self) -> None:
        """Every sharer's rate is halved for a while (once a window)."""
        self._store.back_off_soon(self._bucket, self._window)


async def _nothing() -> None:
    """A call that only makes sure of the connection and the schema."""


def _retrieve(call: asyncio.Task[Any]) -> None:
    if not call.cancelled():
        call.exception()


def _log_failure(call: asyncio.Task[Any]) -> None:
    if call.cancelled():
        return
    exc = call.exception()
    if exc is not None:
        logger.warning(
            "the shared quota could not record a 429 for the other processes (%s: %s)",
            type(exc).__name__,
            exc,
        )
