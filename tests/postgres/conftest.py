"""The PostgreSQL tests' own fixtures: a quota namespace, relays and a relaying worker.

Their server is the session's ``postgres_dsn`` (``tests/conftest.py``): a real
PostgreSQL started with ``pg_server.TemporaryPostgres`` on 127.0.0.1, as a
user other than root, the first time a test asks for it (the README's
"Several processes" snippet does too).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own: tests never share a quota by accident."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest_asyncio.fixture
async def make_relay(postgres_dsn: str) -> AsyncIterator[Any]:
    """A factory of open relays (on the test database unless ``dsn=``), all closed after
    the test (``relay_support.MakeRelay``)."""
    from relay_support import SECRET

    from vidgo_async.postgres import CallbackRelay

    relays: list[CallbackRelay] = []

    async def make(secret: str = SECRET, dsn: str | None = None, **kwargs: Any) -> CallbackRelay:
        relay = CallbackRelay(dsn or postgres_dsn, secret=secret, **kwargs)
        await relay.start()
        relays.append(relay)
        return relay

    yield make
    for relay in relays:
        await asyncio.wait_for(relay.close(), 30)


@pytest_asyncio.fixture
async def worker_b(make_relay: Any) -> AsyncIterator[Any]:
    """Worker B (``relay_support.Worker``): a receiver with a relay, serving on 127.0.0.1
    (the app's one public URL)."""
    from relay_support import Worker

    from vidgo_async.webhooks import CallbackReceiver

    relay = await make_relay()
    receiver = CallbackReceiver(relay=relay)
    async with receiver.serve() as url:
        yield Worker(receiver, relay, url)
