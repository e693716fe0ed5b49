"""Constants and checks shared by the adversary tests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator

from vidgo_async import PollPolicy, RetryPolicy, Timeouts, VidgoClient

KEY = "sk-secret-KEY-123"
FAST_POLL = PollPolicy(initial=0.01, factor=1.5, max_interval=0.05)
FAST_RETRY = RetryPolicy(base_delay=0.001, max_delay=0.01, max_retry_after=0.05)
TIMEOUTS = Timeouts(connect=2, total=5)
# What nothing may ever let escape from a server answer or a callback body.
FORBIDDEN = (KeyError, OverflowError, RecursionError, UnicodeError, AssertionError, RuntimeError)


PARENT, TRACK = "parent-1", "track-1"  # the pair most tests convert


async def convert(sdk: VidgoClient, timeout: float = 3.0) -> str:
    """``PARENT``/``TRACK`` converted within ``timeout`` (bounded a few seconds more)."""
    return await asyncio.wait_for(sdk.convert_to_wav(PARENT, TRACK, timeout=timeout), timeout + 5)


def chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and every exception reachable through ``__cause__`` and ``__context__``."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [current.__cause__, current.__context__]


def texts_of(exc: BaseException) -> Iterator[str]:
    """Everything an exception chain would print or expose as attributes."""
    for item in chain(exc):
        yield str(item)
        yield repr(item)
        yield from (repr(arg) for arg in item.args)
        yield from (repr(value) for value in vars(item).values())


def assert_no_key(exc: BaseException | None, records: list[logging.LogRecord]) -> None:
    """The API key appears neither in the exception chain nor in any log line."""
    if exc is not None:
        for text in texts_of(exc):
            assert KEY not in text, text[:300]
    for record in records:
        line = record.getMessage()
        assert KEY not in line, line[:300]
        if record.exc_info and record.exc_info[1] is not None:
            assert_no_key(record.exc_info[1], [])


async def until(condition: Callable[[], object]) -> None:
    """Wait (5 s at most) until ``condition()`` holds."""
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110 - logs and the server's record are no events
            await asyncio.sleep(0.005)
