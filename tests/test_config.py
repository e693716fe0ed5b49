"""Configuration: the key and base URL, policies, and who owns the HTTP session."""

from __future__ import annotations

import gc
import warnings
from typing import Any

import aiohttp
import attrs
import pytest

from vidgo_async import (
    ClientClosedError,
    ConfigurationError,
    PollPolicy,
    RetryPolicy,
    Timeouts,
    VidgoClient,
)
from vidgo_async.testing import FakeVidgo

pytestmark = pytest.mark.asyncio


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No VIDGO_* variables set."""
    monkeypatch.delenv("VIDGO_API_KEY", raising=False)
    monkeypatch.delenv("VIDGO_BASE_URL", raising=False)
    return monkeypatch


async def test_missing_key_names_env_variable(clean_env: pytest.MonkeyPatch) -> None:
    """Without a key anywhere, ConfigurationError names VIDGO_API_KEY."""
    with pytest.raises(ConfigurationError, match="VIDGO_API_KEY") as info:
        VidgoClient()
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("key", ["", "   ", "key with space", "key\nX-Injected: 1", "key\x00"])
async def test_unusable_key_is_configuration_error(clean_env: pytest.MonkeyPatch, key: str) -> None:
    """An empty, blank or header-breaking key is refused up front."""
    with pytest.raises(ConfigurationError):
        VidgoClient(key)


async def test_empty_env_key_is_configuration_error(clean_env: pytest.MonkeyPatch) -> None:
    """An empty VIDGO_API_KEY counts as missing."""
    clean_env.setenv("VIDGO_API_KEY", "")
    with pytest.raises(ConfigurationError, match="VIDGO_API_KEY"):
        VidgoClient()


async def test_key_from_env(clean_env: pytest.MonkeyPatch, fake: FakeVidgo) -> None:
    """The key comes from VIDGO_API_KEY when not passed."""
    clean_env.setenv("VIDGO_API_KEY", fake.api_key)
    async with VidgoClient(base_url=fake.url) as client:
        await client.balance()
    assert fake.requests[0].headers["Authorization"] == f"Bearer {fake.api_key}"


async def test_key_argument_beats_env(clean_env: pytest.MonkeyPatch, fake: FakeVidgo) -> None:
    """An explicit api_key wins over VIDGO_API_KEY."""
    clean_env.setenv("VIDGO_API_KEY", "env-key")
    async with VidgoClient(fake.api_key, base_url=fake.url) as client:
        await client.balance()


async def test_base_url_from_env(clean_env: pytest.MonkeyPatch, fake: FakeVidgo) -> None:
    """The base URL comes from VIDGO_BASE_URL when not passed."""
    clean_env.setenv("VIDGO_BASE_URL", fake.url)
    async with VidgoClient(fake.api_key) as client:
        balance = await client.balance()
    assert balance.credits_amount == fake.credits
    assert fake.request_count("balance") == 1


async def test_default_base_url(clean_env: pytest.MonkeyPatch) -> None:
    """Without argument or env, the client talks to https://api.vidgo.ai."""
    async with VidgoClient("key") as client:
        assert client.base_url.rstrip("/") == "https://api.vidgo.ai"


async def test_base_url_trailing_slash(fake: FakeVidgo) -> None:
    """A base URL with a trailing slash works the same."""
    async with VidgoClient(fake.api_key, base_url=fake.url + "/") as client:
        await client.balance()
    assert fake.requests[0].path == "/api/user/balance"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "api.vidgo.ai",
        "ftp://api.vidgo.ai",
        "http://",
        "https://user:password@api.vidgo.ai",
        "https://api.vidgo.ai/?x=1",
        "https://api.vidgo.ai/#frag",
        "not a url at all",
        "javascript:alert(1)",
    ],
)
async def test_bad_base_url_is_configuration_error(url: str) -> None:
    """A base URL that is not an absolute http(s) origin is refused."""
    with pytest.raises(ConfigurationError):
        VidgoClient("key", base_url=url)


async def test_bad_env_base_url_is_configuration_error(clean_env: pytest.MonkeyPatch) -> None:
    """A bad VIDGO_BASE_URL is refused too."""
    clean_env.setenv("VIDGO_BASE_URL", "ftp://example.com")
    with pytest.raises(ConfigurationError):
        VidgoClient("key")


