"""Policies scaled to the fake's fast clock, and a client built with them.

The pytest plugin's ``vidgo_client`` is ``fast_client(vidgo_fake)``; users build
their own fixtures from the same pieces.
"""

from __future__ import annotations

from typing import Any

from .. import PollPolicy, RetryPolicy, Timeouts, VidgoClient
from ._server import FakeVidgo

__all__ = ["FAST_POLL", "FAST_RETRY", "FAST_TIMEOUTS", "fast_client"]

FAST_POLL = PollPolicy(initial=0.01, factor=1.5, max_interval=0.05, callback_interval=0.2)
"""Waits check after 10 ms, then at most every 50 ms (the fake's tasks take ~0.1 s)."""

FAST_RETRY = RetryPolicy(base_delay=0.001, max_delay=0.01, max_retry_after=0.05)
"""Retries pause at most 10 ms, and honour a ``Retry-After`` up to 50 ms."""

FAST_TIMEOUTS = Timeouts(connect=2.0, total=5.0)
"""A request to a fake on this machine that takes seconds has hung."""


def fast_client(
    fake: FakeVidgo,
    *,
    poll: PollPolicy = FAST_POLL,
    retry: RetryPolicy = FAST_RETRY,
    timeouts: Timeouts = FAST_TIMEOUTS,
    max_polls_per_second: float = 1000.0,
    **options: Any,
) -> VidgoClient:
    """A client of a started fake, with the fast policies.

    Use it as the client itself: ``async with fast_client(fake) as client: ...``.

    Args:
        fake: A started :class:`FakeVidgo`; the client uses its URL and API key.
        poll: How waits space their status requests.
        retry: How single calls retry transient failures.
        timeouts: Per-request timeouts.
        max_polls_per_second: Client-wide cap on status requests (high: the
            fake has no quota to protect).
        **options: Further :class:`~vidgo_async.VidgoClient` keyword arguments
            (``on_event``, ``callbacks``, ``max_connections``, ``session``).

    Returns:
        A new client; close it with ``aclose()`` or ``async with``.

    Raises:
        RuntimeError: The fake was never started.
    """
    return VidgoClient(
        fake.api_key,
        base_url=fake.url,
        poll=poll,
        retry=retry,
        timeouts=timeouts,
        max_polls_per_second=max_polls_per_second,
        **options,
    )
