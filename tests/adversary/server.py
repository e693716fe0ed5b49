"""A hostile Vidgo API: raw HTTP/1.1 on asyncio sockets, written from ``docs/vidgo-api.md``.

No aiohttp here, so that it can misbehave at wire level. Each request is
answered by the next *action* scripted for its route (and task id), else by
the documented default behaviour:

- ``POST /api/generate/submit`` creates a task per track; a second submit
  of a track answers 409 naming the existing task (the vendor's rule);
- ``GET /api/generate/detail/music?task_id=`` and ``/api/generate/status/{id}``
  describe a task, which finishes ``finish_after`` seconds after creation;
- ``GET /api/user/balance``; ``GET /files/...`` serves a small WAV file.

Every request is logged with its arrival time and route, and creations are
counted per track, so tests can assert server-side invariants.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import struct
import time
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

SUBMIT, DETAIL, STATUS, BALANCE, FILE, OTHER = (
    "submit",
    "detail",
    "status",
    "balance",
    "file",
    "other",
)
_REASONS = {200: "OK", 206: "Partial Content", 301: "Moved", 302: "Found", 307: "Redirect"}


@dataclass
class Request:
    """One request as the server read it."""

    method: str
    target: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float  # time.monotonic() when its head was read
    route: str = OTHER
    path: str = ""
    query: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class TaskState:
    """A task on the server; it runs until ``finish_after`` seconds after ``created``."""

    task_id: str
    audio_id: str | None = None
    created: float = field(default_factory=time.monotonic)
    finish_after: float = 0.0
    progress: Any = None  # reported while running (a callable of the age: computed)
    outcome: str = "finished"  # or "failed"
    error_message: Any = None
    files: list[Any] | None = None  # None: one file with a wav_url on this server
    extra: dict[str, Any] = field(default_factory=dict)  # merged last, may override
    words: dict[str, str] = field(default_factory=dict)  # a sister's word for a status

    def finished(self, now: float) -> bool:
        return now - self.created >= self.finish_after

    def data(self, now: float, base: str) -> dict[str, Any]:
        done = self.finished(now)
        name = quote(self.task_id, safe="", errors="surrogatepass")
        files = self.files if self.files is not None else [{"wav_url": f"{base}/files/{name}.wav"}]
        data: dict[str, Any] = {
            "task_id": self.task_id,
            "status": self.words.get(status := self.outcome if done else "running", status),
            "files": files if done and self.outcome == "finished" else [],
            "created_time": "2025-11-25T08:50:13",
            "error_message": self.error_message if done else None,
        }
        if not done and self.progress is not None:
            progress = self.progress
            data["progress"] = progress(now - self.created) if callable(progress) else progress
        data.update(self.extra)
        return data


def wav_bytes(frames: int = 64, *, declared: int | None = None) -> bytes:
    """A small RIFF/WAVE file (silence); ``declared``: the RIFF size to claim instead."""
    data = b"\0" * (frames * 2)
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data))
    body += data
    size = len(body) if declared is None else declared
    return b"RIFF" + struct.pack("<I", size) + body


def envelope(data: Any, code: Any = 200, **extra: Any) -> dict[str, Any]:
    return {"code": code, "data": data, **extra}


class Conn:
    """The server side of one connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.open = True

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(
        self,
        status: int,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        *,
        length: int | str | None = "auto",
        close: bool = False,
    ) -> None:
        """A response; ``length``: the Content-Length to declare (None: none)."""
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Whatever')}"]
        lines += [f"{name}: {value}" for name, value in headers]
        if length == "auto":
            length = len(body)
        if length is not None:
            lines.append(f"Content-Length: {length}")
        if close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "backslashreplace")
        await self.write(head + body)
        if close:
            self.close()

    def close(self) -> None:
        self.open = False
        self.writer.close()

    def reset(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0)."""
        self.open = False
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()


Action = Callable[["HostileServer", Request, Conn], Awaitable[None]]


class HostileServer:
    """The server; ``url`` once started. See the module docstring."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.url = ""
        self.log: list[Request] = []
        self.tasks: dict[str, TaskState] = {}
        self.by_track: dict[tuple[str, str], str] = {}
        self.creations: Counter[str] = Counter()  # per audio_id
        self.callback_urls: list[str] = []
        self.task_defaults: dict[str, Any] = {}  # TaskState fields of created tasks
        self.next_ids: deque[Any] = deque()  # ids to issue before wav-1, wav-2 ...
        self.credits: Any = 17276
        self.wav = wav_bytes()
        self._ids = itertools.count(1)
        self._scripts: defaultdict[tuple[str, str | None], deque[Action]] = defaultdict(deque)
        self._server: asyncio.Server | None = None
        self._conns: set[Conn] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> HostileServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=1 << 16)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.reset()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    # -- scripting and counting ------------------------------------------------

    def script(self, route: str, *actions: Action, task_id: str | None = None) -> None:
        """Answer the next requests to ``route`` (of ``task_id`` only, if given) by ``actions``."""
        self._scripts[(route, task_id)].extend(actions)

    def unscript(self, route: str, task_id: str | None = None) -> None:
        """Forget the actions left for ``route``: it answers as the API does again."""
        self._scripts.pop((route, task_id), None)

    def hits(self, route: str) -> list[Request]:
        return [request for request in self.log if request.route == route]

    def add_task(self, task_id: str, **fields: Any) -> TaskState:
        task = self.tasks[task_id] = TaskState(task_id, **fields)
        return task

    # -- the connection loop ------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(reader, writer)
        self._conns.add(conn)
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while conn.open:
                request = await self._read(reader)
                if request is None:
                    break
                self.log.append(request)
                await self._next_action(request)(self, request, conn)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._conns.discard(conn)
            self._handlers.discard(task)
            conn.close()

    async def _read(self, reader: asyncio.StreamReader) -> Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        at = time.monotonic()
        first, *lines = head.decode("latin-1").split("\r\n")
        method, target, _ = first.split(" ", 2)
        headers = {}
        for line in lines:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        request = Request(method, target, headers, body, at)
        parts = urlsplit(target)
        request.path = unquote(parts.path)
        request.query = dict(parse_qsl(parts.query, keep_blank_values=True))
        request.route = _route(method, parts.path)
        return request

    def _next_action(self, request: Request) -> Action:
        task_id = _task_of(request)
        for key in ((request.route, task_id), (request.route, None)):
            queue = self._scripts.get(key)
            if queue:
                return queue.popleft()
        return default

    # -- the documented behaviour --------------------------------------------------

    def process(self, request: Request) -> tuple[int, Any]:
        """The documented answer (status, JSON payload or raw bytes), with its side effects."""
        if request.route == FILE:
            return 200, self.wav
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"code": 401, "message": "check the API key"}
        if request.route == SUBMIT:
            return self._submit(request.json())
        if request.route in (DETAIL, STATUS):
            task = self.tasks.get(_task_of(request) or "")
            if task is None:
                return 404, {"code": 404, "message": "task not found"}
            return 200, envelope(task.data(time.monotonic(), self.url))
        if request.route == BALANCE:
            return 200, envelope({"email": "a@example.com", "credits_amount": self.credits})
        return 404, {"code": 404, "message": "no such route"}

    def _submit(self, body: dict[str, Any]) -> tuple[int, Any]:
        source, audio = body["input"]["task_id"], body["input"]["audio_id"]
        if body.get("callback_url"):
            self.callback_urls.append(body["callback_url"])
        existing = self.by_track.get((source, audio))
        if existing is not None:
            message = "This audio has already been converted to WAV"
            return 409, {"code": 409, "message": message, "data": {"task_id": existing}}
        self.creations[audio] += 1
        task_id = self.next_ids.popleft() if self.next_ids else f"wav-{next(self._ids)}"
        key = str(task_id)
        self.tasks[key] = TaskState(key, audio_id=audio, **self.task_defaults)
        self.by_track[(source, audio)] = key
        data = {"task_id": task_id, "status": "not_started", "created_time": "2025-11-12T10:30:00"}
        return 200, envelope(data)


