"""Absurd numbers, deep JSON and wire-level misbehaviour (issue 12 #9, #10, and more)."""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any

import pytest

from vidgo_async import (
    BadRequestError,
    Balance,
    InvalidResponseError,
    NotFoundError,
    RetryPolicy,
    Task,
    Timeouts,
    TransportError,
    VidgoClient,
    VidgoError,
)

from .conftest import MakeSdk
from .server import (
    BALANCE,
    DETAIL,
    SUBMIT,
    Action,
    Conn,
    HostileServer,
    Request,
    envelope,
    half_close,
    raw,
    reply,
    stream,
)
from .support import FORBIDDEN, PARENT, TRACK, convert

HUGE = int("9" * 400)
NEVER = 1e9


def one_shot(make_sdk: MakeSdk, **kwargs: Any) -> VidgoClient:
    """A client that makes one attempt per call, so the raw outcome shows."""
    return make_sdk(retry=RetryPolicy(max_attempts=1, base_delay=0.001, max_delay=0.01), **kwargs)


async def outcome(call: Any, limit: float = 5.0) -> Any:
    """The call's result or its VidgoError; anything else (or a hang) fails the test."""
    try:
        return await asyncio.wait_for(call, limit)
    except VidgoError as exc:
        return exc


# -- 9. 400-digit integers ------------------------------------------------------------


@pytest.mark.parametrize("value", [HUGE, -HUGE], ids=["positive", "negative"])
@pytest.mark.asyncio
async def test_huge_progress_on_get_task(
    server: HostileServer, sdk: VidgoClient, value: int
) -> None:
    """A ~400-digit progress gives a Task or a typed error from get_task, never OverflowError."""
    server.add_task("t1", finish_after=NEVER, progress=value)
    result = await outcome(sdk.get_task("t1"))
    assert isinstance(result, (Task, VidgoError)), repr(result)


@pytest.mark.asyncio
async def test_huge_progress_during_wait(server: HostileServer, sdk: VidgoClient) -> None:
    """A ~400-digit progress while running does not break the wait; it returns once finished."""
    server.add_task("t1", finish_after=0.2, progress=HUGE)
    task = await asyncio.wait_for(sdk.wait("t1", timeout=3), 5)
    assert task.status.value == "finished"


@pytest.mark.parametrize("value", [HUGE, -HUGE], ids=["positive", "negative"])
@pytest.mark.asyncio
async def test_huge_balance(server: HostileServer, sdk: VidgoClient, value: int) -> None:
    """A ~400-digit credits_amount gives a Balance or a typed error, never OverflowError."""
    server.credits = value
    result = await outcome(sdk.balance())
    assert isinstance(result, (Balance, VidgoError)), repr(result)


@pytest.mark.parametrize(
    "number", ['"' + "9" * 400 + '"', "1e400", "-1e999", "9" * 5000, "Infinity", "-0", "1E-400"]
)
@pytest.mark.asyncio
async def test_other_absurd_numbers(server: HostileServer, sdk: VidgoClient, number: str) -> None:
    """Absurd number spellings (digit strings, 1e400, 5000 digits, Infinity) stay typed."""
    task = '{"code": 200, "data": {"task_id": "t1", "status": "running", "progress": %s}}'
    server.script(DETAIL, reply(200, (task % number).encode()))
    balance = '{"code": 200, "data": {"credits_amount": %s}}'
    server.script(BALANCE, reply(200, (balance % number).encode()))
    assert isinstance(await outcome(sdk.get_task("t1")), (Task, VidgoError))
    assert isinstance(await outcome(sdk.balance()), (Balance, VidgoError))


# -- 10. deeply nested JSON --------------------------------------------------------------


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nested_message(depth: int) -> bytes:
    return b'{"code": 400, "error": {"message": ' + nested(depth) + b"}}"


