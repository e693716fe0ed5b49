"""The one place that touches aiohttp: a single API request, its errors.

Every failure leaves here as a :mod:`vidgo_async.errors` type; the answer's
envelope is read by ``_envelope``. Retrying is the caller's business
(``_calls``), timing lives in ``_retry``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from ._config import Timeouts
from ._envelope import MAX_BODY, envelope_data, excerpt
from ._malloc import let_glibc_serve_socket_reads_from_its_heap
from .errors import RequestTimeoutError, TransportError

__all__ = ["Transport", "safe_to_chain", "transport_error"]

logger = logging.getLogger("vidgo_async")

_USER_AGENT = "vidgo-async/0.1"
_ENCODING = "Content-Encoding"


class Transport:
    """Sends API requests with the key, reads capped bodies, maps every failure.

    Args:
        base_url: The API's origin, e.g. ``https://api.vidgo.ai``.
        api_key: Sent as a bearer token to ``base_url`` only.
        timeouts: Per-request timeouts.
        session: A session to borrow; never closed here. Without one, a
            session is created on first use and closed by :meth:`close`.
        max_connections: Connection pool size of a created session.
    """

    def __init__(
        self,
        *,
        base_url: URL,
        api_key: str,
        timeouts: Timeouts,
        session: aiohttp.ClientSession | None,
        max_connections: int,
    ) -> None:
        let_glibc_serve_socket_reads_from_its_heap()
        self._base_url = base_url
        self._prefix = base_url.raw_path.rstrip("/")
        self._auth = CIMultiDict({"Authorization": f"Bearer {api_key}"})
        self.timeouts = timeouts
        self._session = session
        self._owns_session = session is None
        # Downloads never go through a session carrying the key: with sessions of our
        # own, they get a second one; a borrowed session gets the key per request only.
        self._storage: aiohttp.ClientSession | None = None
        self._connector: aiohttp.TCPConnector | None = None  # our sessions' shared pool
        self._request_headers = None if session is None else self._auth
        self._closed = False
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(
            total=timeouts.total, connect=min(timeouts.connect, timeouts.total)
        )
        self._urls: dict[str, URL] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        """The API's HTTP session, created on first use inside the running loop.

        A session of our own carries the key as a default header (no merge
        per request) and no cookie jar (the API authenticates by token); a
        borrowed one gets the key per request and must not carry it itself.

        Raises:
            RuntimeError: The transport was closed (a wait still polling after
                ``aclose()`` must not open a session nobody closes).
        """
        if self._session is None:
            self._session = self._new_session(self._auth, aiohttp.DummyCookieJar())
        return self._session

    @property
    def storage_session(self) -> aiohttp.ClientSession:
        """The session for downloads from the storage host: the borrowed session,
        or one of our own that never carries the key.

        Raises:
            RuntimeError: The transport was closed.
        """
        if not self._owns_session:
            return self.session
        if self._storage is None:
            self._storage = self._new_session({})
        return self._storage

    def _new_session(
        self, headers: Mapping[str, str], cookie_jar: aiohttp.abc.AbstractCookieJar | None = None
    ) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this VidgoClient is closed")
        if self._connector is None:  # one pool of max_connections for both sessions
            self._connector = aiohttp.TCPConnector(limit=self._max_connections)
        return aiohttp.ClientSession(
            connector=self._connector,
            connector_owner=False,
            headers={"User-Agent": _USER_AGENT, **headers},
            cookie_jar=cookie_jar,
        )

    def client_timeout(self, cap: float | None = None) -> aiohttp.ClientTimeout:
        """The aiohttp timeout of one request, shortened to ``cap`` seconds if given."""
        if cap is None or cap >= self.timeouts.total:
            return self._timeout
        total = max(0.001, cap)
        return aiohttp.ClientTimeout(total=total, connect=min(self.timeouts.connect, total))

    async def close(self) -> None:
        """Close the sessions this transport created; no request is sent after."""
        self._closed = True
        sessions = [self._session, self._storage] if self._owns_session else []
        connector, self._connector = self._connector, None
        if self._owns_session:
            self._session = self._storage = None
        try:
            for session in sessions:
                if session is not None:
                    await session.close()
        finally:
            if connector is not None:
                await connector.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """One request; the envelope's ``data`` on success.

        Args:
            timeout: Cap on this request's total time (a deadline's remainder).

        Raises:
            TransportError: No usable reply (``sent`` says whether it left).
            APIError: An error status, or an error ``code`` in an HTTP 200.
            InvalidResponseError: A 2xx that is not the documented JSON.
        """
        debug = logger.isEnabledFor(logging.DEBUG)
        started = time.monotonic() if debug else 0.0
        client_timeout = self._timeout if timeout is None else self.client_timeout(timeout)
        failure: BaseException | None = None
        try:
            if self._closed:
                raise RuntimeError("this VidgoClient is closed")
            session = self._session if self._session is not None else self.session
            url = self._urls.get(path)
            if url is None:
                url = self._url(path)
            async with session.request(
                method,
                url,
                params=params,
                json=body,
                headers=self._request_headers,
                timeout=client_timeout,
                allow_redirects=False,
            ) as response:
                status, headers = response.status, response.headers
                length = response.content_length
                if length is not None and length <= MAX_BODY and _ENCODING not in headers:
                    raw, complete = await response.read(), True  # parsing stops at the length
                else:
                    raw, complete = await _read_capped(response)
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            failure = exc
        if failure is not None:
            # Raised outside the except block so that no aiohttp exception - whose
            # request_info holds the headers, the API key among them - is chained.
            error = transport_error(failure, f"{method} {path}")
            if debug:
                logger.debug("%s %s failed after %.3fs: %s", method, path, _since(started), error)
            raise error from (failure if safe_to_chain(failure) else None)
        if debug:
            logger.debug("%s %s -> %d in %.3fs", method, path, status, _since(started))
        return envelope_data(status, headers, raw, complete)

    def _url(self, path: str) -> URL:
        url = self._base_url.with_path(self._prefix + path, encoded=True)
        if len(self._urls) < 16:  # the fixed routes; per-task paths are not kept
            self._urls[path] = url
        return url


async def _read_capped(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    """The body, read in chunks up to :data:`MAX_BODY`, and whether it was complete
    (for a body of unknown or large length, or compressed: it may unpack to more)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            return b"".join(chunks)[:MAX_BODY], False
    return b"".join(chunks), True


def _since(started: float) -> float:
    return time.monotonic() - started


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


def transport_error(exc: BaseException, where: str) -> TransportError:
    """Our error for an aiohttp or timeout exception; ``sent`` is false only before connecting."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return RequestTimeoutError(f"{where}: timed out connecting", sent=False)
    if isinstance(exc, asyncio.TimeoutError):
        return RequestTimeoutError(f"{where}: timed out waiting for the answer")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError(f"{where}: cannot connect ({exc.os_error})", sent=False)
    if isinstance(exc, aiohttp.ClientResponseError):
        return TransportError(f"{where}: unreadable answer ({exc.status}, {exc.message})")
    name = type(exc).__name__
    return TransportError(f"{where}: connection failed ({name}: {excerpt(str(exc), 120)})")
