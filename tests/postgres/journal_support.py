"""A batch worker process for the PostgreSQL-journal tests.

``python journal_support.py DSN URL KEY LEASE COUNT``: converts the pairs
``("music", "audio-<i>")`` with a journal in DSN, printing one JSON line per result.
"""

from __future__ import annotations

import asyncio
import json
import sys

from vidgo_async import PollPolicy, VidgoClient
from vidgo_async._postgres import journal as pg_journal


async def _work(dsn: str, url: str, key: str, count: int) -> None:
    pairs = [("music", f"audio-{i}") for i in range(count)]
    poll = PollPolicy(initial=0.01, factor=1.5, max_interval=0.05)
    async with VidgoClient(key, base_url=url, poll=poll, max_polls_per_second=1000.0) as client:
        async for result in client.convert_many(pairs, journal=dsn, concurrency=4):
            line = {"audio_id": result.audio_id, "ok": result.ok, "task_id": result.task_id}
            print(json.dumps(line), flush=True)


def main(argv: list[str]) -> None:
    """Run one worker (see the module docstring)."""
    dsn, url, key, lease, count = argv
    pg_journal.LEASE_SECONDS = float(lease)
    asyncio.run(_work(dsn, url, key, int(count)))


if __name__ == "__main__":
    main(sys.argv[1:])
