"""Downloads: stream one file from the storage host to disk, safely.

:func:`download_file` streams to ``<dest>.part`` beside the destination,
checks the length and the RIFF/WAVE header (magic and declared size), fsyncs,
then renames atomically, so ``dest`` is either absent or complete. Transient
failures (connection errors, timeouts, 429, 5xx, a short body) are retried
with backoff, resuming with ``Range`` from the ``.part`` size, all within one
overall deadline. Every URL - the first and each
redirect hop - must be https to a public address unless ``allow_private``
(tests against a loopback fake). No credentials are ever sent. The body is
taken as sent (``identity``): an encoded answer's length says nothing of what
it unpacks to, so it is refused before a byte is written.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import attrs
from yarl import URL

from .._config import RetryPolicy, Timeouts
from .._events import EventHook, operation, request, retrying
from .._lifecycle import Lifecycle
from .._timing.classify import retryable
from .._timing.deadline import Deadline
from .._timing.schedules import retry_pauses
from .._validate import check_timeout
from ..errors import APIError, InvalidResponseError, RequestTimeoutError, VidgoError
from .envelope import api_error, excerpt, parse_retry_after
from .peers import (
    check_url,
    download_target,
    is_refused,
    parse_url,
    refuse_existing,
    refused_address,
    url_label,
)
from .redaction import redact
from .transport import safe_to_chain, transport_error
from .wavfile import (
    Overrun,
    PartFile,
    drop_lone_version,
    forget_part,
    keep_version,
    owned,
    part_of,
    part_size,
    resumable,
    resume_offset,
    usable_version,
)

__all__ = ["DOWNLOAD_TIMEOUT", "download_file"]

logger = logging.getLogger("vidgo_async")

#: Bytes read from the socket and written to disk at a time.
CHUNK_SIZE = 256 * 1024
#: Seconds a whole download may take, retries included, unless told otherwise.
DOWNLOAD_TIMEOUT = 3600.0
#: Redirect hops followed before giving up.
MAX_REDIRECTS = 5
#: ``on_progress(bytes_done, total_or_None)``, called after every chunk.
ProgressCallback = Callable[[int, int | None], object]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CONTENT_RANGE = re.compile(r"bytes ([0-9]{1,19})-([0-9]{1,19})/([0-9]{1,19}|\*)", re.ASCII)
_DEFAULT_RETRY = RetryPolicy()
_DEFAULT_TIMEOUTS = Timeouts()


class _Incomplete(InvalidResponseError):
    """The body ended early or the range went stale: retry, resuming if possible."""


class _Refused(Exception):
    """A hop our URL rules refuse, or an answer in an encoding we did not ask for:
    asking again cannot change that, so no retry."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


