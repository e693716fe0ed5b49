"""A batch worker process for the PostgreSQL-journal tests.

``python journal_support.py DSN URL KEY LEASE COUNT [PREFIX]``: converts the
pairs ``("music", "<PREFIX>-<i>")`` (PREFIX: ``audio``) with a
``SharedJournal(DSN, lease_seconds=LEASE)``, printing one JSON line per result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

from vidgo_async import PollPolicy, VidgoClient
from vidgo_async.postgres import SharedJournal


async def _work(journal: SharedJournal, url: str, key: str, count: int, prefix: str) -> None:
    pairs = [("music", f"{prefix}-{i}") for i in range(count)]
    poll = PollPolicy(initial=0.01, factor=1.5, max_interval=0.05)
    async with VidgoClient(key, base_url=url, poll=poll, max_polls_per_second=1000.0) as client:
        async for result in client.convert_many(pairs, journal=journal, concurrency=4):
            line = {"audio_id": result.audio_id, "ok": result.ok, "task_id": result.task_id}
            print(json.dumps(line), flush=True)


def main(argv: list[str]) -> None:
    """Run one worker (see the module docstring)."""
    dsn, url, key, lease, count, *rest = argv
    logging.basicConfig(level=logging.WARNING)  # the SDK's warnings on stderr
    journal = SharedJournal(dsn, lease_seconds=float(lease))
    asyncio.run(_work(journal, url, key, int(count), rest[0] if rest else "audio"))


if __name__ == "__main__":
    main(sys.argv[1:])
