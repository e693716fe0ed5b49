"""Type-checked only (``mypy --strict tests/typing``), never run: the test helpers, as typed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import _vidgo_async_pytest
from vidgo_async import Event, PollPolicy, RetryPolicy, Timeouts, VidgoClient
from vidgo_async.testing import FAST_POLL, FAST_RETRY, FAST_TIMEOUTS, FakeVidgo, fast_client


async def own_fixture() -> AsyncIterator[VidgoClient]:
    events: list[Event] = []
    async with (
        FakeVidgo(run_time=0.5) as fake,
        fast_client(fake, on_event=events.append, max_connections=4) as client,
    ):
        yield client
    poll: PollPolicy = FAST_POLL
    retry: RetryPolicy = FAST_RETRY
    timeouts: Timeouts = FAST_TIMEOUTS
    del poll, retry, timeouts


plugin_fixtures: list[str] = _vidgo_async_pytest.__all__