async def download_file(
    session: aiohttp.ClientSession,
    url: str,
    dest: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    on_progress: ProgressCallback | None = None,
    retry: RetryPolicy = _DEFAULT_RETRY,
    timeouts: Timeouts = _DEFAULT_TIMEOUTS,
    allow_private: bool = False,
    timeout: float | None = DOWNLOAD_TIMEOUT,
    secret: str = "",
    hook: EventHook | None = None,
    lifecycle: Lifecycle | None = None,
) -> Path:
    """Download ``url`` to ``dest`` through ``.part`` and an atomic rename.

    Args:
        session: The session to use; it must carry no default credentials.
        url: An absolute https URL (http too with ``allow_private``).
        dest: The file to write, or an existing directory to write into
            (named after the URL path's last segment, sanitised).
        overwrite: Replace an existing ``dest``.
        on_progress: Called with ``(bytes_done, total_or_None)`` after each
            chunk; the count starts again at 0 if the server ignores a resume.
        retry: Attempts and backoff of transient failures; an attempt that
            grows the ``.part`` file resets the count.
        timeouts: ``connect``, and ``total`` as the longest silence while
            reading (a large file may take much longer in all).
        allow_private: Allow http and any address (tests against a local fake).
        timeout: Seconds for the whole download, retries and backoff
            included; ``None`` for no limit. On expiry the ``.part`` file is
            kept for a later call to resume.
        secret: Text never repeated in a message or log line (the API key).
        hook: Told of the download, its requests and retries (paths only, redacted).
        lifecycle: The client's: its close ends the download at once, keeping
            the ``.part`` file for a later call to resume.

    Returns:
        The path written.

    Raises:
        ValueError: A URL that is not allowed, or a session with credentials.
        FileExistsError: ``dest`` exists and ``overwrite`` is false, or another
            download (of this process or another) is writing it.
        FileNotFoundError: ``dest``'s directory does not exist.
        TransportError: The storage host could not be reached or read.
        RequestTimeoutError: ``timeout`` passed (a :class:`TransportError`).
        APIError: An error status, after retries for 429 and 5xx.
        InvalidResponseError: Not a WAV file, a refused redirect, an encoded
            body (``Content-Encoding``), or a body still short (of its length or
            RIFF size) after retries.
        ClientClosedError: ``lifecycle`` is closed, or closes meanwhile.
    """
    if lifecycle is not None:
        lifecycle.check()
    timeout = check_timeout(timeout)
    first = check_url(url, allow_private)
    target = download_target(dest, first, overwrite)
    if session.auth is not None or "Authorization" in session.headers:
        raise ValueError("refusing to download with a session that carries credentials")
    deadline = Deadline.after(timeout)
    job = _Download(session, first, target, retry, timeouts, allow_private, deadline, secret, hook)
    peer = {"path": job.path(first), "server_address": first.host, "server_port": first.port}
    with operation(hook, "download", **peer), owned(job.part):
        refuse_existing(target, overwrite)  # again: a download that held it may have made it
        work = job.run(on_progress)
        await (work if lifecycle is None else lifecycle.run(work))
    return target


