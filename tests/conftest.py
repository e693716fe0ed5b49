"""Shared fixtures: factories for fake servers and clients that close what they create,
and a real PostgreSQL server for the tests that need one."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from pg_server import TemporaryPostgres, Unavailable
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


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The DSN of a running PostgreSQL server, started once for the session.

    ``initdb`` into a temporary directory and ``pg_ctl start`` on a free port
    of 127.0.0.1 (``pg_server.TemporaryPostgres``), stopped and removed at the
    end; ``$VIDGO_TEST_POSTGRES_DSN`` names a server of your own instead.
    Where none can be started (no binaries; root and no other user) the test
    skips, saying why - unless ``$VIDGO_REQUIRE_POSTGRES`` is set (CI).
    """
    external = os.environ.get("VIDGO_TEST_POSTGRES_DSN")
    if external:
        yield external
        return
    try:
        server = TemporaryPostgres()
    except Unavailable as exc:
        if os.environ.get("VIDGO_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required here ($VIDGO_REQUIRE_POSTGRES): {exc}")
        pytest.skip(str(exc))
    try:
        dsn = server.start()
    except (subprocess.SubprocessError, OSError) as exc:
        stderr = getattr(exc, "stderr", None) or b""
        server.stop()
        pytest.fail(
            f"PostgreSQL did not start ({exc}):\n{stderr.decode(errors='replace')}\n"
            f"{server.log_tail()}"
        )
    try:
        yield dsn
    finally:
        server.stop()
