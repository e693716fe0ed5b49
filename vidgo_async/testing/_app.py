"""The aiohttp application of the fake: routes, auth, faults and the request log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from ._faults import Fault, FaultPlan
from ._log import RecordedRequest, RequestLog
from ._state import ApiError, FakeTask, TaskBook
from ._wav import iter_wav

MAX_CALLBACK_URL = 2048
"""The longest callback URL the vendor accepts."""
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_UNAUTHORIZED = {
    "code": 401,
    "error": {"message": "Invalid API key", "type": "authentication_error"},
}


class FakeApi:
    """Serves the Vidgo routes over a :class:`TaskBook`, applying a :class:`FaultPlan`."""

    def __init__(
        self,
        *,
        api_key: str,
        book: TaskBook,
        plan: FaultPlan,
        log: RequestLog,
        wav_size: int,
        report_progress: bool,
    ) -> None:
        self.api_key = api_key
        self.book = book
        self.plan = plan
        self.log = log
        self.wav_size = wav_size
        self.report_progress = report_progress
        self.undelivered_accepts = 0
        self.base_url: str | None = None
        #: Called with each accepted task before the submit is answered (callback delivery);
        #: it must not wait for a callback receiver's answer.
        self.on_accept: Callable[[FakeTask], Awaitable[None]] | None = None
        #: Called as each request arrives (callbacks due on a clock of the fake's own).
        self.on_request: Callable[[], None] | None = None
        self._closing = asyncio.Event()
        self.app = self._build_app()

    def wake_stalls(self) -> None:
        """End every stall now and any stall to come (the fake is closing)."""
        self._closing.set()

    def _build_app(self) -> web.Application:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            return await self._dispatch(request, handler)

        app = web.Application(middlewares=[middleware])
        router = app.router
        router.add_post("/api/generate/submit", self._submit, name="submit")
        router.add_get("/api/generate/detail/music", self._detail, name="detail", allow_head=False)
        router.add_get(
            "/api/generate/status/{task_id}", self._status, name="status", allow_head=False
        )
        router.add_get("/api/user/balance", self._balance, name="balance", allow_head=False)
        router.add_get("/files/{name}", self._files, name="files")
        return app

    # -- the pipeline every request goes through -------------------------------------------

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.on_request is not None:
            self.on_request()
        route = request.match_info.route.name
        body, refusal = await _read_body(request)
        entry = self.log.add(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                json=_parse_json(body),
                route=route,
            )
        )
        if refusal is not None:
            self.log.update(entry, status=refusal.status)
            if refusal.status == 413:  # aiohttp drains the rest, so the client reads this
                return _error(refusal)
            return await _answer_and_close(request, _error(refusal))
        fault = self.plan.next_for(route)
        if fault is not None:
            entry = self.log.update(entry, fault=fault.kind)
        try:
            response = await self._respond(request, handler, route, fault)
        except web.HTTPException as exc:
            self.log.update(entry, status=exc.status)
            raise
        except Exception:
            self.log.update(entry, status=500)  # what aiohttp answers for a bug of the fake
            raise
        if response is None:
            # The connection is gone; aiohttp fails to write this and moves on quietly.
            return web.Response(status=500)
        self.log.update(entry, status=response.status)
        return response

    async def _respond(
        self, request: web.Request, handler: Handler, route: str | None, fault: Fault | None
    ) -> web.StreamResponse | None:
        """The answer, or None when the connection was dropped instead."""
        if fault is None:
            return await self._handle(request, handler, route)
        if fault.answers:
            return fault.response()
        if fault.kind == "malformed":
            _write_raw(request, fault.body)
            return None
        if fault.kind == "stall" and not fault.after_accept:
            await self._stall(fault.seconds)
            _abort(request, reset=False)
            return None
        if fault.kind == "reset_before":
            _abort(request, reset=True)
            return None
        response = await self._handle(request, handler, route, cut=fault.kind == "reset_after")
        if fault.kind == "slow":
            await self._stall(fault.seconds)
            return response
        if route == "submit" and response.status == 200:
            self.undelivered_accepts += 1
        if fault.kind == "stall":
            await self._stall(fault.seconds)
        # A half-sent file ends with a clean close so the client sees a short body.
        _abort(request, reset=fault.kind == "reset_after" and route != "files")
        return None

    async def _handle(
        self, request: web.Request, handler: Handler, route: str | None, *, cut: bool = False
    ) -> web.StreamResponse:
        try:
            if route == "files":
                return await self._serve_file(request, cut=cut)
            if route is not None and not self._authorized(request):
                return web.json_response(_UNAUTHORIZED, status=401)
            return await handler(request)
        except ApiError as exc:
            return _error(exc)

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.api_key}"

    async def _stall(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)

    def _base_url(self, request: web.Request) -> str:
        return self.base_url or str(request.url.origin())

    # -- routes ---------------------------------------------------------------------------

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        payload = _parse_json(await request.read())
        if not isinstance(payload, dict):
            raise ApiError(400, "Request body must be a JSON object")
        model = payload.get("model")
        task_input = payload.get("input")
        callback_url = payload.get("callback_url")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "model must be a non-empty string")
        if not isinstance(task_input, dict):
            raise ApiError(400, "input must be an object")
        if callback_url is not None and not isinstance(callback_url, str):
            raise ApiError(400, "callback_url must be a string")
        # The vendor requires callback URLs of at most 2048 characters [doc] but does not
        # say what it answers to a longer one; refusing it is the faithful reading.
        if callback_url is not None and len(callback_url) > MAX_CALLBACK_URL:
            raise ApiError(400, f"callback_url must be at most {MAX_CALLBACK_URL} characters")
        task = self.book.submit(model, task_input, callback_url)
        if self.on_accept is not None:
            await self.on_accept(task)
        status = self.book.quirks.status_aliases.get("not_started", "not_started")
        data = {"task_id": task.wire_id, "status": status, "created_time": task.created_time}
        return _ok(data)

    async def _detail(self, request: web.Request) -> web.StreamResponse:
        task_id = request.query.get("task_id")
        if not task_id:
            raise ApiError(400, "task_id is required")
        task = self.book.lookup(task_id)
        now = self.book.clock()
        running = task.status(now) == "running"
        return _ok(
            task.data(now, self._base_url(request), with_progress=self.report_progress and running)
        )

    async def _status(self, request: web.Request) -> web.StreamResponse:
        task = self.book.lookup(request.match_info["task_id"])
        if task.kind == "music":
            raise ApiError(400, "Use the music detail endpoint for music tasks")
        return _ok(task.data(self.book.clock(), self._base_url(request), with_progress=True))

    async def _balance(self, request: web.Request) -> web.StreamResponse:
        return _ok({"email": "dev@example.com", "credits_amount": self.book.credits})

    async def _files(self, request: web.Request) -> web.StreamResponse:
        return await self._serve_file(request, cut=False)

    async def _serve_file(self, request: web.Request, *, cut: bool) -> web.StreamResponse:
        """Stream the WAV of a finished task; ``cut`` stops half-way through the body."""
        name = request.match_info["name"]
        task = self.book.tasks.get(name.removesuffix(".wav").removesuffix("-instrumental"))
        if (
            not name.endswith(".wav")
            or task is None
            or task.status(self.book.clock()) != "finished"
        ):
            raise ApiError(404, "File not found")
        size = self.wav_size
        start, stop = _byte_range(request.headers.get("Range"), size)
        response = web.StreamResponse(status=206 if start or stop < size else 200)
        response.content_type = "audio/wav"
        response.content_length = stop - start
        response.headers["Accept-Ranges"] = "bytes"
        if response.status == 206:
            response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        end = start + (stop - start) // 2 if cut else stop
        try:
            for chunk in iter_wav(size, start=start, stop=end):
                await response.write(chunk)
            if not cut:
                await response.write_eof()
        except ConnectionError:
            pass  # the client went away; nothing to answer
        return response


def _byte_range(header: str | None, size: int) -> tuple[int, int]:
    """``(start, stop)`` asked by a ``Range: bytes=N-[M]`` header; the whole file otherwise.

    Raises:
        ApiError: 416, the range starts at or past the end of the file.
    """
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None:
        return 0, size
    start = _offset(match[1], size)
    stop = min(_offset(match[2], size) + 1, size) if match[2] else size
    if start >= stop:
        raise ApiError(416, "Range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
    return start, stop


def _offset(digits: str, size: int) -> int:
    """A byte offset, capped at ``size`` (int() refuses thousands of digits)."""
    if len(digits.lstrip("0")) > len(str(size)):
        return size
    return min(int(digits), size)


async def _read_body(request: web.Request) -> tuple[bytes, ApiError | None]:
    """The request body, or the error answer when it cannot be read."""
    try:
        return (await request.read() if request.body_exists else b""), None
    except web.HTTPRequestEntityTooLarge:
        return b"", ApiError(413, "Request body too large")
    except web.RequestPayloadError:  # a broken gzip or chunked body
        return b"", ApiError(400, "Invalid request body")


async def _answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send ``response``, then close the connection.

    The rest of an unreadable body (a broken gzip stream) is never read: left
    to itself, aiohttp would try to drain it and log the failure as unhandled.
    """
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # the answer is buffered; a close still sends it
    return response


def _abort(request: web.Request, *, reset: bool) -> None:
    """Drop the connection without an answer; ``reset`` sends a TCP RST instead of a FIN."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if reset and sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _write_raw(request: web.Request, raw: bytes) -> None:
    """Send ``raw`` bytes as the whole answer, bypassing aiohttp, then close the connection."""
    transport = request.transport
    if transport is None:
        return
    transport.write(raw)
    transport.close()


def _parse_json(body: bytes) -> Any | None:
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json can go
        return None


def _error(exc: ApiError) -> web.Response:
    return web.json_response(exc.body, status=exc.status, headers=exc.headers)


def _ok(data: dict[str, Any]) -> web.Response:
    return web.json_response({"code": 200, "data": data})