@attrs.define(repr=False)  # its URL may be signed, and it holds the key to redact
class _Download:
    """The attempts of one download, sharing its ``.part`` file."""

    _session: aiohttp.ClientSession
    _url: URL
    _target: Path
    _retry: RetryPolicy
    _timeouts: Timeouts
    _allow_private: bool
    _deadline: Deadline
    _secret: str  # never repeated: a storage URL's path may carry it
    _hook: EventHook | None = None
    # The ETag (strong) or Last-Modified, and the size, of the file the .part holds the
    # head of, once an answer gave them (kept beside it, for a later call): a resume asks
    # If-Range with the version, and a body of another version or size is never appended.
    _version: str | None = attrs.field(default=None, init=False)
    _size: int | None = attrs.field(default=None, init=False)

    def _where(self, url: URL | None = None) -> str:
        """Host and path of ``url`` (default: the first), for messages and logs."""
        return redact(url_label(url or self._url), self._secret)

    def path(self, url: URL) -> str:
        """The path of ``url`` without its query, as events show it."""
        return redact(url.path, self._secret)

    @property
    def part(self) -> Path:
        """The file the download grows in, renamed to the target once complete."""
        return part_of(self._target)

    async def run(self, on_progress: ProgressCallback | None) -> None:
        """Refuse a URL to a private address (before any request), then attempt until
        done; give up after ``max_attempts`` failures without progress.

        Raises:
            ValueError: The URL's host resolves to a private address.
        """
        refused = await self._refused_address(self._url)
        if refused is not None:
            raise ValueError(f"refusing {self._where()}: it resolves to {refused}")
        # Our loop, not backoff's: an attempt that grows the file starts the count afresh.
        best, self._version, self._size = resumable(self.part, self._where())  # an earlier call's
        failures, pauses = 0, retry_pauses(self._retry)
        while True:
            try:
                await self._attempt(on_progress)
                return
            except (_Refused, Overrun) as refusal:  # asking again cannot change it
                raise InvalidResponseError(str(refusal), status=refusal.status) from None
            except VidgoError as exc:
                if not retryable(exc):
                    raise
                failure = exc
            # Raised outside the handler: nothing of the attempt gets chained.
            self._left(failure)  # a passed deadline outranks the attempt count
            size = part_size(self.part)
            if size > best:
                best, failures, pauses = size, 0, retry_pauses(self._retry)
            failures += 1
            if failures >= self._retry.max_attempts:
                if isinstance(failure, _Incomplete):
                    raise InvalidResponseError(str(failure), status=200)
                raise failure
            delay = self._deadline.clamp(pauses.send(failure))
            where = f"download {self._where()}"
            retrying(
                self._hook, where, failure, attempt=failures, delay=delay, path=self.path(self._url)
            )
            await asyncio.sleep(delay)
            self._left(failure)

    def _left(self, failure: Exception | None = None) -> float | None:
        """Seconds until the deadline; RequestTimeoutError once it has passed."""
        left = self._deadline.remaining()
        if left is None or left > 0:
            return left
        # The deadline's own timeout says nothing more; another failure might.
        quiet = failure is None or isinstance(failure, RequestTimeoutError)
        last = "" if quiet else f" (last error: {failure})"
        raise RequestTimeoutError(f"{self._where()}: download not finished in time{last}")

    def _client_timeout(self) -> aiohttp.ClientTimeout:
        """Each request's timeouts: ``total`` ends it, body included, at the deadline."""
        connect, silence = self._timeouts.connect, self._timeouts.total
        return aiohttp.ClientTimeout(total=self._left(), connect=connect, sock_read=silence)

    async def _attempt(self, on_progress: ProgressCallback | None) -> None:
        offset = resume_offset(self.part)
        failure: BaseException | None = None
        try:
            response = await self._open(offset)
            async with response:
                await self._receive(response, offset, on_progress)
        except VidgoError:
            raise
        except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
            failure = exc
        finally:
            drop_lone_version(self.part)  # committed, or discarded as no WAV
        if failure is not None:
            # Raised outside the handler: an aiohttp exception's request_info holds the
            # request's headers and URL (query included), so it must not be chained.
            error = transport_error(failure, self._where(), self._secret)
            raise error from (failure if safe_to_chain(failure) else None)

    async def _open(self, offset: int) -> aiohttp.ClientResponse:
        """The answer to a GET, redirects followed and re-checked."""
        url = self._url
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if self._version is not None:
                headers["If-Range"] = self._version
        for _ in range(MAX_REDIRECTS + 1):
            started, where = time.monotonic(), self._where(url)
            response = await self._get(url, headers)
            elapsed = time.monotonic() - started
            logger.debug("GET %s from %d -> %d in %.3fs", where, offset, response.status, elapsed)
            if response.status not in _REDIRECTS:
                self._check_peer(response)
                return response
            response.release()
            url = await self._next_hop(url, response.headers.get("Location"), response.status)
        raise _Refused(f"{self._where()}: more than {MAX_REDIRECTS} redirects", 200)

    async def _get(self, url: URL, headers: dict[str, str]) -> aiohttp.ClientResponse:
        """One GET, until its answer's headers (the body is the download's to read)."""
        hook = self._hook
        path = None if hook is None else self.path(url)
        with request(
            hook, "GET", path=path, server_address=url.host, server_port=url.port
        ) as scope:
            try:
                response = await self._session.get(
                    url, headers=headers, allow_redirects=False, timeout=self._client_timeout()
                )
            except (asyncio.TimeoutError, aiohttp.ClientError) as exc:
                scope.note(error=type(transport_error(exc, "")).__name__)
                raise
            scope.note(status_code=response.status)
            return response

    async def _next_hop(self, url: URL, location: str | None, status: int) -> URL:
        if not location:
            raise _Refused(f"{self._where(url)}: redirect without Location", status)
        try:
            hop = check_url(str(url.join(parse_url(location))), self._allow_private)
            refused = await self._refused_address(hop)
        except ValueError as exc:  # it quotes the Location: raised below, not chained
            reason = f"refused redirect: {redact(str(exc), self._secret)}"
        else:
            if refused is None:
                return hop
            reason = f"refused redirect to {refused}"
        raise _Refused(reason, status)

    async def _refused_address(self, url: URL) -> str | None:
        """The private address ``url``'s host resolves to (None if public, or when
        private ones are allowed), looked up within the deadline."""
        if self._allow_private:
            return None
        try:
            return await asyncio.wait_for(refused_address(url), self._left())
        except asyncio.TimeoutError:
            message = f"{self._where(url)}: not resolved before the deadline"
            raise RequestTimeoutError(message, sent=False) from None

    def _check_peer(self, response: aiohttp.ClientResponse) -> None:
        """Refuse a private peer even if DNS changed its answer since the check."""
        connection = response.connection
        transport = None if connection is None else connection.transport
        peer = None if transport is None else transport.get_extra_info("peername")
        if self._allow_private or not peer:
            return
        address = ipaddress.ip_address(peer[0])
        if is_refused(address):
            response.release()
            raise _Refused(f"{self._where()}: connected to refused {address}", 200)

    async def _receive(
        self, response: aiohttp.ClientResponse, offset: int, on_progress: ProgressCallback | None
    ) -> None:
        status = response.status
        if status == 416 and offset:
            forget_part(self.part)
            raise _Incomplete(f"{self._where()}: range {offset}- no longer satisfiable")
        if status >= 400:
            body = await response.content.read(1024)
            raise _status_error(response, body, self._where(), self._secret)
        if status not in (200, 206):
            raise InvalidResponseError(f"{self._where()}: unexpected status", status=status)
        encoding = response.headers.get("Content-Encoding", "identity").strip()
        if encoding.lower() != "identity":  # aiohttp would unpack it past any length we know
            sent = excerpt(redact(encoding, self._secret), 40)
            raise _Refused(f"{self._where()}: Content-Encoding {sent}, not identity", status)
        start, total = self._span(response, offset)
        with PartFile(self.part, start, total) as part:
            if start == 0 or self._version is None:  # a whole body: its version is the file's
                self._version = _version_of(response)
            if start == 0 or self._size is None:
                self._size = total
            keep_version(self.part, self._version, self._where(), self._size)
            async for chunk in response.content.iter_chunked(CHUNK_SIZE):
                part.write(chunk)
                if on_progress is not None:
                    on_progress(part.size, total)
            if total is not None and part.size != total:
                raise _Incomplete(f"{self._where()}: got {part.size} of {total} bytes")
            problem = part.riff_problem()
            if problem is not None:  # e.g. a body without Content-Length, cut short
                raise _Incomplete(f"{self._where()}: {problem}")
            await part.commit(self._target)

    def _span(self, response: aiohttp.ClientResponse, offset: int) -> tuple[int, int | None]:
        """Where the body starts in the file, and the file's size when known."""
        length = response.content_length
        if response.status == 200:
            return 0, length
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        version = _version_of(response)  # a 206 without one (against RFC 9110) tells nothing
        total = None if match is None or match[3] == "*" else int(match[3])
        changed = (None not in (version, self._version) and version != self._version) or (
            None not in (total, self._size) and total != self._size
        )
        if match is None or int(match[1]) != offset or changed:
            forget_part(self.part)
            raise _Incomplete(f"{self._where()}: another range or version of the file, restarting")
        if total is None and length is not None:  # "*": the size is what this body ends at
            total = offset + length
        return offset, total


def _version_of(response: aiohttp.ClientResponse) -> str | None:
    """What tells this version of the file from another: a strong ETag, else its
    Last-Modified (None when neither is usable in an If-Range)."""
    etag = response.headers.get("ETag", "").strip()
    modified = response.headers.get("Last-Modified", "").strip()
    return usable_version("" if etag.startswith("W/") else etag) or usable_version(modified)


def _status_error(
    response: aiohttp.ClientResponse, body: bytes, where: str, secret: str
) -> APIError:
    """The error for an error status, mapped as for API calls."""
    retry_after = parse_retry_after(response.headers.get("Retry-After"), cap=math.inf)
    shown = excerpt(redact(body.decode("utf-8", "replace"), secret))  # redacted before cut
    return api_error(response.status, None, f"{where}: {shown or 'no body'}", None, retry_after)
