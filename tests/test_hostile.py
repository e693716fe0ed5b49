"""Hostile answers and retry discipline at volume: encodings, truncation, bombs, dead APIs."""

from __future__ import annotations

import asyncio
import gzip
import json
import statistics
import tracemalloc
import zlib
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import MakeClient

from vidgo_async import (
    InvalidResponseError,
    RetryPolicy,
    ServerError,
    Task,
    VidgoClient,
    VidgoError,
)
from vidgo_async._timing.schedules import retry_pauses
from vidgo_async.testing import FakeVidgo, Fault


@pytest_asyncio.fixture
async def one_shot(make_client: MakeClient) -> VidgoClient:
    """One attempt per call, so every generated answer is seen as it is."""
    return make_client(retry=RetryPolicy(max_attempts=1, max_retry_after=0.001))


def _encode(body: bytes, encoding: str, cut: float) -> tuple[bytes, dict[str, str]]:
    """``body`` compressed (or not) as ``encoding`` says, then maybe cut short."""
    if encoding == "gzip":
        data, headers = gzip.compress(body), {"Content-Encoding": "gzip"}
    elif encoding == "deflate":
        data, headers = zlib.compress(body), {"Content-Encoding": "deflate"}
    elif encoding == "lying-gzip":  # says gzip, is not
        data, headers = body, {"Content-Encoding": "gzip"}
    else:
        data, headers = body, {}
    return data[: int(len(data) * cut)] if cut < 1 else data, headers


json_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["code", "data", "task_id", "status", "msg"]), children)
    ),
    max_leaves=10,
).map(lambda value: json.dumps(value).encode())
envelope_bodies = st.fixed_dictionaries(
    {"code": st.sampled_from([200, 500, "200", None])},
    optional={
        "data": st.fixed_dictionaries(
            {"task_id": st.text(max_size=5)},
            optional={
                "status": st.sampled_from(["running", "finished", "x"]),
            },
        )
    },
).map(lambda value: json.dumps(value).encode())


@pytest.mark.asyncio
@settings(
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    status=st.integers(200, 599).filter(lambda s: s not in (204, 205, 304)),
    body=st.binary(max_size=300) | json_bodies | envelope_bodies,
    content_type=st.sampled_from(
        ["application/json", "text/html; charset=utf-8", "application/octet-stream", "text/plain"]
    ),
    encoding=st.sampled_from(["identity", "gzip", "deflate", "lying-gzip"]),
    cut=st.sampled_from([1.0, 1.0, 0.5, 0.9, 0.0]),
)
async def test_any_encoded_answer_is_task_or_vidgo_error(
    fake: FakeVidgo,
    one_shot: VidgoClient,
    status: int,
    body: bytes,
    content_type: str,
    encoding: str,
    cut: float,
) -> None:
    """Any status, content type, encoding and truncation yields a Task or a VidgoError."""
    data, headers = _encode(body, encoding, cut)
    headers["Content-Type"] = content_type
    fake.inject(Fault.http_error(status, data, headers), route="detail")
    try:
        result: Any = await one_shot.get_task("task-1")
    except VidgoError:
        return
    assert isinstance(result, Task)


@pytest.mark.asyncio
async def test_a_compression_bomb_is_cut_off_at_the_cap_with_flat_memory(
    fake: FakeVidgo, one_shot: VidgoClient
) -> None:
    """200 MB of gzip-compressed zeros: refused at the 1 MiB cap, never inflated in memory."""
    bomb = gzip.compress(b"0" * (200 * 1024 * 1024), compresslevel=9)
    fake.inject(
        Fault.http_error(
            200, bomb, {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        ),
        route="detail",
    )
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with pytest.raises(InvalidResponseError, match="over"):
            await one_shot.get_task("task-1")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024


@pytest.mark.parametrize("attempt", range(7))
def test_backoff_delays_are_full_jitter_over_10000_samples(attempt: int) -> None:
    """The n-th retry delay is uniform on [0, min(max_delay, base * 2**n)]."""
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    ceiling = min(8.0, 0.5 * 2**attempt)
    samples = []
    for _ in range(10_000):
        delays = retry_pauses(policy)
        for _ in range(attempt):
            delays.send(None)
        samples.append(delays.send(None))
    assert min(samples) >= 0
    assert max(samples) <= ceiling
    assert statistics.fmean(samples) == pytest.approx(ceiling / 2, rel=0.03)
    below_quarter = sum(sample < ceiling / 4 for sample in samples) / len(samples)
    assert below_quarter == pytest.approx(0.25, abs=0.02)


@pytest.mark.asyncio
async def test_a_burst_of_1000_calls_to_a_dead_api_is_bounded_and_fails_fast(
    fake: FakeVidgo, make_client: MakeClient
) -> None:
    """1,000 concurrent reads against a 503-only API: about one request each, all ServerError."""
    policy = RetryPolicy(base_delay=0.001, max_delay=0.01)  # 4 attempts, budget 20
    client = make_client(retry=policy, max_polls_per_second=1e6)
    fake.set_fault_rates({"server_error": 1.0}, routes=("detail",))
    results = await asyncio.gather(
        *(client.get_task("task-1") for _ in range(1000)), return_exceptions=True
    )
    assert all(isinstance(result, ServerError) for result in results)
    # Without the budget: 4,000 requests. With it, a handful of retries at most.
    assert 1000 <= fake.request_count("detail") <= 1000 + policy.budget


@pytest.mark.asyncio
async def test_409_is_never_retried(fake: FakeVidgo, make_client: MakeClient) -> None:
    """A 409 on any call is answered at once, with exactly one request."""
    client = make_client(retry=RetryPolicy(max_attempts=4, base_delay=0.0, max_delay=0.0))
    fake.inject(Fault.http_error(409, {"code": 409, "message": "conflict"}), route="detail")
    with pytest.raises(VidgoError):
        await client.get_task("task-1")
    assert fake.request_count("detail") == 1
