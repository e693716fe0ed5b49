"""``fast_client`` and the FAST_* policies: what a user's own fixtures are built from."""

from __future__ import annotations

import pytest

from vidgo_async import Event, PollPolicy
from vidgo_async.testing import FAST_POLL, FakeVidgo, fast_client

pytestmark = pytest.mark.asyncio


async def test_fast_client_converts_a_track_of_a_fake() -> None:
    """A client from ``fast_client`` converts against a fake in well under a second."""
    async with FakeVidgo() as fake, fast_client(fake) as client:
        url = await client.convert_to_wav("5c79xxxxbe8e", "e231xxxx-8cadc7dc", timeout=10)
        assert url.startswith(fake.url)
        assert fake.accept_count["e231xxxx-8cadc7dc"] == 1


async def test_fast_client_passes_overrides_to_the_client() -> None:
    """Policies can be replaced and other VidgoClient keywords (``on_event``) pass through."""
    events: list[Event] = []
    slow_first_check = PollPolicy(initial=0.2, max_interval=0.2)
    async with (
        FakeVidgo() as fake,
        fast_client(fake, poll=slow_first_check, on_event=events.append) as client,
    ):
        await client.convert_to_wav("5c79xxxxbe8e", "e231xxxx-8cadc7dc", timeout=10)
    polls = [event for event in events if event.kind == "poll"]
    # The fake's task ends after ~0.12 s: one check 0.2 s after the submit finds it done.
    assert len(polls) == 1
    assert FAST_POLL.initial < slow_first_check.initial


async def test_fast_client_needs_a_started_fake() -> None:
    """A fake that was never started has no URL to give the client."""
    with pytest.raises(RuntimeError, match="no URL before start"):
        fast_client(FakeVidgo())
