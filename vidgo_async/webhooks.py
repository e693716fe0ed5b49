"""Receive the API's callbacks safely, and let waits race them against polling.

The API POSTs a task's detail answer to its ``callback_url`` when the task
finishes or fails. It signs nothing, so anyone who learns a URL can post to
it: :class:`CallbackReceiver` puts a fresh unguessable token in every
callback URL (checked in constant time), refuses bodies over 64 KiB before
parsing them (413) and malformed ones (400), acknowledges unknown tokens,
repeats and replays with a 2xx that changes nothing, and treats a callback
only as a *hint*: the wait it wakes confirms the task with one status read.

The API only calls public HTTPS URLs, so the receiver is reached through a
reverse proxy or tunnel; ``public_url`` is that public base, and the proxy
forwards its paths to wherever the receiver is served::

    receiver = CallbackReceiver("https://hooks.example.com")
    async with receiver.serve("127.0.0.1", 8081):  # proxy: hooks.example.com -> :8081
        async with VidgoClient(callbacks=receiver) as client:
            url = await client.convert_to_wav(task_id, audio_id)

Or mount it in your own aiohttp application, next to your routes::

    receiver.add_routes(app)  # POST /vidgo/callbacks/{token}

Other frameworks feed the raw request in. FastAPI or Starlette, in the same
event loop as the client::

    from fastapi import FastAPI, Request, Response

    receiver = CallbackReceiver("https://hooks.example.com")
    app = FastAPI()

    @app.post("/vidgo/callbacks/{token}")
    async def vidgo_callback(token: str, request: Request) -> Response:
        body = b""
        async for chunk in request.stream():  # stop reading past the cap
            body += chunk
            if len(body) > MAX_BODY:
                return Response(status_code=413)
        status = receiver.feed(token, body, request.headers)
        return Response(status_code=status)

:func:`parse_callback` is the framework-free parser underneath, for code
that only wants the :class:`~vidgo_async.Task` a callback describes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web
from yarl import URL

from ._models import Task
from ._ops.callbacks import TOKEN_LENGTH, Registry, Relay
from ._validate import MAX_CALLBACK_URL, check_timeout, is_loopback
from ._wire.convert import parse_task
from .errors import ConfigurationError, InvalidCallbackError, InvalidResponseError

__all__ = ["DEFAULT_PATH", "MAX_BODY", "CallbackReceiver", "InvalidCallbackError", "parse_callback"]

logger = logging.getLogger("vidgo_async")

#: Largest callback body accepted, in bytes (64 KiB).
MAX_BODY = 64 * 1024
#: Path under which a receiver serves, followed by ``/{token}``.
DEFAULT_PATH = "/vidgo/callbacks"


def parse_callback(
    body: bytes, headers: Mapping[str, str] | None = None, *, max_body: int = MAX_BODY
) -> Task:
    """The task a callback body describes; checks size and shape, not authenticity.

    Accepts the vendor's ``{"code": 200, "data": {...}}`` and the bare
    ``data`` object. What a callback says is a hint, never the truth: read
    the task from the API before acting on it (a receiver-fed wait does).

    Args:
        body: The raw request body.
        headers: The request headers; a ``Content-Length`` over ``max_body``
            is refused without looking at ``body``.
        max_body: Largest body accepted, in bytes.

    Raises:
        InvalidCallbackError: ``status`` 413 for a body over ``max_body``,
            400 for one that is not JSON or not a task description.
    """
    declared = _header(headers or {}, "Content-Length")
    if declared is not None:
        _check_length(declared, max_body)
    if len(body) > max_body:
        raise InvalidCallbackError(f"callback body over {max_body} bytes", status=413)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidCallbackError("callback body is not JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidCallbackError("callback body is not a JSON object")
    data: Any = payload
    if "task_id" not in payload and isinstance(payload.get("data"), dict):
        code = payload.get("code", 200)
        if code not in (200, "200"):
            # Only a number is repeated: text from the sender could echo the API key.
            shown = code if isinstance(code, int) and not isinstance(code, bool) else "text"
            raise InvalidCallbackError(f"callback carries code {shown!s:.20}, not 200")
        data = payload["data"]
    task_id = data.get("task_id")
    if isinstance(task_id, bool) or not isinstance(task_id, (str, int)):  # some send integers
        raise InvalidCallbackError("callback has no task_id")
    if not isinstance(data.get("status"), str):
        raise InvalidCallbackError("callback has no status string")
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")  # a lone surrogate fails here
        task = parse_task(data)
    except (InvalidResponseError, UnicodeEncodeError, RecursionError) as exc:
        raise InvalidCallbackError(f"callback is not a task description: {exc}") from None
    if data.get("progress") is not None and task.progress is None:
        raise InvalidCallbackError("callback progress is not a percentage")
    return task


class CallbackReceiver:
    """Receives callbacks for the tasks a :class:`~vidgo_async.VidgoClient` submits.

    Give it to a client (``VidgoClient(callbacks=receiver)``); every submit
    of that client then carries a callback URL
    ``{public_url}{path}/{token}`` with a fresh token, and its waits return
    on whichever comes first, a confirmed callback or a poll. One receiver
    may serve several clients of one event loop.

    Args:
        public_url: The public base the API can reach, such as
            ``https://hooks.example.com`` (a reverse proxy or tunnel in front
            of this process). ``https`` is required except on loopback. None
            uses the local address of :meth:`serve` (testing).
        path: The path the receiver answers under (the token follows it).
        max_body: Largest callback body accepted, in bytes.
        body_timeout: Seconds :meth:`handler` gives a request to send its
            whole body (the API itself wants an answer within 10 s); a slower
            one is answered 408 and its connection closed, so that a slow
            body cannot hold the receiver's connections open (None: no limit).
            It starts once the headers are in: aiohttp, under :meth:`serve`,
            sets no limit on how slowly they come, which is one more reason to
            face the internet through a reverse proxy (its header timeout).
        token_ttl: Seconds a token stays valid when no wait resolves it.
        max_tokens: Most live tokens; the oldest are dropped beyond it.
        relay: Where callbacks for *other* processes' waits go, in an app
            served by several worker processes behind one port: a
            :class:`vidgo_async.postgres.CallbackRelay` shared by all of them.
            None: one process receives all of its callbacks.

    Raises:
        ValueError: An unusable ``public_url`` or ``path``.
    """

    def __init__(
        self,
        public_url: str | None = None,
        *,
        path: str = DEFAULT_PATH,
        max_body: int = MAX_BODY,
        body_timeout: float | None = 10.0,
        token_ttl: float = 86_400.0,
        max_tokens: int = 100_000,
        relay: Relay | None = None,
    ) -> None:
        self._path = _check_path(path)
        self._public = None if public_url is None else _check_public_url(public_url, self._path)
        if not (isinstance(max_body, int) and max_body > 0):
            raise ValueError(f"max_body must be a positive int, got {max_body!r}")
        if not (isinstance(max_tokens, int) and max_tokens > 0):
            raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
        if not (isinstance(token_ttl, (int, float)) and token_ttl > 0):
            raise ValueError(f"token_ttl must be a positive number, got {token_ttl!r}")
        self._max_body = max_body
        self._body_timeout = check_timeout(body_timeout, name="body_timeout")
        self._served: str | None = None
        if relay is not None and not isinstance(relay, Relay):
            raise TypeError(f"relay must be a CallbackRelay, got {type(relay).__name__}")
        self._registry = Registry(
            url_for=self._url_for, ttl=token_ttl, max_slots=max_tokens, relay=relay
        )

    def __repr__(self) -> str:
        return f"CallbackReceiver(public_url={self.public_url!r}, path={self._path!r})"

    @property
    def public_url(self) -> str | None:
        """The public base of callback URLs (the :meth:`serve` address when not given)."""
        return self._public or self._served

    @property
    def route(self) -> str:
        """The aiohttp route pattern to mount :meth:`handler` at, ``{path}/{token}``."""
        return f"{self._path}/{{token}}"

    @property
    def pending(self) -> int:
        """Tokens issued whose task has not been resolved by a wait yet."""
        return len(self._registry)

    @property
    def reliable(self) -> bool:
        """Whether recent callbacks arrived (False: waits poll on the normal schedule)."""
        return self._registry.reliable

    def add_routes(self, app: web.Application) -> None:
        """Mount :meth:`handler` at :attr:`route` (POST) in ``app``."""
        app.router.add_post(self.route, self.handler)

    async def handler(self, request: web.Request) -> web.Response:
        """The aiohttp handler; its route must have a ``{token}`` part."""
        try:
            declared = request.headers.get("Content-Length")
            if declared is not None:
                _check_length(declared, self._max_body)
            body = await asyncio.wait_for(_read_capped(request, self._max_body), self._body_timeout)
        except asyncio.TimeoutError:
            logger.debug("callback refused: no whole body within %s s", self._body_timeout)
            return await _unread(request, _answer(408))
        except InvalidCallbackError as exc:
            logger.debug("callback refused: %s", exc)
            return _answer(exc.status)  # aiohttp reads the rest on, for the sender to see it
        except ConnectionError as exc:  # the client hung up mid-body: nobody to answer
            logger.debug("callback client went away: %s", exc)
            return _answer(400)
        except web.RequestPayloadError as exc:  # e.g. a gzip body that does not unpack
            logger.debug("callback refused: unreadable body: %s", exc)
            return await _unread(request, _answer(400))  # nothing more to read of it
        return _answer(self.feed(request.match_info.get("token", ""), body, request.headers))

    def feed(self, token: str, body: bytes, headers: Mapping[str, str] | None = None) -> int:
        """Apply one callback received by any web framework; returns the HTTP status to answer.

        Call it from the event loop the client runs in. It does no I/O and
        answers at once: 200 whether the callback woke a wait or was
        ignored (unknown or expired token, a repeat, another task's id), so
        a prober learns nothing; 400 or 413 for a malformed or oversized body.

        Args:
            token: The ``{token}`` part of the request path (a whole path or
                URL is accepted too: its last segment is used).
            body: The raw request body.
            headers: The request headers (``Content-Length`` is checked).
        """
        token = token.rstrip("/").rpartition("/")[2]
        try:
            task = parse_callback(body, headers, max_body=self._max_body)
        except InvalidCallbackError as exc:
            logger.debug("callback refused: %s", exc)
            return exc.status
        outcome = self._registry.hint(token[: TOKEN_LENGTH + 1], task)
        logger.debug("callback for task %s: %s", task.task_id, outcome)
        return 200

    @contextlib.asynccontextmanager
    async def serve(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve the receiver on its own port for the duration of an ``async with``.

        Args:
            host: Interface to listen on (the proxy's side of it).
            port: Port to listen on; 0 picks a free one.

        Yields:
            The local URL, such as ``http://127.0.0.1:54321``.
        """
        app = web.Application()
        self.add_routes(app)
        # On exit, a client still sending a body it declared is not waited for.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound_host, bound_port = runner.addresses[0][:2]
            local = str(URL.build(scheme="http", host=bound_host, port=bound_port))
            self._served = local
            yield local
        finally:
            self._served = None
            await runner.cleanup()

    def _url_for(self, token: str) -> str:
        base = self.public_url
        if base is None:
            raise ConfigurationError("CallbackReceiver has no public_url: give one, or use serve()")
        return f"{base}{self._path}/{token}"


def _answer(status: int) -> web.Response:
    reason = _REASONS.get(status, "")
    return web.json_response({"code": status, "message": reason}, status=status)


_REASONS = {
    200: "ok",
    400: "malformed callback",
    408: "callback too slow",
    413: "callback too large",
}


async def _unread(request: web.Request, response: web.Response) -> web.Response:
    """``response``, sent, then its connection closed: the rest of a slow body is not
    waited for (aiohttp would read on for its lingering time, 10 s)."""
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # the transport flushes the answer, then closes
    return response


async def _read_capped(request: web.Request, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > cap:
            raise InvalidCallbackError(f"callback body over {cap} bytes", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


def _check_length(declared: str, cap: int) -> None:
    digits = declared.strip()
    if not (digits.isascii() and digits.isdigit()):  # not "²" or "①"
        raise InvalidCallbackError("unusable Content-Length")
    # Longer than the cap's digits is over it (int() refuses over 4,300 digits).
    significant = digits.lstrip("0") or "0"
    if len(significant) > len(str(cap)) or int(significant) > cap:
        raise InvalidCallbackError(f"callback body over {cap} bytes", status=413)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


def _check_path(path: object) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"path must be a str starting with '/', got {path!r:.80}")
    if any(char in path for char in "{}?#%\\") or any(ord(c) < 33 for c in path):
        raise ValueError(f"path must be a plain URL path, got {path!r:.80}")
    return path.rstrip("/")


def _check_public_url(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"public_url must be a str, got {type(value).__name__}")
    try:
        url = URL(value)
    except ValueError as exc:
        raise ValueError(f"public_url is not a URL: {value[:80]!r}") from exc
    if not url.absolute or not url.host or url.query_string or url.fragment or url.user:
        raise ValueError(f"public_url must be a plain absolute URL, got {value[:80]!r}")
    if url.scheme != "https" and not (url.scheme == "http" and is_loopback(url)):
        raise ValueError(
            f"public_url must be https (the API calls only public HTTPS URLs; put a reverse "
            f"proxy or tunnel in front), or http on loopback for testing, got {value[:80]!r}"
        )
    base = value.rstrip("/")
    if len(base) + len(path) + 1 + TOKEN_LENGTH > MAX_CALLBACK_URL:
        raise ValueError(f"public_url is too long for a {MAX_CALLBACK_URL}-character callback URL")
    return base