@pytest.mark.parametrize("entry", ["submit_wav", "convert_to_wav", "get_task"])
@pytest.mark.asyncio
async def test_error_body_nested_near_the_recursion_limit(
    server: HostileServer, make_sdk: MakeSdk, entry: str
) -> None:
    """An error body nested 940..1000 deep (~980: parsed, then too deep) raises a typed error."""
    sdk = one_shot(make_sdk)
    server.add_task("t1")
    for depth in range(940, 1001):
        if entry == "get_task":
            server.script(DETAIL, reply(404, nested(depth)))
            call = sdk.get_task("t1")
        else:
            server.script(SUBMIT, reply(400, nested(depth)))
            method = getattr(sdk, entry)
            call = method(
                "parent", f"track-{depth}", **({"timeout": 2} if "convert" in entry else {})
            )
        result = await outcome(call)
        assert isinstance(result, VidgoError), (depth, result)


@pytest.mark.parametrize("shape", [nested, nested_message])
@pytest.mark.asyncio
async def test_error_body_nested_100000_deep(
    server: HostileServer, sdk: VidgoClient, shape: Any
) -> None:
    """A 100000 deep JSON array in a 400 body on a submit raises BadRequestError."""
    server.script(SUBMIT, reply(400, shape(100_000)))
    with pytest.raises(BadRequestError):
        await asyncio.wait_for(sdk.submit_wav("parent", "track"), 5)


@pytest.mark.parametrize("depth", [980, 100_000])
@pytest.mark.asyncio
async def test_deep_bodies_on_reads(server: HostileServer, make_sdk: MakeSdk, depth: int) -> None:
    """Deep JSON in a 404 body, a 200 body or a task's field stays a typed outcome."""
    sdk = one_shot(make_sdk)
    server.add_task("t1")
    server.script(DETAIL, reply(404, nested(depth)))
    with pytest.raises(NotFoundError):
        await asyncio.wait_for(sdk.get_task("t1"), 5)
    server.script(DETAIL, reply(200, nested(depth)))
    with pytest.raises(InvalidResponseError):
        await asyncio.wait_for(sdk.get_task("t1"), 5)
    deep_field = b'{"code": 200, "data": {"task_id": "t1", "status": "failed", "error_message": '
    server.script(DETAIL, reply(200, deep_field + nested(depth) + b"}}"))
    assert isinstance(await outcome(sdk.get_task("t1")), (Task, VidgoError))


# -- wire-level misbehaviour on reads ---------------------------------------------------


def gzip_bomb(size: int) -> Action:
    """A 200 whose gzip body unpacks to ``size`` bytes of zeros (packed when first sent)."""

    async def action(server: HostileServer, request: Request, conn: Conn) -> None:
        packer = zlib.compressobj(9, zlib.DEFLATED, 31)
        block = b"\0" * (1 << 20)
        body = b"".join(packer.compress(block) for _ in range(size >> 20)) + packer.flush()
        headers = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
        await conn.send(200, body, headers)

    return action


BODY = b'{"code": 200, "data": {"task_id": "t1", "status": "running"}}'
HEAD_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"

