"""The pytest plugin, as a separate project sees it: cheap to load, fixtures under every runner.

Each test runs pytest in a subprocess on a small user project, with the plugins
installed in this environment (pytest-asyncio, anyio) enabled or not.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

# A bound on each inner pytest run; the fake's tasks take ~0.1 s.
RUN_TIMEOUT = 60

USER_TESTS = """
import pytest
import pytest_asyncio

from vidgo_async import AlreadyConvertedError, Task, TaskStatus, VidgoClient
from vidgo_async.testing import FakeVidgo

{pytestmark}


@{fixture}
async def submitted(vidgo_client: VidgoClient) -> Task:
    return await vidgo_client.submit_wav("5c79xxxxbe8e", "e231xxxx-0002")


async def test_convert(vidgo_client: VidgoClient, vidgo_fake: FakeVidgo) -> None:
    url = await vidgo_client.convert_to_wav("5c79xxxxbe8e", "e231xxxx-0001")
    assert url.startswith(vidgo_fake.url) and url.endswith(".wav")
    assert vidgo_fake.accept_count["e231xxxx-0001"] == 1


async def test_fresh_fake_per_test(vidgo_client: VidgoClient, vidgo_fake: FakeVidgo) -> None:
    assert vidgo_fake.requests == []
    await vidgo_client.submit_wav("5c79xxxxbe8e", "e231xxxx-0001")
    with pytest.raises(AlreadyConvertedError):
        await vidgo_client.submit_wav("5c79xxxxbe8e", "e231xxxx-0001")


async def test_a_fixture_of_the_user(vidgo_client: VidgoClient, submitted: Task) -> None:
    done = await vidgo_client.wait(submitted.task_id, timeout=10)
    assert done.status is TaskStatus.FINISHED
"""

MODULE_LOOP_TEST = """

@pytest.mark.asyncio(loop_scope="module")
async def test_in_a_module_loop(vidgo_client: VidgoClient, vidgo_fake: FakeVidgo) -> None:
    await vidgo_client.convert_to_wav("5c79xxxxbe8e", "e231xxxx-0003")
    assert vidgo_fake.accept_count["e231xxxx-0003"] == 1
"""

ASYNCIO_BACKEND = """
import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
"""

LOOP_SCOPE = "asyncio_default_fixture_loop_scope = function"

# (ini lines, module-level marks, the user's fixture decorator, extra pytest arguments)
MODES = [
    pytest.param(
        ["asyncio_mode = strict", LOOP_SCOPE],
        "pytestmark = pytest.mark.asyncio",
        "pytest_asyncio.fixture",
        [],
        id="pytest-asyncio-strict",
    ),
    pytest.param(
        ["asyncio_mode = auto", LOOP_SCOPE], "", "pytest.fixture", [], id="pytest-asyncio-auto"
    ),
    pytest.param(
        [LOOP_SCOPE],
        "pytestmark = pytest.mark.anyio",
        "pytest.fixture",
        [],
        id="anyio-marker-beside-pytest-asyncio",
    ),
    pytest.param(
        ["anyio_mode = auto", LOOP_SCOPE],
        "",
        "pytest.fixture",
        [],
        id="anyio-auto-beside-pytest-asyncio",
    ),
    pytest.param(
        ["anyio_mode = auto"],
        "",
        "pytest.fixture",
        ["-p", "no:asyncio"],
        id="anyio-auto-without-pytest-asyncio",
    ),
]


def _ini(pytester: pytest.Pytester, lines: list[str]) -> None:
    body = "\n".join(["[pytest]", "filterwarnings = error", "timeout = 30", *lines])
    pytester.makefile(".ini", pytest=body)


@pytest.mark.parametrize(("ini", "pytestmark", "fixture", "args"), MODES)
def test_fixtures_convert_a_track(
    pytester: pytest.Pytester, ini: list[str], pytestmark: str, fixture: str, args: list[str]
) -> None:
    """A user's tests convert a track with vidgo_client and vidgo_fake under each async runner."""
    _ini(pytester, ini)
    source = USER_TESTS.format(pytestmark=pytestmark, fixture=fixture)
    if "asyncio_mode = strict" in ini:
        source += MODULE_LOOP_TEST
    pytester.makeconftest(ASYNCIO_BACKEND)
    pytester.makepyfile(test_user=source)
    result = pytester.runpytest_subprocess(*args, "-p", "no:cacheprovider", timeout=RUN_TIMEOUT)
    result.assert_outcomes(passed=source.count("\nasync def test_"))


MISUSES = """
import pytest


def test_sync(vidgo_fake):
    pass


async def test_claimed_by_no_runner(vidgo_fake):
    pass


@pytest.mark.asyncio
@pytest.mark.anyio
async def test_claimed_by_two_runners(vidgo_client):
    pass


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_on_trio(vidgo_fake):
    pass
"""


def test_misuse_fails_at_once_with_a_clear_message(pytester: pytest.Pytester) -> None:
    """A test no asyncio runner runs, or two claim, errors at set-up; anyio's trio backend skips."""
    _ini(pytester, [LOOP_SCOPE])
    pytester.makepyfile(test_user=MISUSES)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", timeout=RUN_TIMEOUT)
    result.assert_outcomes(errors=3, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_sync*",
            "vidgo_fake needs an async test run on asyncio by pytest-asyncio*",
            "*ERROR at setup of test_claimed_by_no_runner*",
            "vidgo_fake needs an async test run on asyncio by pytest-asyncio*",
            "*ERROR at setup of test_claimed_by_two_runners*",
            "vidgo_fake: both pytest-asyncio * and anyio * claim this test*",
            "SKIPPED*vidgo_fake runs on asyncio only, not on anyio's trio backend",
        ]
    )


UNUSED_PLUGIN = """
import sys


def test_nothing_heavy_is_imported(request):
    assert request.config.pluginmanager.has_plugin("vidgo_async")
    heavy = sorted(m for m in sys.modules if m.partition(".")[0] in ("aiohttp", "vidgo_async"))
    assert heavy == []
"""


def test_a_run_without_the_fixtures_imports_neither_aiohttp_nor_the_package(
    pytester: pytest.Pytester,
) -> None:
    """The plugin is loaded by every pytest run of the environment, at the cost of pytest alone."""
    _ini(pytester, [LOOP_SCOPE])
    pytester.makepyfile(test_user=UNUSED_PLUGIN)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=RUN_TIMEOUT)
    result.assert_outcomes(passed=1)
