"""The one place that sends API requests through aiohttp, and maps their failures.

Every failure leaves here as a :mod:`vidgo_async.errors` type; the answer's
envelope is read by :mod:`.envelope`. Whether to try again is the caller's
question, answered by ``_timing.classify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import attrs
from yarl import URL

from .._config import Timeouts
from .._events import EventHook
from .._events import request as request_scope
from .._lifecycle import Lifecycle
from .._timing.limits import Slot
from .._validate import is_loopback
from ..errors import ClientClosedError, ConfigurationError, RequestTimeoutError, TransportError
from .envelope import MAX_BODY, envelope_data, excerpt
from .peers import PublicResolver
from .redaction import redact

__all__ = ["Transport", "safe_to_chain", "transport_error"]

logger = logging.getLogger("vidgo_async")


# No fallback: the package's __init__ reads the same metadata, without one.
_USER_AGENT = f"vidgo-async/{importlib.metadata.version('vidgo-async')}"


@attrs.define(repr=False)
class Transport:
    """Sends API requests with the key, reads capped bodies, maps every failure.

    Args:
        base_url: The API's origin, e.g. ``https://api.vidgo.ai``.
        api_key: Sent as a bearer token to ``base_url`` only, redacted from
            any server text we repeat.
        timeouts: Per-request timeouts.
        lifecycle: The client's open/closed state; nothing is sent once closed.
        session: A session to borrow; never closed here. Without one,
            sessions are created on first use and closed by :meth:`close`.
        max_connections: Connection pool size of the created sessions.
        hook: The client's ``on_event`` hook, told of each request.
        shared_cap: The rate caps are shared with other processes (a quota).
    """

    base_url: URL
    _api_key: str
    timeouts: Timeouts
    lifecycle: Lifecycle
    _borrowed: aiohttp.ClientSession | None = None
    _max_connections: int = 32
    hook: EventHook | None = None
    _shared_cap: bool = False
    _session: aiohttp.ClientSession | None = attrs.field(init=False, default=None)
    _storage: aiohttp.ClientSession | None = attrs.field(init=False, default=None)
    # Under a shared cap, the API's requests wait for a connection here rather than
    # in aiohttp's pool, so that a slot is checked when its request can leave
    # (``Slot.leaving``). A client's own cap needs no such wait: its slots count
    # until they are released, however late their requests leave.
    _connections: asyncio.Semaphore | None = attrs.field(init=False)
    _resolver: PublicResolver | None = attrs.field(init=False, default=None)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(init=False, default=None)  # sessions'
    answered: bool = attrs.field(init=False, default=False)  # any answer since the start

    @_connections.default
    def _one_per_connection(self) -> asyncio.Semaphore | None:
        return asyncio.Semaphore(self._max_connections) if self._shared_cap else None

    @property
    def secret(self) -> str:
        """The API key, for the layers that must keep it out of what they repeat."""
        return self._api_key

    @property
    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

    @property
    def session(self) -> aiohttp.ClientSession:
        """The API's session: the borrowed one, or ours, made on first use in the running loop.

        Ours carries the key as a default header and no cookie jar (the API
        authenticates by token); a borrowed one gets the key per request.
        """
        if self._borrowed is not None:
            return self._borrowed
        self._check_loop()
        if self._session is None:
            self._session = self._new_session(self._auth, aiohttp.DummyCookieJar())
        return self._session

    @property
    def storage_session(self) -> aiohttp.ClientSession:
        """The session for downloads from the storage host: the borrowed session,
        or one of ours that never carries the key."""
        if self._borrowed is not None:
            return self._borrowed
        self._check_loop()
        if self._storage is None:
            self._storage = self._new_session({})
        return self._storage

    def _check_loop(self) -> None:
        """Our sessions belong to the event loop they were made in: refuse another
        (a second ``asyncio.run()``) before anything is sent, rather than aiohttp's
        "Event loop is closed".

        Raises:
            ConfigurationError: This client's sessions belong to another event loop.
        """
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise ConfigurationError(
                "this VidgoClient was first used in another event loop (a second"
                " asyncio.run()?): make a client in each loop, or run both in one"
            )

    def _new_session(
        self, headers: Mapping[str, str], cookie_jar: aiohttp.abc.AbstractCookieJar | None = None
    ) -> aiohttp.ClientSession:
        """A session with a pool of its own, of ``max_connections``, closed with it."""
        self.lifecycle.check()  # a session made after close would never be closed
        # Against the fake on loopback, storage is on loopback too: no filter then.
        if self._resolver is None and not is_loopback(self.base_url):
            self._resolver = PublicResolver(self.base_url.host or "")
        connector = aiohttp.TCPConnector(limit=self._max_connections, resolver=self._resolver)
        session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": _USER_AGENT, **headers},
            cookie_jar=cookie_jar,
        )
        # aiohttp sends an idempotent request again, at once, when a kept-alive
        # connection fails - past the rate cap, and past the retry rules, which
        # already treat such a failure. It has no public switch for that (a trace
        # config could count the re-sends, at ~10 % of a batch's CPU); a test
        # counts status reads on the wire in case this attribute goes away.
        session._retry_connection = False
        return session

    async def close(self) -> None:
        """Close the sessions this transport created (never a borrowed one)."""
        sessions = (self._session, self._storage)
        self._session = self._storage = None
        try:
            for session in sessions:
                if session is not None:
                    await session.close()
        finally:
            if self._resolver is not None:
                await self._resolver.close()
                self._resolver = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        route: str | None = None,
        slot: Slot | None = None,
    ) -> Any:
        """One request; the envelope's ``data`` on success.

        Args:
            timeout: Cap on this request's total time (a deadline's remainder).
            route: The path's template, for the hook (default: ``path`` itself).
            slot: The request's slot under a rate cap, told when it leaves.

        Raises:
            ClientClosedError: The client is closed, or was closed meanwhile.
            TransportError: No usable reply (``sent`` says whether it left).
            APIError: An error status, or an error ``code`` in an HTTP 200.
            InvalidResponseError: A 2xx that is not the documented JSON.
        """
        self.lifecycle.check()
        base = self.base_url
        with request_scope(
            self.hook, method, route=route or path, server_address=base.host, server_port=base.port
        ) as scope:
            if self._connections is None:
                sent = await self._send(method, path, params, body, timeout)
            else:
                async with self._departure(slot, timeout) as left:
                    sent = await self._send(method, path, params, body, left)
            status, headers, raw, complete = sent
            scope.note(status_code=status)
            if 300 <= status < 400 and _upgrades(base, headers.get("Location")):
                raise ConfigurationError(
                    f"the API at {base} redirects to https: give base_url as https://"
                )
            return envelope_data(status, headers, raw, complete, secret=self._api_key)

    @contextlib.asynccontextmanager
    async def _departure(
        self, slot: Slot | None, timeout: float | None
    ) -> AsyncIterator[float | None]:
        """Under a shared cap: hold a free connection, and let the slot check it may still
        go, within ``timeout``; yields the time left for the request itself."""
        assert self._connections is not None
        until = None if timeout is None else time.monotonic() + timeout
        try:
            await asyncio.wait_for(self._connections.acquire(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise RequestTimeoutError(
                "deadline reached before a free connection", sent=False
            ) from None
        try:
            if slot is not None:
                try:
                    await slot.leaving(_left(until))  # it may first need a fresh slot
                except TimeoutError:
                    message = "deadline reached before a fresh slot"
                    raise RequestTimeoutError(message, sent=False) from None
            yield _left(until)
        finally:
            self._connections.release()

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
        timeout: float | None,
    ) -> tuple[int, Mapping[str, str], bytes, bool]:
        """Status, headers and capped body of one request, as received: the envelope
        redacts the key from what it repeats, once decoded."""
        started = time.monotonic()
        failure: BaseException | None = None
        headers: Mapping[str, str]
        try:
            async with self.session.request(
                method,
                self.base_url.with_path(self.base_url.raw_path.rstrip("/") + path, encoded=True),
                params=params,
                json=body,
                headers=self._auth if self._borrowed is not None else None,
                timeout=self._client_timeout(timeout),
                allow_redirects=False,
            ) as response:
                self.answered = True
                status, headers = response.status, response.headers
                raw, complete = await _read_capped(response)
        except (asyncio.TimeoutError, TimeoutError, aiohttp.ClientError) as exc:
            failure = exc
        except Exception:
            if not self.lifecycle.closed:
                raise
            failure = ClientClosedError("the client was closed during the request", sent=True)
        # aiohttp fails in many ways under a closing session; an answer read whole before
        # the close still counts (a submit's: the task it names is paid for).
        if self.lifecycle.closed and (failure is not None or not complete):
            raise ClientClosedError("the client was closed during the request", sent=True)
        if failure is not None:
            # Raised outside the except block so that no aiohttp exception - whose
            # request_info holds the headers, the API key among them - is chained.
            error = transport_error(failure, f"{method} {path}", self._api_key)
            logger.debug(
                "%s %s failed after %.3fs: %s", method, path, time.monotonic() - started, error
            )
            raise error from (failure if safe_to_chain(failure) else None)
        logger.debug("%s %s -> %d in %.3fs", method, path, status, time.monotonic() - started)
        return status, headers, raw, complete

    def _client_timeout(self, cap: float | None) -> aiohttp.ClientTimeout:
        total = self.timeouts.total
        if cap is not None and cap < total:
            total = max(0.001, cap)
        return aiohttp.ClientTimeout(total=total, connect=min(self.timeouts.connect, total))


def _upgrades(base: URL, location: str | None) -> bool:
    """Whether ``location`` is ``base``'s host over https where ``base`` is http (a proxy
    in front of the API turning plain requests away, unprocessed)."""
    if base.scheme != "http" or not location:
        return False
    try:
        moved = URL(location)
    except ValueError:
        return False
    return moved.scheme == "https" and moved.host == base.host


def _left(until: float | None) -> float | None:
    """Seconds left until ``until`` (None: no end), never below zero."""
    return None if until is None else max(0.0, until - time.monotonic())


async def _read_capped(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """The body, up to :data:`MAX_BODY`, and whether it was complete (a compressed
    body may unpack to more than its length says)."""
    length = response.content_length
    if length is not None and length <= MAX_BODY and "Content-Encoding" not in response.headers:
        return await response.read(), True
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            return b"".join(chunks)[:MAX_BODY], False
    return b"".join(chunks), True


def safe_to_chain(exc: BaseException) -> bool:
    """Whether no exception reachable from ``exc`` carries aiohttp's ``request_info``.

    ``request_info`` holds the request's headers and full URL, so an error
    chained to such an exception could show a signed query or a credential.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if hasattr(current, "request_info"):
            return False
        pending += [current.__cause__, current.__context__]
    return True


def transport_error(exc: BaseException, where: str, secret: str = "") -> TransportError:
    """Our error for an aiohttp or timeout exception; ``sent`` is false only before connecting.

    An aiohttp message may quote the server's bytes (a bad status line or
    header): it is redacted of ``secret``, cut and escaped.
    """
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return RequestTimeoutError(f"{where}: timed out connecting", sent=False)
    if isinstance(exc, asyncio.TimeoutError):
        return RequestTimeoutError(f"{where}: timed out waiting for the answer")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError(f"{where}: cannot connect ({exc.os_error})", sent=False)
    if isinstance(exc, aiohttp.ClientResponseError):
        quoted = excerpt(redact(exc.message, secret), 120)
        return TransportError(f"{where}: unreadable answer ({exc.status}, {quoted})")
    name = type(exc).__name__
    quoted = excerpt(redact(str(exc), secret), 120)
    return TransportError(f"{where}: connection failed ({name}: {quoted})")