BAD_POLICIES: list[Any] = [
    pytest.param(lambda: RetryPolicy(max_attempts=0), id="retry-max_attempts-0"),
    pytest.param(lambda: RetryPolicy(max_attempts=-1), id="retry-max_attempts-neg"),
    pytest.param(lambda: RetryPolicy(base_delay=-1), id="retry-base_delay-neg"),
    pytest.param(lambda: RetryPolicy(base_delay=float("nan")), id="retry-base_delay-nan"),
    pytest.param(lambda: RetryPolicy(max_delay=float("inf")), id="retry-max_delay-inf"),
    pytest.param(lambda: RetryPolicy(max_retry_after=-1), id="retry-max_retry_after-neg"),
    pytest.param(lambda: PollPolicy(initial=-1), id="poll-initial-neg"),
    pytest.param(lambda: PollPolicy(initial=float("nan")), id="poll-initial-nan"),
    pytest.param(lambda: PollPolicy(factor=0.5), id="poll-factor-shrinks"),
    pytest.param(lambda: PollPolicy(max_interval=-1), id="poll-max_interval-neg"),
    # A cap near the largest float overflowed the schedule's arithmetic mid-wait.
    pytest.param(lambda: PollPolicy(max_interval=1.5e306), id="poll-max_interval-past-a-day"),
    pytest.param(lambda: PollPolicy(max_interval=float("nan")), id="poll-max_interval-nan"),
    pytest.param(lambda: PollPolicy(jitter=2), id="poll-jitter-over-1"),
    pytest.param(lambda: PollPolicy(jitter=-0.1), id="poll-jitter-neg"),
    pytest.param(lambda: PollPolicy(unseen_grace=-1), id="poll-unseen_grace-neg"),
    pytest.param(lambda: PollPolicy(unseen_grace=float("inf")), id="poll-unseen_grace-inf"),
    pytest.param(lambda: Timeouts(connect=0), id="timeouts-connect-0"),
    pytest.param(lambda: Timeouts(total=-1), id="timeouts-total-neg"),
    pytest.param(lambda: Timeouts(total=float("inf")), id="timeouts-total-inf"),
    pytest.param(lambda: Timeouts(connect="10"), id="timeouts-connect-str"),
    # Ints past any float: math.isfinite raised OverflowError, no ValueError.
    pytest.param(lambda: PollPolicy(initial=10**400), id="poll-initial-past-a-float"),
    pytest.param(lambda: RetryPolicy(max_delay=10**400), id="retry-max_delay-past-a-float"),
    pytest.param(lambda: Timeouts(total=10**400), id="timeouts-total-past-a-float"),
]


@pytest.mark.parametrize("build", BAD_POLICIES)
async def test_policies_validate(build: Any) -> None:
    """Out-of-range policy fields raise ValueError/TypeError at construction."""
    with pytest.raises((ValueError, TypeError)):
        build()


@pytest.mark.parametrize("cls", [RetryPolicy, PollPolicy, Timeouts])
async def test_policies_are_keyword_only(cls: Any) -> None:
    """Policies take keyword arguments only."""
    with pytest.raises(TypeError):
        cls(1)


@pytest.mark.parametrize("policy", [RetryPolicy(), PollPolicy(), Timeouts()])
async def test_policies_are_frozen_and_evolve(policy: Any) -> None:
    """Policies are immutable; attrs.evolve makes a changed copy."""
    name = attrs.fields(type(policy))[0].name
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        setattr(policy, name, 3)
    changed = attrs.evolve(policy, **{name: 3})
    assert getattr(changed, name) == 3
    assert changed != policy


async def test_policy_defaults_match_design() -> None:
    """The documented defaults hold."""
    assert RetryPolicy().max_attempts == 4
    assert RetryPolicy().base_delay == 0.5
    assert RetryPolicy().max_delay == 8.0
    assert RetryPolicy().max_retry_after == 120.0
    assert (PollPolicy().initial, PollPolicy().factor, PollPolicy().max_interval) == (1, 1.5, 15)
    assert (Timeouts().connect, Timeouts().total) == (10.0, 30.0)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_polls_per_second": 0}, ValueError),
        ({"max_polls_per_second": -1}, ValueError),
        ({"max_polls_per_second": float("nan")}, ValueError),
        ({"max_polls_per_second": float("inf")}, ValueError),
        ({"max_polls_per_second": 10**400}, ValueError),
        ({"max_submits_per_second": 10**400}, ValueError),
        ({"max_connections": 0}, ValueError),
        ({"max_connections": True}, TypeError),
        ({"max_connections": 1.5}, TypeError),
    ],
)
async def test_client_limits_validate(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """Bad client-wide limits raise at construction."""
    with pytest.raises(error):
        VidgoClient("key", base_url="http://127.0.0.1:1", **kwargs)


async def test_injected_session_is_not_closed(fake: FakeVidgo) -> None:
    """A session passed in stays open and usable after the client closes."""
    async with aiohttp.ClientSession() as session:
        async with VidgoClient(fake.api_key, base_url=fake.url, session=session) as client:
            await client.balance()
        assert not session.closed
        async with session.get(fake.url + "/api/user/balance") as response:
            assert response.status == 401


async def test_created_session_is_closed(fake: FakeVidgo) -> None:
    """A session the client created is closed by aclose: nothing is left unclosed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = VidgoClient(fake.api_key, base_url=fake.url)
        await client.balance()
        await client.aclose()
        del client
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


async def test_aclose_is_idempotent(fake: FakeVidgo) -> None:
    """aclose() may be called twice."""
    client = VidgoClient(fake.api_key, base_url=fake.url)
    await client.balance()
    await client.aclose()
    await client.aclose()


async def test_closed_client_refuses_calls(fake: FakeVidgo) -> None:
    """A closed client raises ClientClosedError instead of silently reopening a session."""
    client = VidgoClient(fake.api_key, base_url=fake.url)
    await client.aclose()
    with pytest.raises(ClientClosedError):
        await client.balance()
    assert fake.requests == []


async def test_client_built_outside_loop_is_usable(fake: FakeVidgo) -> None:
    """Constructing a client opens nothing: the first call does."""
    client = VidgoClient(fake.api_key, base_url=fake.url)
    assert fake.requests == []
    async with client:
        await client.balance()


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"retry": 5}, id="retry"),
        pytest.param({"poll": "fast"}, id="poll"),
        pytest.param({"timeouts": None}, id="timeouts"),
        pytest.param({"session": object()}, id="session"),
        pytest.param({"on_event": 3}, id="on_event"),
    ],
)
async def test_options_of_the_wrong_kind_are_type_errors(options: dict[str, object]) -> None:
    """A policy, session or hook of the wrong kind is refused when the client is built."""
    with pytest.raises(TypeError):
        VidgoClient("key", **options)  # type: ignore[arg-type]
