"""The pytest plugin of vidgo-async (entry point ``pytest11``): ``vidgo_fake``, ``vidgo_client``.

pytest imports every installed plugin when it starts, in every project of the
environment. Importing anything under ``vidgo_async`` imports the client and
aiohttp, so this module lives outside the package and imports only pytest; the
fixtures import the fake server and the client when a test uses them.

The fixtures are plain pytest fixtures. Each hands its async set-up and
tear-down to the plugin that runs the test, so that the fake, the client and
the test share one event loop:

- pytest-asyncio, when it runs the test (``@pytest.mark.asyncio``, or
  ``asyncio_mode = auto``): in the loop of the test's ``loop_scope``;
- anyio's plugin, when the test uses ``anyio_backend`` (``@pytest.mark.anyio``,
  or ``anyio_mode = auto``): on its asyncio backend; other backends skip the test.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Literal, cast

import pytest

if TYPE_CHECKING:
    from vidgo_async import VidgoClient
    from vidgo_async.testing import FakeVidgo

__all__ = ["vidgo_client", "vidgo_fake"]

_LoopScope = Literal["function", "class", "module", "package", "session"]
_LOOP_SCOPES: tuple[_LoopScope, ...] = ("function", "class", "module", "package", "session")

_NO_RUNNER = (
    "{name} needs an async test run on asyncio by pytest-asyncio "
    "(@pytest.mark.asyncio, or asyncio_mode = auto) or by anyio "
    "(@pytest.mark.anyio, or anyio_mode = auto)"
)
_TWO_RUNNERS = (
    "{name}: both pytest-asyncio (an asyncio marker, or asyncio_mode = auto) and anyio "
    "(anyio_backend, from an anyio marker or anyio_mode = auto) claim this test, so its "
    "async fixtures may run in another event loop than the test; leave it to one of them"
)


def _fake_body() -> Callable[[], AsyncIterator[FakeVidgo]]:
    # A new function object per fixture: pytest-asyncio marks the function it decorates.
    async def serve_fake() -> AsyncIterator[FakeVidgo]:
        from vidgo_async.testing import FakeVidgo

        async with FakeVidgo() as fake:
            yield fake

    return serve_fake


def _client_body() -> Callable[[FakeVidgo], AsyncIterator[VidgoClient]]:
    async def open_client(vidgo_fake: FakeVidgo) -> AsyncIterator[VidgoClient]:
        from vidgo_async.testing import fast_client

        async with fast_client(vidgo_fake) as client:
            yield client

    return open_client


# anyio runs these in its test runner (they are requested only by tests that use anyio_backend).
_vidgo_fake_anyio = pytest.fixture(name="_vidgo_fake_anyio")(_fake_body())
_vidgo_client_anyio = pytest.fixture(name="_vidgo_client_anyio")(_client_body())


def _add_asyncio_fixtures() -> None:
    """Fixtures run by pytest-asyncio: a pair per loop scope, to share the loop of the test."""
    try:
        import pytest_asyncio
    except ImportError:  # pragma: no cover - exercised only without pytest-asyncio installed
        return
    for scope in _LOOP_SCOPES:
        fake, client = f"_vidgo_fake_asyncio_{scope}", f"_vidgo_client_asyncio_{scope}"
        globals()[fake] = pytest_asyncio.fixture(_fake_body(), name=fake, loop_scope=scope)
        globals()[client] = pytest_asyncio.fixture(_client_body(), name=client, loop_scope=scope)


_add_asyncio_fixtures()


def _runner_suffix(request: pytest.FixtureRequest, name: str) -> str:
    """Which plugin runs the test: ``asyncio_<loop scope>`` or ``anyio``; else fail or skip."""
    item = request.node
    function = getattr(item, "function", None)
    hypothesis = getattr(function, "hypothesis", None)
    if not inspect.iscoroutinefunction(getattr(hypothesis, "inner_test", function)):
        pytest.fail(_NO_RUNNER.format(name=name), pytrace=False)
    marker = item.get_closest_marker("asyncio")
    by_asyncio = marker is not None and request.config.pluginmanager.has_plugin("asyncio")
    by_anyio = "anyio_backend" in request.fixturenames
    if by_asyncio and by_anyio:
        # pytest-asyncio runs the test, but anyio may take its async fixtures into
        # its own event loop (depending on the plugins' order): fail now, not in a hang.
        pytest.fail(_TWO_RUNNERS.format(name=name), pytrace=False)
    if marker is not None and by_asyncio:
        return f"asyncio_{_loop_scope(request.config, marker)}"
    if by_anyio:
        backend = request.getfixturevalue("anyio_backend_name")
        if backend != "asyncio":
            pytest.skip(f"{name} runs on asyncio only, not on anyio's {backend} backend")
        return "anyio"
    pytest.fail(_NO_RUNNER.format(name=name), pytrace=False)


def _loop_scope(config: pytest.Config, marker: pytest.Mark) -> str:
    """The loop scope pytest-asyncio runs a test in (its marker, else its configuration)."""
    scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")
    if scope is None:
        try:
            scope = config.getini("asyncio_default_test_loop_scope")
        except ValueError:  # pytest-asyncio before 0.26 has no such option
            scope = None
    if scope not in _LOOP_SCOPES:
        return "function"
    return str(scope)


@pytest.fixture
def vidgo_fake(request: pytest.FixtureRequest) -> FakeVidgo:
    """A started :class:`~vidgo_async.testing.FakeVidgo` on 127.0.0.1, closed after the test."""
    suffix = _runner_suffix(request, "vidgo_fake")
    return cast("FakeVidgo", request.getfixturevalue(f"_vidgo_fake_{suffix}"))


@pytest.fixture
def vidgo_client(request: pytest.FixtureRequest, vidgo_fake: FakeVidgo) -> VidgoClient:
    """A :class:`~vidgo_async.VidgoClient` of ``vidgo_fake`` with fast policies, closed after."""
    suffix = _runner_suffix(request, "vidgo_client")
    return cast("VidgoClient", request.getfixturevalue(f"_vidgo_client_{suffix}"))
