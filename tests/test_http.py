"""What comes off the wire: every status and body shape becomes the right typed error."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import MakeClient

from vidgo_async import (
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
    RetryPolicy,
    ServerError,
    Task,
    TaskStatus,
    Timeouts,
    TransportError,
    VidgoClient,
    VidgoError,
)
from vidgo_async.testing import FakeVidgo, Fault

pytestmark = pytest.mark.asyncio

MIB = 1024 * 1024

STATUS_CLASSES = [
    (400, BadRequestError),
    (401, AuthenticationError),
    (402, InsufficientCreditsError),
    (403, PermissionDeniedError),
    (404, NotFoundError),
    (405, APIError),
    (409, ConflictError),
    (418, APIError),
    (422, BadRequestError),
    (429, RateLimitError),
    (500, ServerError),
    (502, ServerError),
    (503, ServerError),
    (504, ServerError),
    (599, ServerError),
]


def body_of(shape: str, status: int) -> Any:
    """An error body of the given shape, carrying the word "boom" where it can."""
    return {
        "error.message": {"code": status, "error": {"message": "boom", "type": "x"}},
        "message": {"code": status, "message": "boom"},
        "msg": {"code": status, "msg": "boom"},
        "html": b"<html><body><h1>boom</h1></body></html>",
        "text": b"boom",
        "empty": None,
        "json-list": [1, 2, 3],
    }[shape]


SHAPES = ["error.message", "message", "msg", "html", "text", "empty", "json-list"]


@pytest.mark.parametrize(("status", "cls"), STATUS_CLASSES)
@pytest.mark.parametrize("shape", SHAPES)
async def test_error_status_maps_to_error_class(
    fake: FakeVidgo, one_shot: VidgoClient, status: int, cls: type[APIError], shape: str
) -> None:
    """An error status becomes its error class, whatever the body looks like."""
    fake.inject(Fault.http_error(status, body_of(shape, status)), route="detail")
    with pytest.raises(APIError) as info:
        await one_shot.get_task("task-1")
    assert type(info.value) is cls
    assert info.value.status == status


@pytest.mark.parametrize("shape", ["error.message", "message", "msg", "html", "text"])
async def test_error_message_is_read_from_body(
    fake: FakeVidgo, one_shot: VidgoClient, shape: str
) -> None:
    """The server's message reaches the error, from whichever field carried it."""
    fake.inject(Fault.http_error(400, body_of(shape, 400)), route="detail")
    with pytest.raises(BadRequestError) as info:
        await one_shot.get_task("task-1")
    assert "boom" in info.value.message
    assert "boom" in str(info.value)


@pytest.mark.parametrize(
    "body",
    [
        {"error": {"message": "first"}, "message": "second", "msg": "third"},
        {"error": {"message": ""}, "message": "first", "msg": "second"},
        {"message": None, "msg": "first"},
    ],
)
async def test_error_message_precedence(
    fake: FakeVidgo, one_shot: VidgoClient, body: dict[str, Any]
) -> None:
    """error.message wins over message, which wins over msg; blanks are skipped."""
    fake.inject(Fault.http_error(404, body), route="detail")
    with pytest.raises(NotFoundError) as info:
        await one_shot.get_task("task-1")
    assert info.value.message == "first"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, InsufficientCreditsError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (429, RateLimitError),
        (500, ServerError),
        ("404", NotFoundError),
    ],
)
async def test_error_code_inside_http_200(
    fake: FakeVidgo, one_shot: VidgoClient, code: int | str, cls: type[APIError]
) -> None:
    """An HTTP 200 whose JSON code is not 200 is the error that code names."""
    body = {"code": code, "msg": "inside", "data": None}
    fake.inject(Fault.http_error(200, body), route="detail")
    with pytest.raises(APIError) as info:
        await one_shot.get_task("task-1")
    assert type(info.value) is cls
    assert info.value.code == int(code)
    assert info.value.message == "inside"


async def test_code_in_200_fault_is_a_server_error(fake: FakeVidgo, one_shot: VidgoClient) -> None:
    """The fake's scripted "code 500 inside HTTP 200" is reported as a ServerError."""
    fake.inject(Fault.code_in_200(500, "internal"), route="detail")
    with pytest.raises(ServerError, match="internal"):
        await one_shot.get_task("task-1")