WIRE: list[Any] = [
    pytest.param(raw(b""), id="closed-without-answer"),
    pytest.param(half_close(), id="half-closed"),
    pytest.param(raw(b"HTTP/1.1 abc nonsense\r\n\r\n"), id="bad-status-line"),
    pytest.param(raw(b"\x16\x03\x01\x02\x00garbage"), id="tls-bytes"),
    pytest.param(
        raw(b"HTTP/1.1 200 OK\r\n" + b"X-Flood: 1\r\n" * 1000 + b"\r\n"), id="header-flood"
    ),
    pytest.param(raw(HEAD_OK + b"X-Long: " + b"a" * 200_000 + b"\r\n\r\n"), id="huge-header"),
    pytest.param(
        raw(HEAD_OK + b"Content-Length: 99999999999999999999999999\r\n\r\n{}"), id="cl-absurd"
    ),
    pytest.param(raw(HEAD_OK + b"Content-Length: -1\r\n\r\n" + BODY), id="cl-negative"),
    pytest.param(raw(HEAD_OK + b"Content-Length: abc\r\n\r\n" + BODY), id="cl-junk"),
    pytest.param(
        raw(HEAD_OK + b"Content-Length: 5\r\nContent-Length: 61\r\n\r\n" + BODY), id="cl-twice"
    ),
    pytest.param(raw(HEAD_OK + b"Content-Length: 500\r\n\r\n" + BODY), id="cl-past-body"),
    pytest.param(
        raw(HEAD_OK + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"), id="chunk-junk"
    ),
    pytest.param(
        raw(HEAD_OK + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffffff\r\nabc"),
        id="chunk-huge",
    ),
    pytest.param(
        raw(HEAD_OK + b"Transfer-Encoding: chunked\r\n\r\n-5\r\nabc\r\n0\r\n\r\n"), id="chunk-neg"
    ),
    pytest.param(
        raw(
            HEAD_OK
            + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        ),
        id="chunked-and-length",
    ),
    pytest.param(stream(200, b'{"code": 200, "data": "', b"A" * 65536), id="endless-body"),
    pytest.param(
        stream(200, b"", b"[" * 65536, headers=[("Content-Type", "application/json")]),
        id="endless-nesting",
    ),
    pytest.param(gzip_bomb(256 << 20), id="gzip-bomb"),
    pytest.param(reply(200, b"\x1f\x8b\x08garbage", [("Content-Encoding", "gzip")]), id="bad-gzip"),
    pytest.param(reply(200, BODY, [("Content-Encoding", "br, zstd, x-unknown")]), id="odd-coding"),
    pytest.param(reply(204, b""), id="204"),
    pytest.param(reply(600, BODY), id="status-600"),
    pytest.param(reply(999, b"{}"), id="status-999"),
    pytest.param(reply(200, envelope("x" * 900_000)), id="huge-string"),
    pytest.param(reply(200, b'{"code": 200, "data": "\\ud800\\udfff\\udc00"}'), id="surrogates"),
]


@pytest.mark.parametrize("action", WIRE)
@pytest.mark.asyncio
async def test_wire_misbehaviour_on_get_task(
    server: HostileServer, make_sdk: MakeSdk, action: Action
) -> None:
    """Every wire-level misbehaviour on a read ends in a Task or a typed error, within seconds."""
    sdk = one_shot(make_sdk, timeouts=Timeouts(connect=1, total=2))
    server.add_task("t1", finish_after=NEVER)
    server.script(DETAIL, action)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await outcome(sdk.get_task("t1"))
    assert isinstance(result, (Task, VidgoError)), repr(result)
    assert not isinstance(result, FORBIDDEN)
    assert loop.time() - started < 3
    # The connection pool is still usable afterwards.
    assert (await asyncio.wait_for(sdk.get_task("t1"), 5)).task_id == "t1"


@pytest.mark.asyncio
async def test_slow_loris_body_is_cut_by_the_timeout(
    server: HostileServer, make_sdk: MakeSdk
) -> None:
    """A body dripping a byte every 0.1 s ends in a typed timeout near Timeouts.total."""
    sdk = one_shot(make_sdk, timeouts=Timeouts(connect=1, total=0.5))
    server.add_task("t1")
    head = b'{"code": 200, "data": {"task_id": "t1"'
    server.script(DETAIL, stream(200, head, b" ", every=0.1, length=10_000))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TransportError):
        await asyncio.wait_for(sdk.get_task("t1"), 5)
    assert loop.time() - started < 1.5


@pytest.mark.asyncio
async def test_bytes_past_content_length_are_not_a_second_answer(
    server: HostileServer, sdk: VidgoClient
) -> None:
    """Bytes after the declared body (a smuggled second response) never answer the next request."""
    server.add_task("t1", finish_after=NEVER)
    evil = json.dumps(envelope({"task_id": "t1", "status": "failed", "error_message": "evil"}))
    smuggled = f"HTTP/1.1 200 OK\r\nContent-Length: {len(evil)}\r\n\r\n{evil}".encode()
    server.script(
        DETAIL,
        raw(
            HEAD_OK + f"Content-Length: {len(BODY)}\r\n\r\n".encode() + BODY + smuggled, close=False
        ),
    )
    first = await asyncio.wait_for(sdk.get_task("t1"), 5)
    assert first.status.value == "running"
    second = await outcome(sdk.get_task("t1"))
    assert not (isinstance(second, Task) and second.error_message == "evil"), second


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xef\xbb\xbf" + BODY, id="utf8-bom"),
        pytest.param(BODY.decode().encode("utf-16"), id="utf16-bom"),
        pytest.param(
            b'{"code": 200, "data": {"task_id": "t1", "status": "finished", "status": "running"}}',
            id="duplicate-status",
        ),
        pytest.param(
            b'{"code": 500, "code": 200, "data": {"task_id": "t1", "status": "running"}}',
            id="duplicate-code",
        ),
        pytest.param(
            b'{"code": 200.0, "data": {"task_id": "t1", "status": "running"}}', id="float-code"
        ),
        pytest.param(
            b'{"code": true, "data": {"task_id": "t1", "status": "running"}}', id="bool-code"
        ),
        pytest.param(
            b'{"code": null, "data": {"task_id": "t1", "status": "running"}}', id="null-code"
        ),
        pytest.param(
            b'{"code": 200, "data": {"task_id": "t1", "status": "running", "progress": NaN}}',
            id="nan",
        ),
        pytest.param(
            b'  \n{"code": 200, "data": {"task_id": "t1", "status": "running"}}\n\n', id="ws"
        ),
        pytest.param(
            b'{"code": 200, "data": {"task_id": "t1", "status": "running"}}\x00', id="nul"
        ),
    ],
)
@pytest.mark.asyncio
async def test_odd_json_spellings(server: HostileServer, make_sdk: MakeSdk, body: bytes) -> None:
    """BOMs, duplicate keys, odd codes, NaN and stray bytes give a Task or a typed error."""
    sdk = one_shot(make_sdk)
    server.add_task("t1")
    server.script(DETAIL, reply(200, body))
    result = await outcome(sdk.get_task("t1"))
    assert isinstance(result, (Task, VidgoError)), repr(result)
    if isinstance(result, Task):
        assert result.task_id == "t1"


