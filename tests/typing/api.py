"""Type-checked only (``mypy --strict tests/typing``), never run: the API as users type it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import attrs

import vidgo_async
from vidgo_async import (
    DEFAULT_TIMEOUT,
    AlreadyConvertedError,
    APIError,
    Balance,
    ConversionResult,
    PollPolicy,
    RateLimitError,
    RetryPolicy,
    SubmitOutcomeUnknownError,
    Task,
    TaskFailedError,
    TaskFile,
    TaskHandle,
    TaskStatus,
    TaskTimeoutError,
    Timeouts,
    TransportError,
    VidgoClient,
    VidgoError,
)
from vidgo_async.errors import ConfigurationError, ConflictError
from vidgo_async.otel import Telemetry
from vidgo_async.testing import FakeVidgo, Fault


async def convert(task_id: str, audio_id: str) -> str:
    async with VidgoClient() as client:
        url: str = await client.convert_to_wav(task_id, audio_id)
        return url


async def traced(task_id: str, audio_id: str) -> str:
    async with VidgoClient(on_event=Telemetry()) as client:
        return await client.convert_to_wav(task_id, audio_id)


async def every_call(client: VidgoClient) -> None:
    submitted: Task = await client.submit("separate-vocals", {"task_id": "t", "audio_id": "a"})
    wav_task: Task = await client.submit_wav("t", "a", callback_url="https://example.com/cb")
    detail: Task = await client.get_task(wav_task.task_id)
    status: Task = await client.get_status(submitted.task_id)
    done: Task = await client.wait(detail.task_id, timeout=60.0, poll=PollPolicy(initial=0.5))
    forever: Task = await client.wait(TaskHandle(task_id="x"), timeout=None)
    url: str = await client.await_task(done.task_id)
    also: str = await client.convert_to_wav("t", "a", timeout=DEFAULT_TIMEOUT)
    balance: Balance = await client.balance()
    credits: float = balance.credits_amount
    stream: AsyncIterator[Task] = client.watch(done.task_id)
    async for snapshot in stream:
        progress: float | None = snapshot.progress
        terminal: bool = snapshot.status.is_terminal
        del progress, terminal
    base: str = client.base_url
    await client.aclose()
    del status, forever, url, also, credits, base


def values(task: Task) -> None:
    state: TaskStatus = task.status
    url: str | None = task.wav_url
    first: TaskFile = task.files[0]
    audio: object = first["audio_url"]
    keys: list[str] = list(first)
    handle = TaskHandle(task_id=task.task_id, source_task_id="p", audio_id="a")
    again: TaskHandle = TaskHandle.from_json(handle.to_json())
    result = ConversionResult(source_task_id="p", audio_id="a", wav_url=url)
    ok: bool = result.ok
    as_dict: dict[str, object] = attrs.asdict(handle)
    text: str = json.dumps(as_dict)
    del state, audio, keys, again, ok, text


def policies() -> VidgoClient:
    retry = attrs.evolve(RetryPolicy(), max_attempts=2)
    return VidgoClient(
        "key",
        base_url="http://127.0.0.1:8080",
        retry=retry,
        poll=PollPolicy(initial=1.0, factor=1.5, max_interval=15.0),
        timeouts=Timeouts(connect=10.0, total=30.0),
        max_connections=8,
        max_polls_per_second=5.0,
    )


async def handling(client: VidgoClient) -> str | None:
    try:
        return await client.convert_to_wav("t", "a")
    except AlreadyConvertedError as exc:
        existing: str | None = exc.task_id
        return existing
    except SubmitOutcomeUnknownError as exc:
        model: str = exc.model
        del model
        return None
    except TaskFailedError as exc:
        reason: str | None = exc.error_message
        handle: TaskHandle = exc.handle
        del handle
        return reason
    except TaskTimeoutError as exc:
        last: Task | None = exc.task
        del last
        return exc.handle.to_json()
    except RateLimitError as exc:
        wait: float | None = exc.retry_after
        del wait
        return None
    except ConflictError as exc:
        return exc.task_id
    except APIError as exc:
        code: int = exc.status
        message: str = exc.message
        del code, message
        return None
    except TransportError as exc:
        sent: bool = exc.sent
        del sent
        return None
    except (ConfigurationError, VidgoError):
        return None


async def with_fake() -> int:
    async with FakeVidgo(api_key="k") as fake:
        fake.inject(Fault.server_error(502, body="html"), route="submit")
        fake.inject(Fault.rate_limited(retry_after="1"), route="detail", times=2)
        fake.fail("audio", "too short")
        async with VidgoClient(fake.api_key, base_url=fake.url) as client:
            await client.convert_to_wav("t", "audio")
        count: int = fake.accept_count["audio"]
        return count


version: str = vidgo_async.__version__


async def shared(dsn: str, task_id: str, audio_id: str) -> float:
    from vidgo_async.postgres import QuotaStats, SharedQuota

    async with (
        SharedQuota(dsn, namespace="prod-key", max_submits_per_second=5.0) as quota,
        VidgoClient(quota=quota, max_polls_per_second=50) as client,
    ):
        await client.convert_to_wav(task_id, audio_id)
        stats: QuotaStats = quota.stats
        return stats.round_trips_per_request