def _route(method: str, path: str) -> str:
    if method == "POST" and path == "/api/generate/submit":
        return SUBMIT
    if method == "GET" and path == "/api/generate/detail/music":
        return DETAIL
    if method == "GET" and path.startswith("/api/generate/status/"):
        return STATUS
    if method == "GET" and path == "/api/user/balance":
        return BALANCE
    if method == "GET" and path.startswith("/files/"):
        return FILE
    return OTHER


def _task_of(request: Request) -> str | None:
    if request.route == DETAIL:
        return request.query.get("task_id")
    if request.route == STATUS:
        return request.path.rsplit("/", 1)[1]
    return None


def encode(payload: Any) -> bytes:
    """JSON bytes (lone surrogates as ``\\udXXX`` escapes); bytes pass through."""
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload).encode()


# -- actions ----------------------------------------------------------------------


async def default(server: HostileServer, request: Request, conn: Conn) -> None:
    """The documented answer."""
    status, payload = server.process(request)
    content_type = "audio/wav" if request.route == FILE else "application/json"
    await conn.send(status, encode(payload), [("Content-Type", content_type)])


def reply(
    status: int,
    payload: Any = b"",
    headers: Iterable[tuple[str, str]] = (),
    *,
    process: bool = False,
    length: int | str | None = "auto",
    close: bool = False,
) -> Action:
    """Answer ``status`` with ``payload`` (JSON, or raw bytes); ``process``: apply the
    documented side effects (a creation ...) first, as a server behind a proxy would."""

    async def action(server: HostileServer, request: Request, conn: Conn) -> None:
        if process:
            server.process(request)
        body = encode(payload)
        all_headers = [("Content-Type", "application/json"), *headers]
        await conn.send(status, body, all_headers, length=length, close=close)

    return action


