"""What the CallbackRelay tests share: two worker processes of one web app, played by
two relays on one database (the fixtures are in ``conftest.py``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
from support import FAST_RETRY, FAST_TIMEOUTS

from vidgo_async import PollPolicy, VidgoClient
from vidgo_async.postgres import CallbackRelay
from vidgo_async.testing import FakeVidgo
from vidgo_async.webhooks import CallbackReceiver

SECRET = "s" * 32
# A safety net far longer than any task here: a wait that returns quickly was woken by a callback.
SLOW_NET = PollPolicy(initial=0.01, factor=1.5, max_interval=0.05, callback_interval=30.0)
QUICK_NET = PollPolicy(initial=0.01, factor=1.5, max_interval=0.05, callback_interval=0.5)

MakeRelay = Callable[..., Awaitable[CallbackRelay]]


@attrs.frozen
class Worker:
    """A worker process's receiver, its relay, and the URL it serves at."""

    receiver: CallbackReceiver
    relay: CallbackRelay
    url: str


def client_of(fake: FakeVidgo, receiver: CallbackReceiver, poll: PollPolicy) -> VidgoClient:
    """A client of ``fake`` whose submits carry ``receiver``'s callback URLs."""
    return VidgoClient(
        fake.api_key,
        base_url=fake.url,
        callbacks=receiver,
        poll=poll,
        retry=FAST_RETRY,
        timeouts=FAST_TIMEOUTS,
    )
