"""Property tests: whatever the server answers, the caller gets a Task or one of our errors.

One fake server serves every example of a test (a function-scoped fixture reused across
examples on purpose; each example queues exactly the answer it needs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidgo_async import RetryPolicy, Task, VidgoClient, VidgoError
from vidgo_async.testing import FakeVidgo, Fault

pytestmark = pytest.mark.asyncio

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest_asyncio.fixture
async def one_shot(make_client: Callable[..., VidgoClient]) -> VidgoClient:
    """One attempt per call; a 429 pauses the client for a negligible time only."""
    # The examples share the client: a 429's pause of its submits must be negligible too.
    one = RetryPolicy(max_attempts=1, base_delay=0.001, max_delay=0.001, max_retry_after=0.001)
    return make_client(retry=one)


scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)
statuses = st.sampled_from(["not_started", "running", "finished", "failed", "FAILED", "odd"])
files = st.lists(
    st.dictionaries(
        st.sampled_from(["wav_url", "audio_url", "file_url", "x"]) | st.text(max_size=5),
        json_values,
        max_size=3,
    ),
    max_size=3,
)
task_objects = st.fixed_dictionaries(
    {},
    optional={
        "task_id": st.text(max_size=300) | json_values,
        "status": statuses | json_values,
        "files": files | json_values,
        "created_time": st.sampled_from(["2025-11-25T08:50:13", "2025-11-25T08:50:13Z"])
        | json_values,
        "progress": st.integers(-10, 200) | st.floats() | st.text(max_size=5) | json_values,
        "error_message": json_values,
        "credits_amount": json_values,
    },
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "code": st.sampled_from([200, "200", 400, 404, 409, 429, 500]) | json_values,
        "data": task_objects | json_values,
        "message": json_values,
        "msg": json_values,
        "error": json_values,
    },
)
answers = envelopes | json_values
http_statuses = st.sampled_from([200, 200, 200, 201, 400, 401, 404, 409, 422, 429, 500, 503])


@SETTINGS
@given(status=http_statuses, body=answers)
async def test_any_json_detail_answer_is_task_or_vidgo_error(
    fake: FakeVidgo, one_shot: VidgoClient, status: int, body: Any
) -> None:
    """Any JSON value served as a detail answer yields a Task or a VidgoError, nothing else."""
    fake.inject(Fault.http_error(status, body), route="detail")
    try:
        result = await one_shot.get_task("task-1")
    except VidgoError:
        return
    assert isinstance(result, Task)
    assert isinstance(result.task_id, str)
    assert result.task_id


@SETTINGS
@given(status=http_statuses, body=answers)
async def test_any_json_submit_answer_is_task_or_vidgo_error(
    fake: FakeVidgo, one_shot: VidgoClient, status: int, body: Any
) -> None:
    """Any JSON value served as a submit answer yields a Task or a VidgoError, nothing else."""
    fake.inject(Fault.http_error(status, body), route="submit")
    try:
        result = await one_shot.submit("separate-vocals", {"task_id": "p", "audio_id": "a"})
    except VidgoError:
        return
    assert isinstance(result, Task)


header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@SETTINGS
@given(
    status=st.integers(200, 599).filter(lambda s: s not in (204, 205, 304)),
    body=st.binary(max_size=2000),
    retry_after=st.none() | header_text,
)
async def test_any_bytes_answer_is_task_or_vidgo_error(
    fake: FakeVidgo, one_shot: VidgoClient, status: int, body: bytes, retry_after: str | None
) -> None:
    """Any status with any bytes body (and any Retry-After) yields a Task or a VidgoError."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    fake.inject(Fault.http_error(status, body, headers), route="detail")
    try:
        result = await one_shot.get_task("task-1")
    except VidgoError as exc:
        retry = getattr(exc, "retry_after", None)
        assert retry is None or retry >= 0
        return
    assert isinstance(result, Task)


@SETTINGS
@given(data=task_objects)
async def test_any_task_object_in_valid_envelope(
    fake: FakeVidgo, one_shot: VidgoClient, data: dict[str, Any]
) -> None:
    """Any task-shaped data in a valid envelope yields a sane Task or InvalidResponseError."""
    fake.inject(Fault.http_error(200, {"code": 200, "data": data}), route="detail")
    try:
        task = await one_shot.get_task("task-1")
    except VidgoError:
        return
    assert task.progress is None or 0 <= task.progress <= 100
    assert task.wav_url is None or isinstance(task.wav_url, str)
    assert task.error_message is None or isinstance(task.error_message, str)
