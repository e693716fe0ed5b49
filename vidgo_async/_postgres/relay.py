"""Callback hints routed between processes with PostgreSQL's LISTEN/NOTIFY.

Each :class:`CallbackRelay` is an *instance* (8 random hex characters, the
first of every token its receivers issue) and listens on the channel of that
instance. A receiver handed a token of another instance checks the token's
HMAC (the secret is shared, the wait's state is not needed) and the relay
NOTIFYs the owner's channel with the token, the task id and the status. The
owner's receivers take it as any callback: a hint, confirmed by one read.

Sending is queued (``feed`` does no I/O) and done by one task over the
relay's one connection, which is also the listening one. A NOTIFY the
server refuses drops its hints and keeps the connection; one that goes
unanswered, or an idle connection that stops answering a ``SELECT 1``, is
replaced (with backoff), and the new one listens again. A hint sent while its
owner is not listening is lost, and that wait falls back to its safety-net
poll, as for a callback the API never sent. A hint sent on is not sent again
for a minute, so replays of a captured callback URL cost one NOTIFY.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import weakref
from collections import OrderedDict
from types import TracebackType
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # store.py says how to install it
import attrs

from .._config import RetryPolicy
from .._models import Task
from .._ops.callbacks import Registry, new_instance
from .._timing.schedules import retry_pauses
from .._validate import check_rate
from .._wire.convert import parse_task
from ..errors import ClientClosedError, ConfigurationError, InvalidResponseError
from .connect import DB_ERRORS, OPEN_ERRORS, check_ports, open_failure

__all__ = ["CallbackRelay", "RelayStats"]

logger = logging.getLogger("vidgo_async")

_MIN_SECRET = 32  # bytes
_CHANNEL = "vidgo_async_callbacks_"  # + the instance
_BATCH = 256  # most hints sent in one round trip
_NOTIFY = "SELECT pg_notify($1, $2)"
_IDLE_CHECK = 5.0  # seconds: how often an idle sender checks its (listening) connection
_MAX_PAYLOAD = 7900  # bytes: PostgreSQL refuses a NOTIFY payload of 8000 or more
_REPEAT_WINDOW = 60.0  # seconds a hint sent on is not sent again (repeats, replays)
_MAX_RECENT = 10_000  # hints remembered for that
_SENDER = "vidgo-callback-relay"
_RECONNECT = RetryPolicy(base_delay=0.1, max_delay=5.0)


@attrs.frozen(kw_only=True)
class RelayStats:
    """What a :class:`CallbackRelay` carried so far.

    Attributes:
        forwarded: Hints this process received for another process and sent on.
        delivered: Hints other processes sent to this one.
        dropped: Hints not sent: the queue was full, or the relay closed first.
    """

    forwarded: int
    delivered: int
    dropped: int


class CallbackRelay:
    """Routes callbacks to the process whose wait they belong to, through PostgreSQL.

    In an app served by several worker processes behind one port, a
    callback reaches any worker. Give every worker's
    :class:`~vidgo_async.webhooks.CallbackReceiver` a relay (``relay=``) on the
    same database and with the same ``secret``; a callback that reaches the
    wrong worker is then sent on to the right one, within milliseconds::

        async with CallbackRelay(dsn, secret=os.environ["VIDGO_CALLBACK_SECRET"]) as relay:
            receiver = CallbackReceiver("https://hooks.example.com", relay=relay)
            receiver.add_routes(app)
            async with VidgoClient(callbacks=receiver) as client:
                ...

    The receivers' tokens are then HMACs under ``secret``, so any worker can
    tell a genuine token from a forged one without the wait's state; only
    genuine ones are sent on. A hint stays a hint: the wait that gets it
    makes one status read before returning. Open the relay before its
    receivers issue tokens (a submit with an unopened relay raises
    :class:`~vidgo_async.ConfigurationError` before anything is sent), and
    close it after its clients.

    Args:
        dsn: A PostgreSQL connection string.
        secret: At least 32 bytes (or characters) shared by every process;
            e.g. ``secrets.token_urlsafe(32)`` kept in the app's settings.
            Whoever holds it can make valid callback URLs.
        max_queue: Most hints waiting to be sent; beyond it, hints are dropped
            (their waits fall back to their safety-net poll).
        connect_timeout: Seconds to connect to the database; also the longest
            a NOTIFY may go unanswered (then the connection is replaced) and
            :meth:`close` waits for the queue to drain.

    Raises:
        ValueError, TypeError: A bad argument.
    """

    def __init__(
        self,
        dsn: str,
        *,
        secret: str | bytes,
        max_queue: int = 10_000,
        connect_timeout: float = 10.0,
    ) -> None:
        if not isinstance(dsn, str) or not dsn:
            raise TypeError("dsn must be a non-empty string")
        if isinstance(secret, str):
            secret = secret.encode()
        if not isinstance(secret, bytes):
            raise TypeError("secret must be str or bytes")
        if len(secret) < _MIN_SECRET:
            raise ValueError(
                f"secret must be at least {_MIN_SECRET} bytes (make one with"
                ' python -c "import secrets; print(secrets.token_hex(32))")'
            )
        if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 1:
            raise ValueError("max_queue must be a positive integer")
        self._dsn = dsn
        self._secret = secret
        self._timeout = check_rate("connect_timeout", connect_timeout)
        self._instance = new_instance()
        self._registries: weakref.WeakSet[Registry] = weakref.WeakSet()
        self._queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(max_queue)
        # Hints sent on, by (token, task id, status): a forged one naming another task
        # must not mute the genuine one.
        self._recent: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._sending: list[tuple[str, str]] = []  # taken from the queue, not yet sent
        self._sender: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._state = "new"
        self._full = False  # the queue overflowed since the last hint sent (warned once)
        self._forwarded = self._delivered = self._dropped = 0

    def __repr__(self) -> str:
        # Never the DSN (it may carry a password) nor the secret.
        return f"CallbackRelay(instance={self._instance!r}, state={self._state!r})"

    @property
    def secret(self) -> bytes:
        """The key of the tokens' HMACs (repr never shows it)."""
        return self._secret

    @property
    def instance(self) -> str:
        """This relay's address: the first characters of its receivers' tokens."""
        return self._instance

    @property
    def stats(self) -> RelayStats:
        """Hints carried so far."""
        return RelayStats(
            forwarded=self._forwarded, delivered=self._delivered, dropped=self._dropped
        )

    async def start(self) -> None:
        """Connect and listen. Safe to call again (and concurrently): one connection.

        Raises:
            ConfigurationError: The database cannot be reached, or ``dsn`` is malformed.
            ClientClosedError: The relay was closed.
        """
        async with self._lock:
            if self._state == "closed":
                raise ClientClosedError("the callback relay was closed")
            if self._state == "open":
                return
            try:
                connection = await self._connect()
            except OPEN_ERRORS as exc:
                raise open_failure("the callback relay", exc) from None
            if self._state == "closed":  # closed while connecting
                connection.terminate()
                raise ClientClosedError("the callback relay was closed")
            self._state = "open"
            self._sender = asyncio.create_task(self._send(connection), name=_SENDER)

    async def close(self) -> None:
        """Send what is queued (a few seconds at most), then disconnect. Safe to call
        twice; a close that was cancelled is finished by the next one."""
        self._state = "closed"
        sender = self._sender
        if sender is None:
            return
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._queue.join(), self._timeout)
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            self._sender = None
            self._dropped += self._queue.qsize() + len(self._sending)

    async def __aenter__(self) -> CallbackRelay:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # The half the receivers use (the Relay protocol of _ops/callbacks.py).

    def check_open(self) -> None:
        if self._state == "closed":
            raise ClientClosedError("the callback relay was closed")
        if self._state != "open":
            raise ConfigurationError(
                "the CallbackRelay is not open: use `async with CallbackRelay(...)` "
                "(or await start()) before submitting with its receiver"
            )

    def attach(self, registry: Registry) -> None:
        self._registries.add(registry)

    def forward(self, instance: str, token: str, task: Task) -> None:
        now = time.monotonic()
        if self._sent_lately((token, task.task_id, task.status.value), now):
            return  # a repeat (or a replay) of a hint sent on moments ago
        payload = json.dumps({"token": token, "task_id": task.task_id, "status": task.status})
        if self._state != "open" or len(payload) > _MAX_PAYLOAD:
            self._dropped += 1
            return
        try:
            self._queue.put_nowait((_CHANNEL + instance, payload))
        except asyncio.QueueFull:
            self._dropped += 1
            if not self._full:
                self._full = True
                logger.warning("callback relay queue full: hints for other processes are dropped")
            return
        self._forwarded += 1

    def _sent_lately(self, hint: tuple[str, str, str], now: float) -> bool:
        """Whether ``hint`` went out in the last minute; notes it if not."""
        recent = self._recent
        while recent and (len(recent) > _MAX_RECENT or next(iter(recent.values())) < now):
            recent.popitem(last=False)
        if hint in recent:
            return True
        recent[hint] = now + _REPEAT_WINDOW
        return False

    # The connection and its one task.

    async def _connect(self) -> Any:
        check_ports(self._dsn)
        connection = await asyncpg.connect(
            self._dsn,
            timeout=self._timeout,
            command_timeout=self._timeout,  # a statement unanswered so long: a new connection
            server_settings={"application_name": "vidgo-async callbacks"},
        )
        try:
            await connection.add_listener(_CHANNEL + self._instance, self._deliver)
        except BaseException:
            connection.terminate()
            raise
        return connection

    async def _send(self, connection: Any) -> None:
        """Send queued hints; reconnect, with backoff, when the connection breaks.

        A statement the server refuses drops its hints, not the connection; a
        connection that stops answering (a network that dropped it silently) is
        found by a ``SELECT 1`` when idle, and replaced.
        """
        pauses = retry_pauses(_RECONNECT)
        try:
            while True:
                try:
                    if connection is None:
                        connection = await self._connect()
                    if not self._sending:
                        self._sending = await self._take(connection)
                    if self._sending:
                        await connection.executemany(_NOTIFY, self._sending)
                        self._sent()
                        pauses = retry_pauses(_RECONNECT)
                except DB_ERRORS as exc:
                    refused = not isinstance(exc, asyncio.TimeoutError)
                    if refused and connection is not None and not connection.is_closed():
                        logger.warning("callback relay: hints refused (%.200r)", exc)
                        self._dropped += len(self._sending)
                        self._sent()
                        continue
                    logger.warning("callback relay: database unreachable (%s)", type(exc).__name__)
                    if connection is not None:
                        connection.terminate()
                    connection = None
                    await asyncio.sleep(pauses.send(exc))
        finally:
            if connection is not None:
                connection.terminate()

    async def _take(self, connection: Any) -> list[tuple[str, str]]:
        """The next hints to send; none after a quiet spell, once the connection has
        shown it still answers."""
        try:
            batch = [await asyncio.wait_for(self._queue.get(), _IDLE_CHECK)]
        except asyncio.TimeoutError:
            await connection.fetchval("SELECT 1")
            return []
        while len(batch) < _BATCH and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    def _sent(self) -> None:
        for _ in self._sending:
            self._queue.task_done()
        self._sending = []
        self._full = False

    def _deliver(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        """A hint another process sent: to this process's receivers, as a callback."""
        try:
            message = json.loads(payload)
            token, task_id, status = message["token"], message["task_id"], message["status"]
            if not (isinstance(token, str) and isinstance(status, str)):
                raise TypeError("token and status must be strings")
            task = parse_task({"task_id": task_id, "status": status})
        except (ValueError, KeyError, TypeError, RecursionError, InvalidResponseError) as exc:
            logger.debug("callback relay: unreadable hint dropped (%.200r)", exc)
            return
        self._delivered += 1
        for registry in list(self._registries):
            try:
                registry.hint(token, task)
            except Exception:  # a bug must cost one hint, not the listener
                logger.exception("callback relay: a hint failed")
