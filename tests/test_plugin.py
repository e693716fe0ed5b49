"""The pytest plugin: a separate project uses ``vidgo_fake`` and ``vidgo_client``."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

STRICT_TESTS = """
import pytest

from vidgo_async import AlreadyConvertedError, VidgoClient
from vidgo_async.testing import FakeVidgo


@pytest.mark.asyncio
async def test_convert(vidgo_client: VidgoClient, vidgo_fake: FakeVidgo) -> None:
    url = await vidgo_client.convert_to_wav("parent", "audio-1")
    assert url.startswith(vidgo_fake.url)
    assert vidgo_fake.accept_count["audio-1"] == 1


@pytest.mark.asyncio
async def test_fresh_fake_per_test(vidgo_client: VidgoClient, vidgo_fake: FakeVidgo) -> None:
    assert vidgo_fake.requests == []
    await vidgo_client.submit_wav("parent", "audio-1")
    with pytest.raises(AlreadyConvertedError):
        await vidgo_client.submit_wav("parent", "audio-1")
"""

AUTO_TESTS = """
from vidgo_async import TaskStatus, VidgoClient
from vidgo_async.testing import FakeVidgo


async def test_wait(vidgo_client: VidgoClient, vidgo_fake: FakeVidgo) -> None:
    task = await vidgo_client.submit_wav("parent", "audio-1")
    done = await vidgo_client.wait(task.task_id, timeout=10)
    assert done.status is TaskStatus.FINISHED


async def test_fake_alone(vidgo_fake: FakeVidgo) -> None:
    assert vidgo_fake.url.startswith("http://127.0.0.1:")
"""


@pytest.mark.parametrize(
    ("mode", "source"),
    [
        pytest.param("strict", STRICT_TESTS, id="strict"),
        pytest.param("auto", AUTO_TESTS, id="auto"),
    ],
)
def test_fixtures_in_separate_project(pytester: pytest.Pytester, mode: str, source: str) -> None:
    """A separate project using the fixtures passes under pytest-asyncio strict and auto mode."""
    pytester.makeini(
        f"""
        [pytest]
        asyncio_mode = {mode}
        asyncio_default_fixture_loop_scope = function
        filterwarnings = error
        """
    )
    pytester.makepyfile(test_user=source)
    result = pytester.runpytest_subprocess("-p", "asyncio", "-q", timeout=120)
    result.assert_outcomes(passed=2)
