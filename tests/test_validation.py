"""Bad arguments raise ValueError/TypeError before any request is sent."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from vidgo_async import NotFoundError, PollPolicy, VidgoClient
from vidgo_async.testing import FakeVidgo

pytestmark = pytest.mark.asyncio

BAD_IDS = [
    pytest.param("", ValueError, id="empty"),
    pytest.param("   ", ValueError, id="blank"),
    pytest.param("\t\n", ValueError, id="whitespace"),
    pytest.param("x" * 257, ValueError, id="too-long"),
    pytest.param("a\nb", ValueError, id="newline"),
    pytest.param("a\rb", ValueError, id="carriage-return"),
    pytest.param("a\x00b", ValueError, id="nul"),
    pytest.param("a\tb", ValueError, id="tab"),
    pytest.param("a\x1bb", ValueError, id="escape"),
    pytest.param("a\x7fb", ValueError, id="del"),
    pytest.param("a\x85b", ValueError, id="c1-control"),
    pytest.param(None, TypeError, id="none"),
    pytest.param(123, TypeError, id="int"),
    pytest.param(b"task", TypeError, id="bytes"),
    pytest.param(["task"], TypeError, id="list"),
    pytest.param(True, TypeError, id="bool"),
]

Call = Callable[[VidgoClient, Any], Awaitable[Any]]


async def _watch(client: VidgoClient, task_id: Any, **options: Any) -> None:
    async for _ in client.watch(task_id, **options):
        pass


async def _first(results: AsyncGenerator[Any, None]) -> None:
    async with contextlib.aclosing(results):
        async for _ in results:
            return


ID_CALLS: list[Any] = [
    pytest.param(lambda c, v: c.get_task(v), id="get_task"),
    pytest.param(lambda c, v: c.get_status(v), id="get_status"),
    pytest.param(lambda c, v: c.wait(v), id="wait"),
    pytest.param(lambda c, v: c.await_task(v), id="await_task"),
    pytest.param(_watch, id="watch"),
    pytest.param(lambda c, v: c.submit_wav(v, "audio"), id="submit_wav-task_id"),
    pytest.param(lambda c, v: c.submit_wav("task", v), id="submit_wav-audio_id"),
    pytest.param(lambda c, v: c.convert_to_wav(v, "audio"), id="convert-task_id"),
    pytest.param(lambda c, v: c.convert_to_wav("task", v), id="convert-audio_id"),
    pytest.param(lambda c, v: c.submit(v, {"task_id": "t"}), id="submit-model"),
    pytest.param(lambda c, v: c.submit("m", {"task_id": v}), id="submit-input-task_id"),
    pytest.param(lambda c, v: c.submit("m", {"audio_id": v}), id="submit-input-audio_id"),
]


@pytest.mark.parametrize(("value", "error"), BAD_IDS)
@pytest.mark.parametrize("call", ID_CALLS)
async def test_bad_id_raises_before_request(
    fake: FakeVidgo, client: VidgoClient, call: Call, value: Any, error: type[Exception]
) -> None:
    """A bad id raises ValueError/TypeError and nothing reaches the server."""
    with pytest.raises(error):
        await call(client, value)
    assert fake.requests == []


BAD_CALLBACKS = [
    pytest.param("", ValueError, id="empty"),
    pytest.param("ftp://example.com/cb", ValueError, id="ftp"),
    pytest.param("file:///etc/passwd", ValueError, id="file"),
    pytest.param("javascript:alert(1)", ValueError, id="javascript"),
    pytest.param("/relative/path", ValueError, id="relative"),
    pytest.param("example.com/cb", ValueError, id="no-scheme"),
    pytest.param("https://", ValueError, id="no-host"),
    pytest.param("https://exa mple.com/cb", ValueError, id="space"),
    pytest.param("https://example.com/cb\n", ValueError, id="newline"),
    pytest.param("https://example.com/" + "a" * 2048, ValueError, id="too-long"),
    pytest.param(123, TypeError, id="int"),
    pytest.param(b"https://example.com", TypeError, id="bytes"),
]

CALLBACK_CALLS: list[Any] = [
    pytest.param(lambda c, v: c.submit_wav("t", "a", callback_url=v), id="submit_wav"),
    pytest.param(lambda c, v: c.convert_to_wav("t", "a", callback_url=v), id="convert"),
    pytest.param(lambda c, v: c.submit("m", {"task_id": "t"}, callback_url=v), id="submit"),
]


@pytest.mark.parametrize(("value", "error"), BAD_CALLBACKS)
@pytest.mark.parametrize("call", CALLBACK_CALLS)
async def test_bad_callback_url_raises_before_request(
    fake: FakeVidgo, client: VidgoClient, call: Call, value: Any, error: type[Exception]
) -> None:
    """A callback URL that is not an absolute http(s) URL of ≤ 2048 characters is refused."""
    with pytest.raises(error):
        await call(client, value)
    assert fake.requests == []


BAD_TIMEOUTS = [
    pytest.param(0, ValueError, id="zero"),
    pytest.param(0.0, ValueError, id="zero-float"),
    pytest.param(-1, ValueError, id="negative"),
    pytest.param(-0.001, ValueError, id="tiny-negative"),
    pytest.param(float("nan"), ValueError, id="nan"),
    pytest.param(float("inf"), ValueError, id="inf"),
    pytest.param(float("-inf"), ValueError, id="-inf"),
    pytest.param(10**400, ValueError, id="past-a-float"),  # not an OverflowError
    pytest.param(True, TypeError, id="true"),
    pytest.param(False, TypeError, id="false"),
    pytest.param("10", TypeError, id="str"),
    pytest.param([10], TypeError, id="list"),
]


TIMEOUT_CALLS: list[Any] = [
    pytest.param(lambda c, v: c.wait("task", timeout=v), id="wait"),
    pytest.param(lambda c, v: c.await_task("task", timeout=v), id="await_task"),
    pytest.param(lambda c, v: c.convert_to_wav("t", "a", timeout=v), id="convert"),
    pytest.param(lambda c, v: _watch(c, "task", timeout=v), id="watch"),
    pytest.param(lambda c, v: _first(c.convert_many([("t", "a")], timeout=v)), id="convert_many"),
    pytest.param(
        lambda c, v: c.download("http://127.0.0.1:9/a.wav", "a.wav", timeout=v), id="download"
    ),
]


@pytest.mark.parametrize(("value", "error"), BAD_TIMEOUTS)
@pytest.mark.parametrize("call", TIMEOUT_CALLS)
async def test_bad_timeout_raises_before_request(
    fake: FakeVidgo, client: VidgoClient, call: Call, value: Any, error: type[Exception]
) -> None:
    """A timeout that is not a positive finite number is refused."""
    with pytest.raises(error):
        await call(client, value)
    assert fake.requests == []


class NotAMapping:
    """An object that is not a mapping."""


BAD_INPUTS = [
    pytest.param(None, id="none"),
    pytest.param([("task_id", "t")], id="list-of-pairs"),
    pytest.param("task_id=t", id="str"),
    pytest.param(NotAMapping(), id="object"),
    pytest.param({1: "t"}, id="int-key"),
    pytest.param({"x": object()}, id="object-value"),
    pytest.param({"x": {1, 2}}, id="set-value"),
    pytest.param({"x": b"bytes"}, id="bytes-value"),
    pytest.param({"x": float("nan")}, id="nan-value"),
    pytest.param({"x": float("inf")}, id="inf-value"),
]


@pytest.mark.parametrize("value", BAD_INPUTS)
async def test_bad_input_raises_before_request(
    fake: FakeVidgo, client: VidgoClient, value: Any
) -> None:
    """An input that is not a JSON-serialisable mapping raises TypeError."""
    with pytest.raises(TypeError):
        await client.submit("separate-vocals", value)
    assert fake.requests == []


async def test_too_deeply_nested_input_raises_before_request(
    fake: FakeVidgo, client: VidgoClient
) -> None:
    """An input nested past what JSON encoding can follow is a TypeError, not a RecursionError."""
    nested: list[Any] = []
    for _ in range(5000):
        nested = [nested]
    with pytest.raises(TypeError, match="JSON-serializable"):
        await client.submit("separate-vocals", {"task_id": "t", "layers": nested})
    assert fake.requests == []


POLL_CALLS: list[Any] = [
    pytest.param(lambda c, v: c.wait("task", poll=v), id="wait"),
    pytest.param(lambda c, v: c.await_task("task", poll=v), id="await_task"),
    pytest.param(lambda c, v: _watch(c, "task", poll=v), id="watch"),
]


@pytest.mark.parametrize("value", [{"initial": 0}, 5, "fast", PollPolicy], ids=str)
@pytest.mark.parametrize("call", POLL_CALLS)
async def test_a_poll_that_is_not_a_policy_raises_before_request(
    fake: FakeVidgo, client: VidgoClient, call: Call, value: Any
) -> None:
    """``poll=`` must be a PollPolicy: anything else is a TypeError, not an AttributeError
    met in the middle of the wait."""
    with pytest.raises(TypeError, match="poll must be a PollPolicy"):
        await call(client, value)
    assert fake.requests == []


@pytest.mark.parametrize("value", [5, "print", [print]], ids=str)
async def test_a_progress_callback_that_cannot_be_called_raises_before_request(
    fake: FakeVidgo, client: VidgoClient, value: Any
) -> None:
    """convert_many(on_progress=...) that is not callable fails at the call, before any submit."""
    with pytest.raises(TypeError, match="on_progress must be callable"):
        client.convert_many([("t", "a1"), ("t", "a2")], on_progress=value)
    assert fake.requests == []


async def test_longest_id_is_accepted(fake: FakeVidgo, client: VidgoClient) -> None:
    """An id of exactly 256 characters is sent."""
    with pytest.raises(NotFoundError):
        await client.get_task("x" * 256)
    assert fake.requests_to("detail")[0].query == {"task_id": "x" * 256}


async def test_longest_callback_url_is_accepted(fake: FakeVidgo, client: VidgoClient) -> None:
    """A callback URL of exactly 2048 characters is sent."""
    url = "https://example.com/" + "a" * (2048 - len("https://example.com/"))
    await client.submit_wav("t", "a", callback_url=url)
    assert fake.requests_to("submit")[0].json["callback_url"] == url


@pytest.mark.parametrize(
    "task_id", ["a/b", "a?b=c&d", "a#b", "a%2Fb", "ünïcødé", "a b", "../../etc/passwd"]
)
async def test_odd_but_valid_ids_reach_server_intact(
    fake: FakeVidgo, client: VidgoClient, task_id: str
) -> None:
    """Ids with URL-special characters are sent intact, not interpreted."""
    fake.seed_task(task_id)
    task = await client.get_task(task_id)
    assert task.task_id == task_id
    assert fake.requests_to("detail")[0].query == {"task_id": task_id}


@pytest.mark.parametrize(
    "pairs",
    [
        pytest.param(None, id="none"),
        pytest.param(42, id="int"),
        pytest.param("abc", id="str"),
        pytest.param(b"ab", id="bytes"),
        pytest.param({"t": "a"}, id="dict"),
    ],
)
async def test_pairs_that_are_no_iterable_of_pairs_raise_at_the_call(
    fake: FakeVidgo, client: VidgoClient, pairs: Any
) -> None:
    """convert_many(pairs) that is not an iterable of pairs (a string would be read a
    character at a time, a dict by its keys) fails at the call, naming ``pairs``."""
    with pytest.raises(TypeError, match="pairs"):
        client.convert_many(pairs)
    assert fake.requests == []


async def test_a_download_folder_that_is_a_file_raises_at_the_call(
    fake: FakeVidgo, client: VidgoClient, tmp_path: Path
) -> None:
    """convert_many(download_to=<a file>) fails at the call with a ValueError naming it."""
    existing = tmp_path / "notes.txt"
    existing.write_text("x")
    with pytest.raises(ValueError, match="download_to"):
        client.convert_many([("t", "a")], download_to=existing)
    assert fake.requests == []


@pytest.mark.parametrize("key", [123, b"sk-key", ["sk-key"]])
async def test_an_api_key_that_is_not_a_string_is_a_type_error(key: Any) -> None:
    """VidgoClient(api_key=123) says the key has the wrong type, not that none was given."""
    with pytest.raises(TypeError, match="api_key must be a str"):
        VidgoClient(key)


async def test_an_async_progress_callback_raises_before_request(
    fake: FakeVidgo, client: VidgoClient
) -> None:
    """An ``async def`` on_progress would only make coroutines that never run: it is a
    TypeError at the call (it passed, and the callback silently never ran)."""

    async def on_progress(progress: object) -> None:
        pass

    class Hook:
        async def __call__(self, progress: object) -> None:
            pass

    with pytest.raises(TypeError, match="on_progress must be a plain function"):
        client.convert_many([("t", "a1")], on_progress=on_progress)
    with pytest.raises(TypeError, match="on_progress must be a plain function"):
        client.convert_many([("t", "a1")], on_progress=Hook())
    with pytest.raises(TypeError, match="on_progress must be a plain function"):
        await client.download(f"{fake.url}/files/x.wav", "x.wav", on_progress=on_progress)
    with pytest.raises(TypeError, match="on_event must be a plain function"):
        VidgoClient("k", base_url=fake.url, on_event=on_progress)
    assert fake.requests == []


@pytest.mark.parametrize("url", [5, b"https://x/a.wav", None], ids=str)
async def test_a_download_url_that_is_no_string_is_a_type_error(
    client: VidgoClient, tmp_path: Path, url: Any
) -> None:
    """download(5, ...) raised AttributeError from the URL parser."""
    with pytest.raises(TypeError):
        await client.download(url, tmp_path / "a.wav")
