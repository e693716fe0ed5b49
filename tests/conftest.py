"""Shared fixtures: factories for fake servers and clients that close what they create."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from support import FAST_POLL, FAST_RETRY, FAST_TIMEOUTS, MakeClient, MakeFake

from vidgo_async import RetryPolicy, VidgoClient
from vidgo_async.testing import FakeVidgo


@pytest_asyncio.fixture
async def make_fake() -> AsyncIterator[MakeFake]:
    """A factory of started fake servers, all closed after the test."""
    fakes: list[FakeVidgo] = []

    async def make(**kwargs: Any) -> FakeVidgo:
        fake = FakeVidgo(**kwargs)
        await fake.start()
        fakes.append(fake)
        return fake

    yield make
    for fake in reversed(fakes):
        await fake.close()


@pytest_asyncio.fixture
async def fake(make_fake: MakeFake) -> FakeVidgo:
    """A fake server with default settings."""
    return await make_fake()


@pytest_asyncio.fixture
async def make_client(fake: FakeVidgo) -> AsyncIterator[MakeClient]:
    """A factory of clients with fast policies (default target: ``fake``), all closed after."""
    clients: list[VidgoClient] = []

    def make(target: FakeVidgo | None = None, **kwargs: Any) -> VidgoClient:
        server = target or fake
        kwargs.setdefault("api_key", server.api_key)
        kwargs.setdefault("base_url", server.url)
        kwargs.setdefault("poll", FAST_POLL)
        kwargs.setdefault("retry", FAST_RETRY)
        kwargs.setdefault("timeouts", FAST_TIMEOUTS)
        kwargs.setdefault("max_polls_per_second", 1000.0)
        api_key = kwargs.pop("api_key")
        client = VidgoClient(api_key, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest_asyncio.fixture
async def client(make_client: MakeClient) -> VidgoClient:
    """A client of ``fake`` with fast policies."""
    return make_client()


@pytest_asyncio.fixture
async def one_shot(make_client: MakeClient) -> VidgoClient:
    """A client of ``fake`` that makes exactly one attempt per call (raw errors visible)."""
    return make_client(retry=RetryPolicy(max_attempts=1))
