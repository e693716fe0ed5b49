"""The key is redacted however the server writes it, and never from an honest answer.

The server below echoes the key JSON-escaped, in UTF-16, percent-encoded or
in a malformed answer line; and, with keys that are common words, answers
honestly with the key inside its ids, URLs, status, times and JSON keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from vidgo_async import (
    AuthenticationError,
    InvalidResponseError,
    PermissionDeniedError,
    RetryPolicy,
    TaskFailedError,
    TransportError,
    VidgoClient,
    VidgoError,
)
from vidgo_async._wire.redaction import REDACTED, redact

from .server import BALANCE, DETAIL, FILE, SUBMIT, HostileServer, envelope, raw, reply, running
from .support import FAST_POLL, FAST_RETRY, TIMEOUTS, chain, texts_of

# A key with the characters that escaping and percent-encoding change.
SLASHED = "sk-Test/Key+abc=123"
U_ESCAPED = "".join(f"\\u{ord(char):04X}" for char in SLASHED)

MakeClient = Callable[..., Awaitable[tuple[HostileServer, VidgoClient]]]


@pytest_asyncio.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    """A factory of (hostile server, fast client) pairs sharing a key, closed after the test."""
    async with contextlib.AsyncExitStack() as exits:

        async def make(
            key: str, retry: RetryPolicy = FAST_RETRY
        ) -> tuple[HostileServer, VidgoClient]:
            server = await exits.enter_async_context(running(key))
            client = VidgoClient(
                key,
                base_url=server.url,
                poll=FAST_POLL,
                retry=retry,
                timeouts=TIMEOUTS,
                max_polls_per_second=1000,
            )
            return server, await exits.enter_async_context(client)

        yield make


def assert_redacted(exc: BaseException, records: list[logging.LogRecord], *forms: str) -> None:
    """No form of the key in the exception chain or a log line; the marker in the message."""
    texts = [*texts_of(exc), *(record.getMessage() for record in records)]
    for form in (SLASHED, *forms):
        for text in texts:
            assert form not in text, text[:300]
    assert REDACTED in str(exc), str(exc)


async def failure(call: Awaitable[Any]) -> VidgoError:
    """The error ``call`` raises, within 5 s."""
    try:
        await asyncio.wait_for(call, 5)
    except VidgoError as exc:
        return exc
    raise AssertionError("the call succeeded")


ENCODINGS = [
    # PHP's json_encode writes "/" as "\/" by default.
    pytest.param(lambda p: json.dumps(p).replace("/", "\\/").encode(), id="slash-escaped"),
    pytest.param(lambda p: json.dumps(p).replace(SLASHED, U_ESCAPED).encode(), id="u-escaped"),
    pytest.param(lambda p: json.dumps(p).encode("utf-16"), id="utf-16"),
    pytest.param(lambda p: json.dumps(p).encode("utf-16-le"), id="utf-16-no-bom"),
]

Echo = Callable[[HostileServer, VidgoClient, Callable[[Any], bytes]], Awaitable[VidgoError]]


async def _401_on_balance(
    server: HostileServer, client: VidgoClient, encode: Callable[[Any], bytes]
) -> VidgoError:
    body = encode({"code": 401, "message": f"invalid api key {SLASHED}"})
    server.script(BALANCE, reply(401, body))
    exc = await failure(client.balance())
    assert isinstance(exc, AuthenticationError)
    return exc


async def _code_403_in_a_200_submit(
    server: HostileServer, client: VidgoClient, encode: Callable[[Any], bytes]
) -> VidgoError:
    body = encode({"code": 403, "msg": f"key {SLASHED} may not use this model"})
    server.script(SUBMIT, reply(200, body))
    exc = await failure(client.submit_wav("parent", "track"))
    assert isinstance(exc, PermissionDeniedError)
    return exc


async def _failed_task(
    server: HostileServer, client: VidgoClient, encode: Callable[[Any], bytes]
) -> VidgoError:
    data = {"task_id": "t1", "status": "failed", "error_message": f"quota of {SLASHED} spent"}
    server.script(DETAIL, reply(200, encode(envelope(data))))
    exc = await failure(client.wait("t1", timeout=3))
    assert isinstance(exc, TaskFailedError)
    assert exc.task is not None
    assert SLASHED not in repr(exc.task)
    return exc


ECHOES = [
    pytest.param(_401_on_balance, id="401"),
    pytest.param(_code_403_in_a_200_submit, id="200-code-403"),
    pytest.param(_failed_task, id="task-failed"),
]


@pytest.mark.parametrize("encode", ENCODINGS)
@pytest.mark.parametrize("echo", ECHOES)
@pytest.mark.asyncio
async def test_encoded_key_echo_is_redacted(
    make_client: MakeClient,
    echo: Echo,
    encode: Callable[[Any], bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A key echoed escaped or in UTF-16 JSON is redacted from the error it becomes."""
    caplog.set_level(logging.DEBUG)
    server, client = await make_client(SLASHED)
    exc = await echo(server, client, encode)
    assert_redacted(exc, caplog.records, SLASHED.replace("/", "\\/"))