@pytest.mark.asyncio
async def test_balance_answers(server: HostileServer, make_sdk: MakeSdk) -> None:
    """balance() reads the documented answer and refuses junk with a typed error."""
    sdk = one_shot(make_sdk)
    assert (await sdk.balance()).credits_amount == 17276
    for junk in (envelope([]), envelope({"credits_amount": None}), envelope("12"), b"[]"):
        server.script(BALANCE, reply(200, junk))
        assert isinstance(await outcome(sdk.balance()), (Balance, VidgoError))


GATEWAY_BODIES = [
    pytest.param({"status": "error", "message": "upstream timed out"}, id="no-task"),
    pytest.param({"task_id": "wav-1", "status": "error", "message": "busy"}, id="its-task"),
    pytest.param({"id": "req_8f2a91", "status": "failure"}, id="request-id"),
]


@pytest.mark.parametrize("body", GATEWAY_BODIES)
@pytest.mark.asyncio
async def test_an_answer_without_its_envelope_is_no_verdict_on_the_task(
    server: HostileServer, sdk: VidgoClient, body: dict[str, Any]
) -> None:
    """A gateway's 200 without the ``{code, data}`` envelope, even naming the task, is no
    news, never the task's failure: the wait goes on to its WAV URL (read as the task
    itself, a batch journalled the paid task failed, and no re-run waited on it)."""
    server.script(DETAIL, reply(200, body))
    assert await convert(sdk) == f"{server.url}/files/wav-1.wav"


@pytest.mark.parametrize(
    "body",
    [*GATEWAY_BODIES, pytest.param(envelope({"task_id": PARENT}), id="parent-echo")],
)
@pytest.mark.asyncio
async def test_a_submit_answer_naming_no_new_task_is_not_taken_as_accepted(
    server: HostileServer, sdk: VidgoClient, body: dict[str, Any]
) -> None:
    """A submit processed, then answered by a gateway's body without the envelope, or by
    one naming the parent music task (an echo of the input): no task is taken from it
    (a request id would be waited on for ever); the 409 rule finds the conversion,
    which is converted once."""
    server.script(SUBMIT, reply(200, body, process=True))
    assert await convert(sdk) == f"{server.url}/files/wav-1.wav"
    assert server.creations[TRACK] == 1


@pytest.mark.asyncio
async def test_an_envelope_code_without_data_is_still_refused(
    server: HostileServer, make_sdk: MakeSdk
) -> None:
    """``{"code": 200}`` alone is an envelope missing its data, not a bare object."""
    server.script(DETAIL, reply(200, {"code": 200, "task_id": "t1", "status": "finished"}))
    exc = await outcome(one_shot(make_sdk).get_task("t1"))
    assert isinstance(exc, InvalidResponseError), exc