async def test_envelope_without_code_is_accepted(fake: FakeVidgo, one_shot: VidgoClient) -> None:
    """A 200 envelope that omits ``code`` but carries data is a success."""
    body = {"data": {"task_id": "task-1", "status": "running"}}
    fake.inject(Fault.http_error(200, body), route="detail")
    task = await one_shot.get_task("task-1")
    assert task.task_id == "task-1"


_RUNNING = b'{"code": 200, "data": {"task_id": "t", "status": "running"}}'


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_RUNNING, id="bare"),
        pytest.param(b" \r\n\t" + _RUNNING, id="whitespace-before"),
        pytest.param(_RUNNING + b"\n\n \t", id="whitespace-after"),
        pytest.param(_RUNNING.decode().encode("utf-16"), id="utf-16"),
    ],
)
async def test_json_envelope_is_read_with_whitespace_around_or_utf16(
    fake: FakeVidgo, one_shot: VidgoClient, body: bytes
) -> None:
    """A valid envelope is read whatever JSON's own whitespace surrounds it, or in UTF-16."""
    fake.inject(Fault.http_error(200, body), route="detail")
    task = await one_shot.get_task("t")
    assert task.status is TaskStatus.RUNNING


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_RUNNING + b" x", id="trailing-garbage"),
        pytest.param(_RUNNING + b"\x0c", id="trailing-form-feed"),
        pytest.param(_RUNNING + _RUNNING, id="two-documents"),
        pytest.param(b"<!DOCTYPE html><html><body>proxy</body></html>", id="html"),
        pytest.param(b"", id="empty"),
        pytest.param(b"   \n", id="blank"),
        pytest.param(b'{"code": 200, "data": {"task_id": "', id="truncated"),
        pytest.param(b"[1, 2, 3]", id="json-list"),
        pytest.param(b'"a string"', id="json-string"),
        pytest.param(b"null", id="json-null"),
        pytest.param(b"42", id="json-number"),
        pytest.param(b'{"code": 200}', id="no-data"),
        pytest.param(b'{"code": "two hundred", "data": {}}', id="code-not-a-number"),
        pytest.param(b'{"code": true, "data": {}}', id="code-bool"),
        pytest.param(b'{"code": 200, "data": []}', id="data-not-an-object"),
        pytest.param(b"\xff\xfe\x00garbage", id="binary"),
        pytest.param(b"[" * 100_000, id="deeply-nested"),
    ],
)
async def test_unusable_2xx_body_is_invalid_response(
    fake: FakeVidgo, one_shot: VidgoClient, body: bytes
) -> None:
    """A 2xx that is not the documented JSON envelope raises InvalidResponseError."""
    fake.inject(Fault.http_error(200, body), route="detail")
    with pytest.raises(InvalidResponseError):
        await one_shot.get_task("t")


@pytest.mark.parametrize("variant", ["html", "truncated"])
async def test_garbage_fault_is_invalid_response(
    fake: FakeVidgo, one_shot: VidgoClient, variant: str
) -> None:
    """The fake's garbage 200 bodies are reported as InvalidResponseError."""
    fake.inject(Fault.garbage(variant), route="detail")  # type: ignore[arg-type]
    with pytest.raises(InvalidResponseError):
        await one_shot.get_task("task-1")


HOSTILE = b"<html>\n\t<body>\x1b[31mred\x00\x07" + "é☃".encode() + b"x" * 5000 + b"</body>"


async def test_invalid_body_excerpt_is_short_and_escaped(
    fake: FakeVidgo, one_shot: VidgoClient
) -> None:
    """The excerpt of a bad 2xx body is short and has no raw control characters."""
    fake.inject(Fault.http_error(200, HOSTILE), route="detail")
    with pytest.raises(InvalidResponseError) as info:
        await one_shot.get_task("task-1")
    text = str(info.value)
    assert info.value.excerpt
    assert len(info.value.excerpt) <= 200
    assert len(text) <= 400
    assert not any(ord(char) < 32 or ord(char) == 127 for char in text)


async def test_error_body_message_is_short_and_escaped(
    fake: FakeVidgo, one_shot: VidgoClient
) -> None:
    """The message of a non-JSON error body is a short excerpt without control characters."""
    fake.inject(Fault.http_error(502, HOSTILE), route="detail")
    with pytest.raises(ServerError) as info:
        await one_shot.get_task("task-1")
    assert "red" in info.value.message
    assert len(str(info.value)) <= 400
    assert not any(ord(char) < 32 or ord(char) == 127 for char in str(info.value))


