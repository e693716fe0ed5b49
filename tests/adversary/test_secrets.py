"""The API key is never repeated; server text we repeat is capped and escaped (issue 12 #14)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from vidgo_async import (
    APIError,
    AuthenticationError,
    InvalidResponseError,
    RetryPolicy,
    VidgoClient,
    VidgoError,
)

from .conftest import MakeSdk
from .server import DETAIL, FILE, SUBMIT, HostileServer, reply
from .support import KEY, assert_no_key

ECHOES = [
    pytest.param({"code": 401, "message": f"invalid key {KEY}"}, id="message"),
    pytest.param({"code": 401, "error": {"message": f"Bearer {KEY} is not valid"}}, id="error"),
    pytest.param({"code": 401, "msg": f"key={KEY}"}, id="msg"),
    pytest.param(f"<html>401: {KEY}</html>".encode(), id="html"),
]


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every log record at DEBUG, read through ``.records`` when the test checks it."""
    caplog.set_level(logging.DEBUG)
    return caplog


async def failure(call: Any) -> VidgoError:
    try:
        await asyncio.wait_for(call, 5)
    except VidgoError as exc:
        return exc
    raise AssertionError("the call succeeded")


@pytest.mark.parametrize("body", ECHOES)
@pytest.mark.asyncio
async def test_401_echoing_the_key(
    server: HostileServer, sdk: VidgoClient, body: Any, debug_log: pytest.LogCaptureFixture
) -> None:
    """An AuthenticationError from a 401 body that echoes the key does not contain it."""
    server.script(SUBMIT, reply(401, body))
    exc = await failure(sdk.submit_wav("parent", "track"))
    assert isinstance(exc, AuthenticationError)
    assert_no_key(exc, debug_log.records)


@pytest.mark.asyncio
async def test_200_with_code_401_echoing_the_key(
    server: HostileServer, sdk: VidgoClient, debug_log: pytest.LogCaptureFixture
) -> None:
    """An HTTP 200 carrying code 401 and the key gives an error without the key."""
    server.add_task("t1")
    server.script(DETAIL, reply(200, {"code": 401, "message": f"bad key {KEY}"}))
    exc = await failure(sdk.get_task("t1"))
    assert isinstance(exc, AuthenticationError)
    assert_no_key(exc, debug_log.records)


@pytest.mark.asyncio
async def test_5xx_echoing_the_key_on_polls(
    server: HostileServer, sdk: VidgoClient, debug_log: pytest.LogCaptureFixture
) -> None:
    """A 5xx body echoing the key on polls is in no DEBUG line; the wait still succeeds."""
    server.add_task("t1")
    echo = reply(502, f"upstream rejected Authorization: Bearer {KEY}".encode())
    server.script(DETAIL, echo, echo, echo)
    task = await asyncio.wait_for(sdk.wait("t1", timeout=3), 5)
    assert task.status.value == "finished"
    assert_no_key(None, debug_log.records)


@pytest.mark.asyncio
async def test_5xx_echoing_the_key_in_a_final_error(
    server: HostileServer, make_sdk: MakeSdk, debug_log: pytest.LogCaptureFixture
) -> None:
    """get_task's ServerError after 5xx bodies echoing the key holds it nowhere in its chain."""
    sdk = make_sdk(retry=RetryPolicy(max_attempts=2, base_delay=0.001))
    server.add_task("t1")
    body = {"code": 500, "error": {"message": f"token {KEY} crashed the handler"}}
    server.script(DETAIL, *[reply(500, body, [("X-Echo", KEY)]) for _ in range(2)])
    exc = await failure(sdk.get_task("t1"))
    assert isinstance(exc, APIError)
    assert_no_key(exc, debug_log.records)


@pytest.mark.asyncio
async def test_5xx_echoing_the_key_in_an_unknown_submit(
    server: HostileServer, sdk: VidgoClient, debug_log: pytest.LogCaptureFixture
) -> None:
    """SubmitOutcomeUnknownError after 500s echoing the key: not in it, its causes or the log."""
    body = {"code": 500, "message": f"Authorization: Bearer {KEY}"}
    server.script(SUBMIT, *[reply(500, body, process=True) for _ in range(10_000)])
    exc = await failure(sdk.convert_to_wav("parent", "track", timeout=0.3))
    assert type(exc).__name__ == "SubmitOutcomeUnknownError"
    assert_no_key(exc, debug_log.records)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.asyncio