def reset(*, process: bool = True) -> Action:
    """Read the request, (by default) process it, then reset the connection."""

    async def action(server: HostileServer, request: Request, conn: Conn) -> None:
        if process:
            server.process(request)
        conn.reset()

    return action


def raw(data: bytes, *, process: bool = False, close: bool = True) -> Action:
    """Write ``data`` as the whole answer (status line included), then close."""

    async def action(server: HostileServer, request: Request, conn: Conn) -> None:
        if process:
            server.process(request)
        await conn.write(data)
        if close:
            conn.close()

    return action


def hang(started: asyncio.Event | None = None) -> Action:
    """Never answer; keep the connection until the client drops it."""

    async def action(server: HostileServer, request: Request, conn: Conn) -> None:
        if started is not None:
            started.set()
        with contextlib.suppress(ConnectionError):
            while await conn.reader.read(65536):
                pass
        conn.close()

    return action


def gate(release: asyncio.Event, arrived: asyncio.Event | None = None) -> Action:
    """The documented answer as of arrival, sent once ``release`` is set."""

    async def action(server: HostileServer, request: Request, conn: Conn) -> None:
        status, payload = server.process(request)
        if arrived is not None:
            arrived.set()
        await release.wait()
        await conn.send(status, encode(payload), [("Content-Type", "application/json")])

    return action


def half_close() -> Action:
    """Read the request, then shut the write side without answering."""

    async def action(server: HostileServer, request: Request, conn: Conn) -> None:
        conn.writer.write_eof()
        with contextlib.suppress(ConnectionError):
            while await conn.reader.read(65536):  # until the client gives up
                pass
        conn.close()

    return action


def stream(
    status: int,
    head: bytes,
    chunk: bytes,
    *,
    every: float = 0.0,
    headers: Iterable[tuple[str, str]] = (),
    length: int | None = None,
) -> Action:
    """``head``, then ``chunk`` forever (every ``every`` seconds) until the client hangs up;
    no Content-Length unless ``length`` (the body is framed by closing)."""

    async def action(server: HostileServer, request: Request, conn: Conn) -> None:
        await conn.send(status, head, headers, length=length)
        conn.open = False
        with contextlib.suppress(ConnectionError, RuntimeError):
            while not conn.writer.is_closing():
                await conn.write(chunk)
                await asyncio.sleep(every)
        conn.close()

    return action


@contextlib.asynccontextmanager
async def running(api_key: str) -> AsyncIterator[HostileServer]:
    server = await HostileServer(api_key).start()
    try:
        yield server
    finally:
        await server.close()
