"""The API key never leaks: not in reprs, logs, exceptions, asdict output or URLs."""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import attrs
import pytest
import pytest_asyncio
from support import MakeClient, MakeFake

from vidgo_async import (
    Balance,
    PollPolicy,
    RetryPolicy,
    Task,
    TaskHandle,
    TaskStatus,
    Timeouts,
    VidgoClient,
    VidgoError,
)
from vidgo_async.testing import FakeVidgo, Fault

pytestmark = pytest.mark.asyncio

CANARY = "sk-canary-7f3a9c1e5b2d4f60"


@pytest_asyncio.fixture
async def secret_fake(make_fake: MakeFake) -> FakeVidgo:
    """A fake that accepts only the canary key."""
    return await make_fake(api_key=CANARY)


@pytest_asyncio.fixture
async def secret_client(secret_fake: FakeVidgo, make_client: MakeClient) -> VidgoClient:
    """A client holding the canary key, one attempt per single call."""
    return make_client(
        secret_fake,
        retry=RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.01, max_retry_after=0.05),
        timeouts=Timeouts(connect=1.0, total=0.2),
    )


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception reachable through __cause__ and __context__."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [e for e in (current.__cause__, current.__context__) if e is not None]


def texts_of(exc: BaseException) -> Iterator[str]:
    """Every way an exception is commonly rendered, along its whole chain."""
    yield "".join(traceback.format_exception(exc))
    for item in exception_chain(exc):
        yield str(item)
        yield repr(item)
        yield repr(vars(item))
        yield repr(item.args)


Scenario = Callable[[FakeVidgo, VidgoClient], Awaitable[Any]]


async def _auth_failure(fake: FakeVidgo, client: VidgoClient) -> Any:
    wrong = VidgoClient(CANARY + "-wrong", base_url=fake.url)
    async with wrong:
        return await wrong.get_task("t")


FAILURES: list[Any] = [
    pytest.param(lambda f, c: c.get_task("no-such-task"), id="404"),
    pytest.param(_auth_failure, id="401"),
    pytest.param(
        lambda f, c: (f.inject(Fault.reset_after(), "submit"), c.submit_wav("p", "a"))[1],
        id="submit-unknown",
    ),
    pytest.param(
        lambda f, c: (f.inject(Fault.reset_before(), "detail", 10), c.get_task("t"))[1],
        id="reset",
    ),
    pytest.param(
        lambda f, c: (f.inject(Fault.stall(5), "detail", 10), c.get_task("t"))[1],
        id="timeout",
    ),
    pytest.param(
        lambda f, c: (f.inject(Fault.garbage(), "detail", 10), c.get_task("t"))[1],
        id="garbage",
    ),
    pytest.param(
        lambda f, c: (
            f.inject(Fault.server_error(502, body="html"), "detail", 10),
            c.get_task("t"),
        )[1],
        id="502",
    ),
    pytest.param(
        lambda f, c: (f.fail("a", "bad"), c.convert_to_wav("p", "a", timeout=10))[1],
        id="task-failed",
    ),
    pytest.param(
        lambda f, c: (f.set_duration("a", run_time=600), c.convert_to_wav("p", "a", timeout=0.2))[
            1
        ],
        id="task-timeout",
    ),
    pytest.param(
        lambda f, c: VidgoClient(CANARY, base_url="ftp://nowhere").balance(), id="config-error"
    ),
    pytest.param(lambda f, c: VidgoClient(CANARY + "\n").balance(), id="malformed-key"),
    pytest.param(lambda f, c: c.get_task(""), id="bad-argument"),
]


@pytest.mark.parametrize("scenario", FAILURES)
async def test_key_absent_from_exceptions(
    secret_fake: FakeVidgo, secret_client: VidgoClient, scenario: Scenario
) -> None:
    """No rendering of a raised exception or its chain contains the key."""
    with pytest.raises((VidgoError, ValueError, TypeError)) as info:
        await scenario(secret_fake, secret_client)
    for text in texts_of(info.value):
        assert CANARY not in text


@pytest.mark.parametrize("scenario", FAILURES)
async def test_key_absent_from_debug_logs(
    secret_fake: FakeVidgo,
    secret_client: VidgoClient,
    scenario: Scenario,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Root, aiohttp and vidgo_async logs at DEBUG never contain the key."""
    caplog.set_level(logging.DEBUG)
    for name in ("aiohttp", "aiohttp.client", "aiohttp.server", "asyncio", "vidgo_async"):
        caplog.set_level(logging.DEBUG, logger=name)
    await secret_client.convert_to_wav("p", "ok", timeout=10)
    with pytest.raises((VidgoError, ValueError, TypeError)):
        await scenario(secret_fake, secret_client)
    assert caplog.records
    assert CANARY not in caplog.text
    for record in caplog.records:
        assert CANARY not in record.getMessage()
        assert CANARY not in repr(record.__dict__)


async def test_debug_logs_record_requests(
    secret_client: VidgoClient, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG, vidgo_async logs each request (so the leak tests see real lines)."""
    caplog.set_level(logging.DEBUG, logger="vidgo_async")
    await secret_client.balance()
    assert any(record.name.startswith("vidgo_async") for record in caplog.records)


async def test_info_logs_nothing_per_request(
    secret_client: VidgoClient, caplog: pytest.LogCaptureFixture
) -> None:
    """At INFO, a successful conversion logs nothing."""
    caplog.set_level(logging.INFO, logger="vidgo_async")
    await secret_client.convert_to_wav("p", "a", timeout=10)
    assert [r for r in caplog.records if r.name.startswith("vidgo_async")] == []


async def test_key_absent_from_client_repr(secret_client: VidgoClient) -> None:
    """repr() and str() of the client do not show the key."""
    assert CANARY not in repr(secret_client)
    assert CANARY not in str(secret_client)
    assert CANARY not in secret_client.base_url


async def test_key_absent_from_client_after_use(secret_client: VidgoClient) -> None:
    """repr() stays clean after the client has opened its session."""
    await secret_client.balance()
    assert CANARY not in repr(secret_client)


async def test_key_absent_from_public_values(
    secret_fake: FakeVidgo, secret_client: VidgoClient
) -> None:
    """attrs.asdict and repr of every public value object omit the key."""
    url = await secret_client.convert_to_wav("p", "a", timeout=10)
    (task_id,) = secret_fake.accepted["a"]
    values: list[Any] = [
        await secret_client.get_task(task_id),
        await secret_client.balance(),
        TaskHandle(task_id=task_id),
        RetryPolicy(),
        PollPolicy(),
        Timeouts(),
        Task(task_id="t", status=TaskStatus.RUNNING),
        Balance(credits_amount=1),
    ]
    for value in values:
        assert CANARY not in repr(attrs.asdict(value))
        assert CANARY not in repr(value)
    assert CANARY not in url


async def test_key_only_in_authorization_header(
    secret_fake: FakeVidgo, secret_client: VidgoClient
) -> None:
    """The key travels only in the Authorization header: never in a URL, query or body."""
    await secret_client.convert_to_wav("p", "a", timeout=10)
    assert secret_fake.requests
    for request in secret_fake.requests:
        assert CANARY not in request.path
        assert CANARY not in repr(request.query)
        assert CANARY not in repr(request.json)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        assert CANARY not in repr(headers)
