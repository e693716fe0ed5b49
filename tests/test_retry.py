"""Retries of idempotent calls: what is retried, how Retry-After is read, the retry budget."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest
from support import TRANSIENT_FAULTS, MakeClient

from vidgo_async import (
    APIError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    Timeouts,
    VidgoClient,
    VidgoError,
)
from vidgo_async.testing import FakeVidgo, Fault

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("fault", TRANSIENT_FAULTS)
async def test_get_retries_transient_failure(
    fake: FakeVidgo, make_client: MakeClient, fault: Fault
) -> None:
    """A GET that meets a transient failure is retried and succeeds."""
    client = make_client(timeouts=Timeouts(connect=1.0, total=0.3))
    task_id = fake.seed_task(status="running")
    fake.inject(fault, route="detail")
    task = await client.get_task(task_id)
    assert task.task_id == task_id
    assert fake.request_count("detail") == 2


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 409, 422])
async def test_get_never_retries_definitive_errors(
    fake: FakeVidgo, client: VidgoClient, status: int
) -> None:
    """400/401/403/404/409 (and other 4xx but 429) are answered after one request."""
    fake.inject(Fault.http_error(status, {"code": status, "message": "no"}), route="detail")
    with pytest.raises(APIError):
        await client.get_task(fake.seed_task())
    assert fake.request_count("detail") == 1


@pytest.mark.parametrize("attempts", [1, 2, 5])
async def test_max_attempts_bounds_one_call(
    fake: FakeVidgo, make_client: MakeClient, attempts: int
) -> None:
    """A call against a failing server makes exactly ``max_attempts`` requests."""
    client = make_client(retry=RetryPolicy(max_attempts=attempts, base_delay=0.001))
    fake.inject(Fault.server_error(500), route="detail", times=50)
    with pytest.raises(ServerError):
        await client.get_task("t")
    assert fake.request_count("detail") == attempts


async def test_balance_is_retried(fake: FakeVidgo, client: VidgoClient) -> None:
    """Balance, an idempotent GET, is retried like any other."""
    fake.inject(Fault.server_error(502, body="html"), route="balance")
    balance = await client.balance()
    assert balance.credits_amount == fake.credits
    assert fake.request_count("balance") == 2


def http_date(offset: float) -> str:
    """An HTTP date ``offset`` seconds from now."""
    return email.utils.formatdate(time.time() + offset, usegmt=True)


async def test_retry_after_seconds_visible(fake: FakeVidgo, one_shot: VidgoClient) -> None:
    """A 429's Retry-After in seconds is exposed as ``retry_after``."""
    fake.inject(Fault.rate_limited("7"), route="detail")
    with pytest.raises(RateLimitError) as info:
        await one_shot.get_task("t")
    assert info.value.retry_after == 7.0


async def test_retry_after_http_date_visible(fake: FakeVidgo, one_shot: VidgoClient) -> None:
    """A 429's Retry-After as an HTTP date becomes the seconds until that date."""
    fake.inject(Fault.rate_limited(http_date(60)), route="detail")
    with pytest.raises(RateLimitError) as info:
        await one_shot.get_task("t")
    assert info.value.retry_after is not None
    assert 50 <= info.value.retry_after <= 61


async def test_retry_after_on_503_visible(fake: FakeVidgo, one_shot: VidgoClient) -> None:
    """A 503's Retry-After is exposed on the ServerError."""
    headers = {"Retry-After": "12"}
    fake.inject(Fault.http_error(503, {"message": "later"}, headers), route="detail")
    with pytest.raises(ServerError) as info:
        await one_shot.get_task("t")
    assert info.value.retry_after == 12.0


