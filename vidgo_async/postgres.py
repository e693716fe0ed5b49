"""Several processes on one API key, through PostgreSQL (extra ``postgres``).

:class:`SharedQuota` shares the key's quota, :class:`CallbackRelay` routes a
callback to the process whose wait it belongs to; a batch journal given as a
``postgresql://`` DSN spreads a batch over several hosts (see
``VidgoClient.convert_many``).

::

    from vidgo_async import VidgoClient
    from vidgo_async.postgres import SharedQuota

    async with (
        SharedQuota("postgresql://app@db/app", namespace="prod-key") as quota,
        VidgoClient(quota=quota, max_polls_per_second=50) as client,
    ):
        ...

Every client of every process that shares a database and a ``namespace``
(the API key's name, say) stays, all together, under ``max_polls_per_second``
status requests in any one-second span, and a 429 seen by one slows them all.
Each process leases a few tokens at a time from a row of the database and
spends them locally: about one round trip per lease, not per request. The
tables and functions (``vidgo_async_quota*``) are created at first use; the
user needs the right to create them there once.

:class:`SharedJournal` is ``convert_many``'s journal in the same database,
with its options: ``journal=SharedJournal(dsn, lease_seconds=10)`` (a plain
``journal="postgresql://..."`` takes the defaults).

The core never imports this module; ``asyncpg`` is needed only here.
"""

from __future__ import annotations

import math
from types import TracebackType

import attrs

from ._batch.journal import BatchJournal
from ._postgres.journal import LEASE_SECONDS, PostgresJournal
from ._postgres.leased import LeasedLimiter
from ._postgres.relay import CallbackRelay, RelayStats
from ._postgres.store import BucketSource, QuotaStore
from ._timing.limits import Limiter, window_of
from ._validate import check_rate
from .errors import ClientClosedError, ConfigurationError

__all__ = ["CallbackRelay", "QuotaStats", "RelayStats", "SharedJournal", "SharedQuota"]

_MAX_NAMESPACE = 200
_LEASES = (1.0, 3600.0)  # the journal's lease_seconds, at least and at most


def _check_dsn(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{attribute.name} must be a string, got {type(value).__name__}")
    if not value.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"{attribute.name} must be a postgresql:// connection string")