DATA_ECHOES = [
    pytest.param(BALANCE, {"credits_amount": SLASHED}, id="credits_amount"),
    pytest.param(DETAIL, {"task_id": f"other-{SLASHED}", "status": "running"}, id="task_id"),
    pytest.param(DETAIL, [{SLASHED: 1}], id="object-key"),
]


@pytest.mark.parametrize(("route", "data"), DATA_ECHOES)
@pytest.mark.asyncio
async def test_a_long_key_echoed_in_data_is_redacted_from_the_error(
    make_client: MakeClient, route: str, data: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A key as long as a real one, echoed where the SDK reads data (an id, a number,
    an object key), is the server echoing it: the error quoting that data repeats none
    of it (found by review: data fields were kept exact for every key)."""
    caplog.set_level(logging.DEBUG)
    server, client = await make_client(SLASHED, retry=RetryPolicy(max_attempts=1))
    server.script(route, reply(200, envelope(data)))
    call = client.balance() if route == BALANCE else client.get_task("t1")
    exc = await failure(call)
    assert isinstance(exc, InvalidResponseError)
    assert_redacted(exc, caplog.records)


@pytest.mark.asyncio
async def test_a_body_misread_as_utf16_spells_out_no_key(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """An ASCII error page whose second byte is NUL looks like UTF-16 to JSON's encoding
    detection: decoded so, the key's bytes became escaped CJK text in the excerpt,
    which reads back to the key."""
    caplog.set_level(logging.DEBUG)
    server, client = await make_client(SLASHED, retry=RetryPolicy(max_attempts=1))
    body = b"E\x00rror: bad key " + SLASHED.encode() + b" refused"
    server.script(DETAIL, reply(500, body))
    exc = await failure(client.get_task("t1"))
    texts = [*texts_of(exc), *(record.getMessage() for record in caplog.records)]
    for text in texts:
        unescaped = text.encode("ascii", "backslashreplace").decode("unicode_escape")
        assert SLASHED.encode() not in unescaped.encode("utf-16-le", "surrogatepass"), text
        assert SLASHED not in unescaped, text


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(quote(SLASHED, safe=""), id="quote-safe-none"),
        pytest.param(quote(SLASHED), id="quote"),
        pytest.param(quote_plus(SLASHED), id="quote_plus"),
        pytest.param("sk-Test%2fKey%2babc%3d123", id="lower-hex"),
        pytest.param("".join(f"%{b:02X}" for b in SLASHED.encode()), id="every-byte"),
    ],
)
@pytest.mark.asyncio
async def test_percent_encoded_key_in_a_redirect_is_redacted(
    make_client: MakeClient, form: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A redirect whose Location carries the key percent-encoded: the error repeats none of it."""
    caplog.set_level(logging.DEBUG)
    server, client = await make_client(SLASHED, retry=RetryPolicy(max_attempts=1))
    location = f"https://login.example/?next=x&key={form}"
    server.script(DETAIL, reply(302, f"see {location}".encode(), [("Location", location)]))
    exc = await failure(client.get_task("t1"))
    assert isinstance(exc, InvalidResponseError)
    assert_redacted(exc, caplog.records, form)


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(f"HTTP/1.1 2x0 {SLASHED}\r\n", id="status-line"),
        pytest.param(f"HTTP/1.1 200 OK\r\n{SLASHED} x: y\r\n", id="header-name"),
        pytest.param(f"HTTP/1.1 200 OK\r\nContent-Length: {SLASHED}\r\n", id="content-length"),
    ],
)
@pytest.mark.asyncio
async def test_key_in_a_malformed_answer_is_redacted(
    make_client: MakeClient, head: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A parse error quoting a malformed line that holds the key does not repeat the key."""
    caplog.set_level(logging.DEBUG)
    server, client = await make_client(SLASHED)
    answer = raw(f"{head}Content-Length: 2\r\n\r\n{{}}".encode())
    server.script(DETAIL, *[answer for _ in range(10)])
    exc = await failure(client.get_task("t1"))
    assert isinstance(exc, TransportError)
    assert_redacted(exc, caplog.records)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(f"HTTP/1.1 2x0 {SLASHED}\r\nContent-Length: 2\r\n\r\n{{}}", id="status-line"),
        pytest.param(
            f"HTTP/1.1 200 OK\r\n{SLASHED} x: y\r\nContent-Length: 2\r\n\r\n{{}}", id="header"
        ),
        pytest.param(f"HTTP/1.1 200 OK\r\nContent-Length: {SLASHED}\r\n\r\n{{}}", id="length"),
        pytest.param(
            f"HTTP/1.1 302 Found\r\nLocation: ftp://files.example/{SLASHED}/x.wav\r\n"
            "Content-Length: 0\r\n\r\n",
            id="redirect-to-ftp",
        ),
        pytest.param(
            f"HTTP/1.1 302 Found\r\nLocation: http://u:p@files.example/{SLASHED}/x.wav\r\n"
            "Content-Length: 0\r\n\r\n",
            id="redirect-with-credentials",
        ),
    ],
)
@pytest.mark.asyncio
async def test_key_in_a_malformed_download_answer_is_redacted(
    make_client: MakeClient, answer: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A storage URL whose path carries the key, answered with a malformed line or a
    refused redirect that quotes it: the download's error and log lines repeat none of it."""
    caplog.set_level(logging.DEBUG)
    server, client = await make_client(SLASHED, retry=RetryPolicy(max_attempts=2, base_delay=0.001))
    server.script(FILE, *[raw(answer.encode()) for _ in range(2)])
    url = f"{server.url}/files/{quote(SLASHED, safe='')}/x.wav"
    exc = await failure(client.download(url, tmp_path / "x.wav", timeout=3))
    assert_redacted(exc, caplog.records, quote(SLASHED, safe=""))


@pytest.mark.parametrize("key", ["task", "data", "status", "wav", "finished", "2025", "0"])
@pytest.mark.asyncio
async def test_short_key_leaves_honest_answers_alone(make_client: MakeClient, key: str) -> None:
    """A key found in an honest answer's ids, URLs, status or JSON keys changes nothing."""
    server, client = await make_client(key)
    server.next_ids.append("task-1")
    accepted = await asyncio.wait_for(client.submit_wav("parent", "track"), 5)
    assert accepted.task_id == "task-1"
    assert len(server.hits(SUBMIT)) == 1
    url = await asyncio.wait_for(client.await_task("task-1", timeout=3), 5)
    assert url == f"{server.url}/files/task-1.wav"
    task = await client.get_task("task-1")
    assert task.status.value == "finished"
    assert task.created_time == datetime(2025, 11, 25, 8, 50, 13)


@pytest.mark.asyncio
async def test_short_key_is_redacted_from_messages(make_client: MakeClient) -> None:
    """A short key is still redacted from a message, escaped or not (innocent words too)."""
    server, client = await make_client("task")
    body = json.dumps({"code": 401, "message": "bad key: task, \\u0074ask"}).encode()
    server.script(BALANCE, reply(401, body))
    exc = await failure(client.balance())
    assert isinstance(exc, AuthenticationError)
    assert exc.message == f"bad key: {REDACTED}, {REDACTED}"


SHORT = "Zq7Xw9Kp2M"  # a key under 16 characters: its letters in data stay as data


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(
            {"task_id": "t1", "status": "finished", "files": [{"wav_url": f"ftp://x/{SHORT}"}]},
            id="wav_url",
        ),
        pytest.param({"task_id": f"other-{SHORT}", "status": "running"}, id="task_id"),
        pytest.param(
            {"task_id": "t1", "status": "finished", "progress": {SHORT: 1}}, id="unreadable"
        ),
    ],
)
@pytest.mark.asyncio
async def test_a_short_key_echoed_in_data_stays_out_of_the_error(
    make_client: MakeClient, data: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A short key echoed in a field read as data is kept there (see the honest answers
    above), but no error message or log line that quotes the field repeats it: the file
    list, the other task's id and the unreadable object were quoted whole."""
    caplog.set_level(logging.DEBUG)
    server, client = await make_client(SHORT)
    server.script(DETAIL, *[reply(200, envelope(data))] * 50)
    exc = await failure(client.await_task("t1", timeout=2))
    assert isinstance(exc, InvalidResponseError), exc
    # The messages: a snapshot attached to the error (``TaskError.task``) is data.
    texts = [*(str(item) for item in chain(exc)), *(r.getMessage() for r in caplog.records)]
    assert all(SHORT not in text for text in texts), [t for t in texts if SHORT in t]


KEY_CHARS = st.characters(min_codepoint=33, codec="utf-8")  # what a key may hold


def _written(char: str, way: int) -> str:
    """``char`` as JSON or a URL might write it, the ``way``-th of several ways."""
    units = char.encode("utf-16-be")
    escaped = "".join(f"\\u{units[i : i + 2].hex()}" for i in range(0, len(units), 2))
    percent = "".join(f"%{byte:02x}" for byte in char.encode())
    forms = [char, escaped, escaped.upper().replace("\\U", "\\u"), percent, percent.upper()]
    if char in '"\\/':
        forms.append("\\" + char)
    return forms[way % len(forms)]


@given(
    key=st.text(KEY_CHARS, min_size=1, max_size=12),
    ways=st.lists(st.integers(0, 5), min_size=12, max_size=12),
)
def test_every_mix_of_escapes_is_redacted(key: str, ways: list[int]) -> None:
    """Any mix of literal, JSON-escaped and percent-encoded characters of a key is redacted."""
    written = "".join(_written(char, way) for char, way in zip(key, ways, strict=False))
    redacted = redact(f" {written} ", key)
    assert REDACTED in redacted
    # Where a form is ambiguous ("%252" is "%2" twice over), a shorter reading of
    # the key may be the one replaced: what is left of it is no form of the key.
    left = redacted.replace(REDACTED, " ")  # the key may be a part of the marker ("[")
    assert written not in left
    assert key not in left
