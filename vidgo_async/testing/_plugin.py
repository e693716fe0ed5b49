"""The pytest plugin (entry point ``pytest11``): ``vidgo_fake`` and ``vidgo_client``.

Both fixtures are pytest-asyncio fixtures, so they work in strict and auto
mode alike; each test gets its own fake server and client, closed after it.
Without pytest-asyncio installed, using either fixture fails with a clear
message instead of breaking every other test run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from .._client import VidgoClient
from .._config import PollPolicy, RetryPolicy, Timeouts
from ._server import FakeVidgo

__all__ = ["FAST_POLL", "FAST_RETRY", "vidgo_client", "vidgo_fake"]

#: Poll and retry policies scaled to the fake's fast clock.
FAST_POLL = PollPolicy(initial=0.01, factor=1.5, max_interval=0.05, callback_interval=0.2)
FAST_RETRY = RetryPolicy(base_delay=0.001, max_delay=0.01, max_retry_after=0.05)


def _async_fixture(func: Callable[..., Any]) -> Any:
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - exercised only without pytest-asyncio

        def missing() -> None:
            pytest.fail(f"the {func.__name__} fixture needs pytest-asyncio installed")

        return pytest.fixture(name=func.__name__)(missing)
    return pytest_asyncio.fixture(func)


@_async_fixture
async def vidgo_fake() -> AsyncIterator[FakeVidgo]:
    """A started :class:`~vidgo_async.testing.FakeVidgo` on 127.0.0.1, closed after the test."""
    async with FakeVidgo() as fake:
        yield fake


@_async_fixture
async def vidgo_client(vidgo_fake: FakeVidgo) -> AsyncIterator[VidgoClient]:
    """A :class:`~vidgo_async.VidgoClient` talking to ``vidgo_fake``, with fast policies."""
    async with VidgoClient(
        vidgo_fake.api_key,
        base_url=vidgo_fake.url,
        poll=FAST_POLL,
        retry=FAST_RETRY,
        timeouts=Timeouts(connect=2.0, total=5.0),
        max_polls_per_second=1000.0,
    ) as client:
        yield client
