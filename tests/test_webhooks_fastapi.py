"""The README's FastAPI callback route, as written, under uvicorn on a real socket.

The route is the README's own block (its public URL pointed at the test server),
so that what a user copies is what is tested: the fake delivers its callbacks
to it over HTTP, and hostile senders (oversized, slow, hanging up mid-body)
get a 4xx, never a 500 or a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import types
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from vidgo_async import PollPolicy
from vidgo_async.testing import FakeVidgo, fast_client

uvicorn = pytest.importorskip("uvicorn", reason="the test extra installs uvicorn")
pytest.importorskip("fastapi", reason="the test extra installs FastAPI")

pytestmark = pytest.mark.asyncio

README = Path(__file__).resolve().parent.parent / "README.md"
PUBLIC = '"https://hooks.example.com"'
OK_BODY = b'{"code": 200, "data": {"task_id": "t", "status": "finished"}}'
# A safety net far longer than the tasks: a wait that returns quickly was woken by a callback.
SLOW_NET = PollPolicy(initial=0.01, factor=1.5, max_interval=0.05, callback_interval=30.0)


def readme_route(public_url: str) -> types.ModuleType:
    """The README's FastAPI block, run as a module, its receiver's public URL replaced."""
    blocks = re.findall(r"^```python\n(.*?)^```$", README.read_text("utf-8"), re.S | re.M)
    (source,) = [block for block in blocks if "from fastapi import" in block]
    assert source.count(PUBLIC) == 1
    module = types.ModuleType("readme_fastapi_route")
    exec(compile(source.replace(PUBLIC, repr(public_url)), "README.md", "exec"), vars(module))
    return module


class Served:
    """The route under uvicorn, and what was logged meanwhile."""

    def __init__(self, route: types.ModuleType, url: str, caplog: pytest.LogCaptureFixture):
        self.route = route
        self.url = url
        self.caplog = caplog
        self.host, port = url.split("//")[1].rsplit(":", 1)
        self.port = int(port)

    def errors(self) -> list[str]:
        """What was logged at ERROR or above (uvicorn logs a 500's traceback there)."""
        return [r.getMessage() for r in self.caplog.records if r.levelno >= logging.ERROR]


@pytest_asyncio.fixture
async def served(caplog: pytest.LogCaptureFixture) -> AsyncIterator[Served]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    route = readme_route(url)
    config = uvicorn.Config(route.app, log_level="warning", lifespan="off", log_config=None)
    server = uvicorn.Server(config)  # log_config=None: its records reach caplog
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(200):
            if server.started or serving.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield Served(route, url, caplog)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        sock.close()


async def test_waits_return_on_callbacks_through_the_readme_route(
    fake: FakeVidgo, served: Served
) -> None:
    """Conversions whose callbacks reach the README's route return long before the safety
    net would have found them, with about one status read each."""
    async with fast_client(fake, poll=SLOW_NET, callbacks=served.route.receiver) as client:
        pairs = [("music", f"audio-{i}") for i in range(8)]
        urls = await asyncio.wait_for(
            asyncio.gather(*(client.convert_to_wav(t, a, timeout=20) for t, a in pairs)), 10
        )
    assert all(url.endswith(".wav") for url in urls)
    assert len(fake.requests_to("detail")) <= 2 * len(pairs)
    assert served.errors() == []


async def _send(served: Served, head: str, body: bytes = b"", *, hang_up: bool) -> bytes:
    """Send ``head`` and ``body``; the answer's status line ("" if it hung up first)."""
    reader, writer = await asyncio.open_connection(served.host, served.port)
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        if hang_up:
            return b""
        return await asyncio.wait_for(reader.readline(), 15)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def _head(length: int) -> str:
    return (
        "POST /vidgo/callbacks/some.token HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )


async def test_a_sender_that_hangs_up_mid_body_causes_no_500(served: Served) -> None:
    """The README's route answers a sender that gives up mid-body with a 400 nobody
    reads: uvicorn logs no "Exception in ASGI application" (it did, with a traceback)."""
    for _ in range(5):
        await _send(served, _head(1000), b"{", hang_up=True)
    await asyncio.sleep(0.3)  # the handlers see the disconnects
    assert served.errors() == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b"{not json", b"400", id="not-json"),
        pytest.param(b" " * (64 * 1024 + 1), b"413", id="oversized"),
        pytest.param(OK_BODY, b"200", id="unknown-token"),
    ],
)
async def test_odd_bodies_get_a_4xx_not_a_500(served: Served, body: bytes, status: bytes) -> None:
    """Garbage is a 400, an oversized body a 413, an unknown token's callback a 200."""
    line = await _send(served, _head(len(body)), body, hang_up=False)
    assert line.split()[1] == status
    assert served.errors() == []


@pytest.mark.slow
async def test_a_slow_sender_holds_the_route_no_longer_than_its_limit(served: Served) -> None:
    """A body trickled slower than the route's 10 s is answered 408 when they are up."""
    started = asyncio.get_running_loop().time()
    line = await _send(served, _head(1000), b"{", hang_up=False)
    assert line.split()[1] == b"408"
    assert asyncio.get_running_loop().time() - started < 12
    assert served.errors() == []
