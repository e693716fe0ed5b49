"""Fixtures of the CLI tests: every command runs in the test's own directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from vidgo_async.testing import FakeVidgo


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every command in ``tmp_path``: the default journal is written there."""
    monkeypatch.chdir(tmp_path)


@pytest_asyncio.fixture
async def make_fake_for_cli() -> AsyncIterator[FakeVidgo]:
    """A fake whose tasks run for a while (so a batch has submits and waits in flight)
    and whose 409 names no task, closed after the test."""
    async with FakeVidgo(queue_time=0.05, run_time=0.6, seed=3) as fake:
        yield fake
