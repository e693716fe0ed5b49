"""The one place that touches aiohttp: a single API request, its envelope, its errors.

Every failure leaves here as a :mod:`vidgo_async.errors` type. Retrying is
the caller's business (``_client``), timing lives in ``_retry``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from ._config import Timeouts
from ._retry import parse_retry_after
from .errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InsufficientCreditsError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    TransportError,
)

__all__ = [
    "MAX_BODY",
    "Transport",
    "api_error",
    "excerpt",
    "safe_to_chain",
    "transport_error",
]

logger = logging.getLogger("vidgo_async")

#: Largest response body read, in bytes; the rest is never buffered.
MAX_BODY = 1024 * 1024
_USER_AGENT = "vidgo-async/0.1"
_ENCODING = "Content-Encoding"
_raw_decode = json.JSONDecoder().raw_decode
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
}


def excerpt(body: bytes | str, limit: int = 160) -> str:
    """A short, single-line, escaped excerpt of a body for error messages."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


@functools.cache
def _let_glibc_serve_socket_reads_from_its_heap() -> None:
    """Free one 1 MiB block, once per process, where the C library is glibc.

    asyncio reads a socket into a fresh 256 KiB buffer, then shrinks it to
    what arrived. glibc hands out blocks that size by ``mmap`` until its
    threshold for that has risen, which it does for good when a larger
    block is freed. Until then every read of every response costs three
    system calls and fresh pages (mmap, mremap, munmap). A batch measured
    25 µs of kernel time per conversion for it, ~10 % of its CPU, and the
    same run after this call none (see BENCHMARKS.md). Nothing else changes.
    """
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):  # not a glibc system
        return
    if glibc.startswith("glibc"):
        block = bytearray(1 << 20)
        del block


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
        _let_glibc_serve_socket_reads_from_its_heap()
        self._base_url = base_url
        self._prefix = base_url.raw_path.rstrip("/")
        self._auth = CIMultiDict({"Authorization": f"Bearer {api_key}"})
        self.timeouts = timeouts
        self._session = session
        self._owns_session = session is None
        # Downloads never go through a session carrying the key: with sessions of our
        # own, they get a second one; a borrowed session gets the key per request only.
        self._storage: aiohttp.ClientSession | None = None
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
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._max_connections),
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
        if self._owns_session:
            sessions = [self._session, self._storage]
            self._session = self._storage = None
            for session in sessions:
                if session is not None:
                    await session.close()

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
        return _envelope_data(status, headers, raw, complete)

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


def _envelope_data(status: int, headers: Mapping[str, str], raw: bytes, complete: bool) -> Any:
    if complete:
        try:
            payload, problem = _loads(raw.decode("utf-8")), None
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            payload, problem = _not_utf8_json(raw)
    else:
        payload, problem = None, f"a body over {MAX_BODY} bytes"
    if 300 <= status < 400:
        # The API documents no redirect; following one would carry the key elsewhere.
        where = headers.get("Location", "nowhere")
        raise InvalidResponseError(
            f"unexpected redirect to {excerpt(where, 80)}", status=status, excerpt=excerpt(raw)
        )
    if not 200 <= status < 300:
        message = _message(payload) if problem is None else _describe_body(raw, problem)
        raise api_error(status, None, message, payload, _retry_after(headers))
    if problem is not None:
        raise InvalidResponseError(
            f"expected a JSON envelope, got {problem}", status=status, excerpt=excerpt(raw)
        )
    if not isinstance(payload, dict):
        raise InvalidResponseError("expected a JSON object", status=status, excerpt=excerpt(raw))
    code = payload.get("code", 200)
    if code != 200 or type(code) is not int:  # the usual answer, checked without a call
        code = _code(code)
        if code is None:
            raise InvalidResponseError(
                "envelope code is not a number", status=status, excerpt=excerpt(raw)
            )
        if code != 200:
            raise api_error(code, code, _message(payload), payload, _retry_after(headers))
    if "data" not in payload:
        raise InvalidResponseError("envelope has no data", status=status, excerpt=excerpt(raw))
    return payload["data"]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    return parse_retry_after(headers.get("Retry-After"), cap=float("inf"))


def _loads(text: str) -> Any:
    """``json.loads(text)``, with fewer steps for the usual body: one JSON document
    and nothing around it (the rest, and every error, goes to ``json.loads``).

    Bodies are decoded first: ``json.loads(bytes)`` would sniff their encoding.
    """
    try:
        value, end = _raw_decode(text)
    except ValueError:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _not_utf8_json(raw: bytes) -> tuple[Any, str | None]:
    """A body that is not UTF-8 JSON: maybe UTF-16 or UTF-32 JSON, else what it is."""
    if not raw.strip():
        return None, "an empty body"
    try:
        return json.loads(raw), None  # UTF-16 or UTF-32, which JSON allows
    except (ValueError, RecursionError):
        head = raw.lstrip()[:15].lower()
        return None, "HTML" if head.startswith((b"<!doctype", b"<html")) else "a non-JSON body"


def _describe_body(raw: bytes, problem: str) -> str:
    return f"{problem}: {excerpt(raw)}" if raw.strip() else problem


def _code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _message(payload: Any) -> str:
    if not isinstance(payload, dict):
        return excerpt(json.dumps(payload)) if payload is not None else "no message"
    error = payload.get("error")
    candidates = [error.get("message") if isinstance(error, dict) else error]
    candidates += [payload.get("message"), payload.get("msg")]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return excerpt(candidate, 300)
    return "no message"


def api_error(
    status: int, code: int | None, message: str, payload: Any, retry_after: float | None
) -> APIError:
    """The :class:`APIError` subclass for ``status`` (an HTTP status or a JSON code)."""
    if status == 429:
        return RateLimitError(message, status=status, code=code, retry_after=retry_after)
    if 500 <= status < 600:
        return ServerError(message, status=status, code=code, retry_after=retry_after)
    if status == 409:
        return ConflictError(message, status=status, code=code, task_id=_conflict_task(payload))
    return _BY_STATUS.get(status, APIError)(message, status=status, code=code)


def _conflict_task(payload: Any) -> str | None:
    data = payload.get("data") if isinstance(payload, dict) else None
    task_id = data.get("task_id") if isinstance(data, dict) else None
    if isinstance(task_id, int) and not isinstance(task_id, bool):
        return str(task_id)  # ids are strings in the docs, integers on some platforms
    return task_id if isinstance(task_id, str) and task_id.strip() else None