RETRY_AFTER_TABLE = [
    ("0", 0.0),
    ("1", 1.0),
    ("5", 5.0),
    ("120", 120.0),
    ("1.5", 1.5),
    ("0.25", 0.25),
    (" 3 ", 3.0),
    ("-1", 0.0),
    ("-3600", 0.0),
    ("-0.5", 0.0),
    ("1e9", 1e9),
    ("99999999999999999999", 1e20),
    ("NaN", None),
    ("nan", None),
    ("inf", None),
    ("-inf", None),
    ("Infinity", None),
    ("", None),
    ("   ", None),
    ("soon", None),
    ("1,5", None),
    ("5 seconds", None),
    ("0x10", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
    ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
    ("Mon, 99 Foo 2024 99:99:99 GMT", None),
    ("Fri, 31 Dec 9999 23:59:59 GMT", "huge"),
    ("Sun, 06 Nov 1994 08:49:37 GMT", 0.0),
]


@pytest.mark.parametrize(("header", "expected"), RETRY_AFTER_TABLE)
async def test_retry_after_header_table(
    fake: FakeVidgo, one_shot: VidgoClient, header: str, expected: float | str | None
) -> None:
    """Retry-After values: seconds as sent, past dates and negatives as 0, junk ignored."""
    fake.inject(Fault.rate_limited(header), route="detail")
    with pytest.raises(RateLimitError) as info:
        await one_shot.get_task("t")
    if expected == "huge":
        assert info.value.retry_after is not None
        assert info.value.retry_after > 1e9
    else:
        assert info.value.retry_after == expected


@pytest.mark.parametrize("header", ["1e9", "inf", "NaN", "junk", "-5", http_date(10**6)])
async def test_extreme_retry_after_is_capped_when_waiting(
    fake: FakeVidgo, make_client: MakeClient, header: str
) -> None:
    """However large or odd the Retry-After, the wait before the retry is capped."""
    client = make_client(retry=RetryPolicy(base_delay=0.001, max_delay=0.01, max_retry_after=0.05))
    fake.inject(Fault.rate_limited(header), route="detail")
    task_id = fake.seed_task()
    task = await asyncio.wait_for(client.get_task(task_id), timeout=10)
    assert task.task_id == task_id


async def test_retry_after_lengthens_the_backoff(fake: FakeVidgo, make_client: MakeClient) -> None:
    """A Retry-After longer than the backoff delay is honoured before the retry."""
    client = make_client(retry=RetryPolicy(base_delay=0.001, max_delay=0.01, max_retry_after=10))
    fake.inject(Fault.rate_limited("0.3"), route="detail")
    started = time.monotonic()
    await client.get_task(fake.seed_task())
    assert time.monotonic() - started >= 0.25


async def test_retry_budget_bounds_requests_to_dead_api(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """Under a 503-only server, many calls make far fewer than calls x max_attempts requests."""
    policy = RetryPolicy(max_attempts=4, base_delay=0.0, max_delay=0.0, budget=20)
    client = make_client(retry=policy)
    fake.inject(Fault.server_error(503), route="detail", times=10_000)
    calls = 50
    for _ in range(calls):
        with pytest.raises(ServerError):
            await client.get_task("t")
    requests = fake.request_count("detail")
    assert calls <= requests <= calls + policy.budget


async def test_retry_budget_is_client_wide_under_concurrency(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """Concurrent calls share one budget: a dead API sees a bounded number of retries."""
    policy = RetryPolicy(max_attempts=4, base_delay=0.0, max_delay=0.0, budget=20)
    client = make_client(retry=policy)
    fake.inject(Fault.server_error(503), route="detail", times=10_000)
    calls = 50
    results = await asyncio.gather(
        *(client.get_task("t") for _ in range(calls)), return_exceptions=True
    )
    assert all(isinstance(result, ServerError) for result in results)
    assert fake.request_count("detail") <= calls + policy.budget + 4 * 4


async def test_retry_budget_recovers_after_successes(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """Once the API answers again, retries resume."""
    policy = RetryPolicy(max_attempts=4, base_delay=0.0, max_delay=0.0, budget=4, budget_ratio=1)
    client = make_client(retry=policy)
    fake.inject(Fault.server_error(503), route="detail", times=10_000)
    for _ in range(20):
        with pytest.raises(ServerError):
            await client.get_task("t")
    fake.clear_faults()
    task_id = fake.seed_task()
    for _ in range(4):
        await client.get_task(task_id)
    fake.inject(Fault.server_error(503), route="detail")
    fake.reset_log()
    await client.get_task(task_id)
    assert fake.request_count("detail") == 2


async def test_failures_are_vidgo_errors_after_retries(
    fake: FakeVidgo, client: VidgoClient
) -> None:
    """When retries run out, the last failure is raised as a VidgoError."""
    fake.inject(Fault.reset_before(), route="detail", times=50)
    with pytest.raises(VidgoError):
        await client.get_task("t")