async def test_redirect_location_echoing_the_key(
    server: HostileServer, make_sdk: MakeSdk, status: int, debug_log: pytest.LogCaptureFixture
) -> None:
    """The "unexpected redirect" error does not repeat a key carried by the Location header."""
    sdk = make_sdk(retry=RetryPolicy(max_attempts=1))
    server.add_task("t1")
    location = f"https://evil.example/steal?key={KEY}&b=Bearer%20{KEY}"
    server.script(DETAIL, reply(status, f"moved to {location}".encode(), [("Location", location)]))
    exc = await failure(sdk.get_task("t1"))
    assert isinstance(exc, InvalidResponseError)
    assert_no_key(exc, debug_log.records)


@pytest.mark.parametrize("status", [200, 404, 503])
@pytest.mark.asyncio
async def test_download_url_carrying_the_key(
    server: HostileServer,
    make_sdk: MakeSdk,
    tmp_path: Path,
    status: int,
    debug_log: pytest.LogCaptureFixture,
) -> None:
    """A wav_url whose path carries the key appears in no download log line or error."""
    sdk = make_sdk(retry=RetryPolicy(max_attempts=2, base_delay=0.001))
    if status != 200:
        server.script(FILE, *[reply(status, f"no such file {KEY}".encode()) for _ in range(2)])
    url = f"{server.url}/files/{KEY}/track.wav"
    exc = None
    try:
        await asyncio.wait_for(sdk.download(url, tmp_path / "x.wav", timeout=3), 5)
    except VidgoError as error:
        exc = error
    assert (exc is None) == (status == 200), repr(exc)
    assert_no_key(exc, debug_log.records)


@pytest.mark.asyncio
async def test_key_is_sent_to_the_api_only(
    server: HostileServer, sdk: VidgoClient, tmp_path: Path
) -> None:
    """The key goes in the Authorization header of API requests, never to file downloads."""
    url = await asyncio.wait_for(sdk.convert_to_wav("parent", "track", timeout=3), 5)
    await asyncio.wait_for(sdk.download(url, tmp_path / "x.wav"), 5)
    for hit in server.log:
        sent = hit.headers.get("authorization")
        assert sent == (None if hit.route == FILE else f"Bearer {KEY}"), hit.route
    assert KEY not in repr(sdk)


# -- server text repeated: capped, escaped --------------------------------------------


@pytest.mark.asyncio
async def test_huge_error_message_is_capped(server: HostileServer, sdk: VidgoClient) -> None:
    """A 900,000-character error_message is not embedded whole in the TaskFailedError."""
    server.add_task("t1", outcome="failed", error_message="E" * 900_000)
    exc = await failure(sdk.wait("t1", timeout=2))
    assert type(exc).__name__ == "TaskFailedError"
    assert len(str(exc)) < 10_000


@pytest.mark.asyncio
async def test_error_message_control_characters_are_escaped(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """Control characters of a failed task's error_message are escaped in the error's text."""
    message = "boom\x1b[2J\r\n2025-01-01 INFO all good\x00\x07"
    server.add_task("t1", outcome="failed", error_message=message)
    exc = await failure(sdk.wait("t1", timeout=2))
    assert type(exc).__name__ == "TaskFailedError"
    assert not [c for c in str(exc) if ord(c) < 32 or ord(c) == 127], repr(str(exc))


@pytest.mark.asyncio
async def test_failed_task_message_echoing_the_key(
    server: HostileServer, sdk: VidgoClient, debug_log: pytest.LogCaptureFixture
) -> None:
    """A failed task whose error_message echoes the key gives a TaskFailedError without it."""
    server.add_task("t1", outcome="failed", error_message=f"bad auth {KEY}")
    exc = await failure(sdk.wait("t1", timeout=2))
    assert_no_key(exc, debug_log.records)


@pytest.mark.parametrize("status", [400, 500])
@pytest.mark.asyncio
async def test_huge_api_error_message_is_capped(
    server: HostileServer, make_sdk: MakeSdk, status: int
) -> None:
    """A 900,000-character, control-laden error message is capped and escaped in the APIError."""
    sdk = make_sdk(retry=RetryPolicy(max_attempts=1))
    server.add_task("t1")
    body = {"code": status, "message": "\x1b[31m\r\n" + "M" * 900_000}
    server.script(DETAIL, reply(status, body))
    exc = await failure(sdk.get_task("t1"))
    assert len(str(exc)) < 10_000
    assert not [c for c in str(exc) if ord(c) < 32 or ord(c) == 127]
