"""Fixtures: a hostile server per test, and fast clients of it closed after the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio

from vidgo_async import VidgoClient

from .server import HostileServer, running
from .support import FAST_POLL, FAST_RETRY, KEY, TIMEOUTS

MakeSdk = Callable[..., VidgoClient]


@pytest_asyncio.fixture
async def server() -> AsyncIterator[HostileServer]:
    """A started hostile server, closed after the test."""
    async with running(KEY) as started:
        yield started


@pytest_asyncio.fixture
async def make_sdk(server: HostileServer) -> AsyncIterator[MakeSdk]:
    """A factory of clients of ``server`` with fast policies, all closed after the test."""
    clients: list[VidgoClient] = []

    def make(**kwargs: Any) -> VidgoClient:
        kwargs.setdefault("base_url", server.url)
        kwargs.setdefault("poll", FAST_POLL)
        kwargs.setdefault("retry", FAST_RETRY)
        kwargs.setdefault("timeouts", TIMEOUTS)
        kwargs.setdefault("max_polls_per_second", 1000)
        client = VidgoClient(KEY, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest_asyncio.fixture
async def sdk(make_sdk: MakeSdk) -> VidgoClient:
    """A fast client of ``server``."""
    return make_sdk()
