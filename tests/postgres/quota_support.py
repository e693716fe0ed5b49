"""What the shared-quota tests share: counting a rate at the fake, keeping clients busy,
and a worker process (``python quota_support.py ...``) for the tests across processes."""

from __future__ import annotations

import asyncio
import bisect
import json
import sys
import time
from collections.abc import Sequence

from vidgo_async import PollPolicy, RetryPolicy, TaskTimeoutError, VidgoClient
from vidgo_async.postgres import SharedQuota
from vidgo_async.testing import FakeVidgo

# Waits that ask far more often than any cap here allows: the cap is what holds them back.
EAGER_POLL = PollPolicy(initial=0.01, factor=1.5, max_interval=0.05)
QUICK_RETRY = RetryPolicy(base_delay=0.001, max_delay=0.01, max_retry_after=5.0)


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most of ``times`` in any half-open span ``[t, t + window)``."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered)), default=0
    )


def seed_running(fake: FakeVidgo, count: int, prefix: str = "run") -> list[str]:
    """``count`` tasks that stay ``running`` for ever."""
    return [fake.seed_task(f"{prefix}-{i}", status="running", progress=10) for i in range(count)]


async def keep_busy(
    clients: Sequence[VidgoClient], task_ids: Sequence[str], seconds: float
) -> None:
    """Each client waits on its share of ``task_ids`` for ``seconds`` (they never finish)."""
    waits = [
        client.wait(task_id, timeout=seconds, poll=EAGER_POLL)
        for i, client in enumerate(clients)
        for task_id in task_ids[i :: len(clients)]
    ]
    results = await asyncio.gather(*waits, return_exceptions=True)
    unexpected = [r for r in results if not isinstance(r, TaskTimeoutError)]
    assert unexpected == []


async def _work(dsn: str, namespace: str, url: str, key: str, rate: float, start_at: float,
                seconds: float, task_ids: list[str]) -> dict[str, int]:  # fmt: skip
    async with SharedQuota(dsn, namespace=namespace) as quota:
        async with VidgoClient(
            key, base_url=url, quota=quota, max_polls_per_second=rate, retry=QUICK_RETRY
        ) as client:
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
            await keep_busy([client], task_ids, seconds)
        stats = quota.stats
    return {"round_trips": stats.round_trips, "requests": stats.requests}


def main(argv: list[str]) -> None:
    """A worker: ``DSN NAMESPACE URL KEY RATE START_AT SECONDS TASK_ID...``; prints its stats.

    ``START_AT`` is on ``time.monotonic()``, one clock for every process of
    the machine, so that the workers start together however long each took
    to import.
    """
    dsn, namespace, url, key, rate, start_at, seconds, *task_ids = argv
    stats = asyncio.run(
        _work(dsn, namespace, url, key, float(rate), float(start_at), float(seconds), task_ids)
    )
    print(json.dumps(stats), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