def _check_lease(instance: object, attribute: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{attribute.name} must be a number, got {type(value).__name__}")
    if not _LEASES[0] <= value <= _LEASES[1]:  # NaN fails too
        raise ValueError(
            f"{attribute.name} must be between {_LEASES[0]:g} and {_LEASES[1]:g} seconds"
        )


@attrs.frozen
class SharedJournal:
    """A batch journal in PostgreSQL, shared by workers on several hosts.

    ``client.convert_many(pairs, journal=SharedJournal(dsn, lease_seconds=10))``
    in each worker, all given the same input: each pair is claimed by one
    worker under a lease on the database's clock, converted once, and
    reported by that worker only. A worker renews its leases every third of
    ``lease_seconds``; a worker that stops renewing (killed, paused, cut off
    from the database) loses its pairs to the others ``lease_seconds`` later.
    A worker that comes back after losing a pair neither writes its row, nor
    submits for it, nor reports it (a WARNING says it dropped it).
    ``journal="postgresql://..."`` is ``SharedJournal("postgresql://...")``.
    The tables (``vidgo_async_journal*``) are created at first use.

    Args:
        dsn: A PostgreSQL connection string (``postgresql://user@host/db``);
            never shown in the repr (it may carry a password).
        lease_seconds: How long a claim outlives its last renewal (1 to 3600,
            default 30). Shorter: a dead worker's pairs are taken over sooner;
            longer: a worker survives longer pauses (GC, a slow database)
            without losing its pairs, each lost pair costing a drop, not a
            second conversion.

    Raises:
        TypeError, ValueError: A bad argument (at construction: before any
            connection or request).
    """

    dsn: str = attrs.field(validator=_check_dsn, repr=False)
    lease_seconds: float = attrs.field(default=LEASE_SECONDS, kw_only=True, validator=_check_lease)

    async def open_batch_journal(self) -> BatchJournal:
        """Connect and start renewing leases (``convert_many`` calls this as it starts).

        Raises:
            ConfigurationError: The database cannot be reached or refuses the set-up.
        """
        return await PostgresJournal.open(self.dsn, lease_seconds=self.lease_seconds)


@attrs.frozen(kw_only=True)
class QuotaStats:
    """What a :class:`SharedQuota` cost so far, in this process.

    Attributes:
        round_trips: Statements sent to the database for leases, pauses and
            back-offs (connecting and the set-up aside).
        requests: Requests let through (status requests, and submits when
            they are capped).
    """

    round_trips: int
    requests: int

    @property
    def round_trips_per_request(self) -> float:
        """Database round trips per request let through (NaN before the first)."""
        return self.round_trips / self.requests if self.requests else math.nan


class SharedQuota:
    """A quota shared by every client, in any process, of one namespace in one database.

    Pass it to each :class:`~vidgo_async.VidgoClient` as ``quota=``; the
    clients' ``max_polls_per_second`` is then the cap of all of them together
    (give them all the same; the largest one holds). Open it before making
    the clients (``async with``, or :meth:`start`) and close it after them;
    closing it ends their pending requests with :class:`ClientClosedError`.

    Args:
        dsn: A PostgreSQL connection string (``postgresql://user@host/db``).
        namespace: What the sharers have in common, e.g. the API key's name.
        max_submits_per_second: A shared cap on submits too (every attempt
            counts, retries included); ``None``: submits are not capped.
        lease_seconds: The longest a lease of tokens lives. Longer leases
            cost fewer round trips when the rate is low; a busy process ends
            its leases early anyway.
        max_lease: The most tokens one lease takes (default: a quarter of the
            cap, so that several processes share a busy second).
        send_margin: Seconds a request may take from its slot to the wire:
            each one-second window is counted that much longer, so that
            requests sent late in one window and early in the next never put
            more than the cap in a second on the wire. The cost: at most
            ``1 / (1 + send_margin)`` of the cap is used (95 % by default).
        connect_timeout: Seconds to connect to the database; also the longest a
            statement may go unanswered (then the connection is replaced).

    Raises:
        ValueError, TypeError: A bad argument.
    """

    def __init__(
        self,
        dsn: str,
        *,
        namespace: str,
        max_submits_per_second: float | None = None,
        lease_seconds: float = 0.5,
        max_lease: int | None = None,
        send_margin: float = 0.05,
        connect_timeout: float = 10.0,
    ) -> None:
        if not isinstance(dsn, str) or not dsn:
            raise TypeError("dsn must be a non-empty string")
        if not (
            isinstance(namespace, str)
            and 0 < len(namespace) <= _MAX_NAMESPACE
            and namespace.isprintable()  # no NUL or lone surrogate: PostgreSQL refuses them
        ):
            raise ValueError(
                f"namespace must be a string of 1 to {_MAX_NAMESPACE} printable characters"
            )
        if max_submits_per_second is not None:
            max_submits_per_second = check_rate("max_submits_per_second", max_submits_per_second)
        lease_seconds = check_rate("lease_seconds", lease_seconds)
        if not 0.05 <= lease_seconds <= 60:
            raise ValueError("lease_seconds must be between 0.05 and 60")
        if max_lease is not None and (
            isinstance(max_lease, bool) or not isinstance(max_lease, int) or max_lease < 1
        ):
            raise ValueError("max_lease must be a positive integer")
        if isinstance(send_margin, bool) or not isinstance(send_margin, (int, float)):
            raise TypeError("send_margin must be a number")
        if not 0 <= send_margin <= 1:
            raise ValueError("send_margin must be between 0 and 1 (seconds)")
        self._store = QuotaStore(
            dsn, namespace, connect_timeout=check_rate("connect_timeout", connect_timeout)
        )
        self._submits_rate = max_submits_per_second
        self._lease_seconds = lease_seconds
        self._max_lease = max_lease
        self._send_margin = float(send_margin)
        self._limiters: set[LeasedLimiter] = set()
        self._requests_closed = 0  # requests let through by limiters since closed
        self._state = "new"

    def __repr__(self) -> str:
        # Never the DSN: it may carry a password.
        return f"SharedQuota(namespace={self._store.namespace!r})"

    @property
    def namespace(self) -> str:
        """What the sharers have in common."""
        return self._store.namespace

    @property
    def stats(self) -> QuotaStats:
        """Round trips and requests so far, in this process."""
        requests = self._requests_closed + sum(limiter.granted for limiter in self._limiters)
        return QuotaStats(round_trips=self._store.round_trips, requests=requests)

    async def start(self) -> None:
        """Connect, creating the tables and functions at first use.

        Raises:
            ConfigurationError: The database cannot be reached or refuses the set-up.
            ClientClosedError: The quota was closed.
        """
        if self._state == "closed":
            raise ClientClosedError("the shared quota was closed")
        if self._state == "new":
            await self._store.open()
            self._state = "open"

    async def close(self) -> None:
        """End the pending requests of its clients with :class:`ClientClosedError` and
        disconnect. Safe to call twice."""
        self._state = "closed"
        for limiter in list(self._limiters):
            limiter.close("the shared quota was closed")
        await self._store.close()

    async def __aenter__(self) -> SharedQuota:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def poll_limiter(self, rate: float) -> Limiter:
        """The limiter of one client's status requests (``VidgoClient`` calls this).

        Raises:
            ConfigurationError: The quota was not started.
            ClientClosedError: The quota was closed.
        """
        return self._limiter("polls", rate)

    def submit_limiter(self) -> Limiter | None:
        """The limiter of one client's submits; None without ``max_submits_per_second``."""
        if self._submits_rate is None:
            return None
        return self._limiter("submits", self._submits_rate)

    def _limiter(self, bucket: str, rate: float) -> LeasedLimiter:
        if self._state == "closed":
            raise ClientClosedError("the shared quota was closed")
        if self._state != "open":
            raise ConfigurationError(
                "the SharedQuota is not open: use `async with SharedQuota(...)` "
                "(or await start()) before making its clients"
            )
        limit, window = window_of(rate)
        limiter = LeasedLimiter(
            BucketSource(self._store, bucket, limit, window + self._send_margin),
            rate,
            seconds=self._lease_seconds,
            max_lease=self._max_lease or max(1, math.ceil(limit / 4)),
            on_close=self._forget,
        )
        self._limiters.add(limiter)
        return limiter

    def _forget(self, limiter: LeasedLimiter) -> None:
        self._limiters.discard(limiter)
        self._requests_closed += limiter.granted