async def test_long_json_message_is_shortened(fake: FakeVidgo, one_shot: VidgoClient) -> None:
    """A huge JSON error message is cut down to a readable length."""
    fake.inject(Fault.http_error(400, {"message": "m" * 100_000}), route="detail")
    with pytest.raises(BadRequestError) as info:
        await one_shot.get_task("task-1")
    assert len(str(info.value)) <= 1000


def padded_envelope(size: int) -> bytes:
    """A valid detail envelope padded with whitespace to ``size`` bytes."""
    envelope = json.dumps({"code": 200, "data": {"task_id": "t", "status": "running"}}).encode()
    return envelope + b" " * (size - len(envelope))


async def test_body_just_under_cap_is_read(fake: FakeVidgo, one_shot: VidgoClient) -> None:
    """A valid body just under 1 MiB is read in full."""
    fake.inject(Fault.http_error(200, padded_envelope(MIB - 16)), route="detail")
    task = await one_shot.get_task("t")
    assert isinstance(task, Task)


async def test_body_over_cap_is_cut_off(fake: FakeVidgo, one_shot: VidgoClient) -> None:
    """A body over 1 MiB is never parsed, even when it would be valid JSON."""
    fake.inject(Fault.http_error(200, padded_envelope(3 * MIB)), route="detail")
    with pytest.raises(InvalidResponseError) as info:
        await one_shot.get_task("t")
    assert len(str(info.value)) <= 400


async def test_huge_error_body_gives_short_error(fake: FakeVidgo, one_shot: VidgoClient) -> None:
    """A 5xx with a multi-megabyte HTML page becomes a ServerError with a short message."""
    fake.inject(Fault.http_error(503, b"<html>" + b"x" * (4 * MIB)), route="detail")
    with pytest.raises(ServerError) as info:
        await one_shot.get_task("t")
    assert len(str(info.value)) <= 400


async def test_reset_is_transport_error(fake: FakeVidgo, one_shot: VidgoClient) -> None:
    """A connection reset before any answer is a TransportError."""
    # aiohttp itself repeats an idempotent request once after a reset.
    fake.inject(Fault.reset_before(), route="detail", times=2)
    with pytest.raises(TransportError):
        await one_shot.get_task("t")


async def test_stall_is_request_timeout(fake: FakeVidgo, make_client: MakeClient) -> None:
    """A server that never answers hits the per-request timeout as RequestTimeoutError."""
    client = make_client(
        timeouts=Timeouts(connect=1.0, total=0.2), retry=RetryPolicy(max_attempts=1)
    )
    fake.inject(Fault.stall(30), route="detail")
    with pytest.raises(RequestTimeoutError) as info:
        await client.get_task("t")
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, TransportError)


async def test_connection_refused_is_unsent_transport_error(
    make_fake: Any, make_client: MakeClient
) -> None:
    """A refused connection is a TransportError that says the request was never sent."""
    gone = await make_fake()
    url = gone.url
    await gone.close()
    client = make_client(base_url=url, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(TransportError) as info:
        await client.get_task("t")
    assert info.value.sent is False
    assert not isinstance(info.value, RequestTimeoutError)


async def test_every_failure_is_a_vidgo_error(fake: FakeVidgo, one_shot: VidgoClient) -> None:
    """No aiohttp exception type ever reaches the caller."""
    faults = [Fault.reset_before(), Fault.reset_after(), Fault.garbage(), Fault.server_error()]
    for fault in faults:
        fake.inject(fault, route="detail", times=2)
        with pytest.raises(VidgoError) as info:
            await one_shot.get_task("t")
        assert type(info.value).__module__.startswith("vidgo_async")


async def test_wrong_key_is_authentication_error(fake: FakeVidgo, make_client: MakeClient) -> None:
    """A key the server does not accept raises AuthenticationError."""
    client = make_client(api_key="not-the-key")
    with pytest.raises(AuthenticationError):
        await client.get_task("t")


async def test_key_is_sent_as_bearer_token(fake: FakeVidgo, client: VidgoClient) -> None:
    """Every API request carries ``Authorization: Bearer <key>``."""
    await client.balance()
    (request,) = fake.requests
    assert request.headers["Authorization"] == f"Bearer {fake.api_key}"
