"""Shared quota: N processes, one API key, one cap - measured on the wire at the fake.

A FakeVidgo runs in a child process (tasks finish 0.12 s after their submit),
PostgreSQL on 127.0.0.1 (a throw-away cluster, ``tests/pg_server.py``, unless
``--dsn`` names one), and ``--processes`` workers each run ``convert_many``
over ``--pairs`` pairs of their own with ``max_polls_per_second=--cap`` and
one :class:`~vidgo_async.postgres.SharedQuota` namespace. Reported:

* status requests at the fake: the most in any one-second span (sliding,
  from the fake's arrival times) and in any whole second, against the cap;
* their mean rate, from the first to the last;
* database round trips per status request, summed over the workers
  (:attr:`SharedQuota.stats`);
* the same run without a quota (each process its own cap), for contrast.

Run::

    python benchmarks/shared_quota.py                        # 4 x 2,000 pairs, cap 50
    python benchmarks/shared_quota.py --pairs 300 --no-baseline
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import math
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from _common import API_KEY, fake_server, machine, table

from vidgo_async import VidgoClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pg_server import database  # a helper of the tests

START_DELAY = 5.0  # seconds for every worker to import, connect and be ready


def max_in_span(times: list[float], span: float = 1.0) -> int:
    """The most of ``times`` in any half-open ``[t, t + span)``."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_left(ordered, t + span) - i for i, t in enumerate(ordered)), default=0
    )


def max_in_whole_second(times: list[float]) -> int:
    """The most of ``times`` in any ``[n, n + 1)`` of their clock."""
    counts: dict[int, int] = {}
    for t in times:
        counts[math.floor(t)] = counts.get(math.floor(t), 0) + 1
    return max(counts.values(), default=0)


# -- a worker process ---------------------------------------------------------------------


async def work(options: dict[str, Any]) -> dict[str, Any]:
    """One worker: its pairs through ``convert_many``; its figures."""
    pairs = [
        (f"p{options['index']}-{i}", f"a{options['index']}-{i}") for i in range(options["pairs"])
    ]
    async with contextlib.AsyncExitStack() as stack:
        quota = None
        if options["dsn"]:
            from vidgo_async.postgres import SharedQuota

            quota = await stack.enter_async_context(
                SharedQuota(options["dsn"], namespace=options["namespace"])
            )
        client = await stack.enter_async_context(
            VidgoClient(
                API_KEY, base_url=options["url"], quota=quota, max_polls_per_second=options["cap"]
            )
        )
        await asyncio.sleep(max(0.0, options["start_at"] - time.monotonic()))
        started, failed = time.monotonic(), 0
        async for result in client.convert_many(pairs, timeout=3600):
            failed += not result.ok
        wall = time.monotonic() - started
        stats = quota.stats if quota is not None else None
    return {
        "wall": wall,
        "failed": failed,
        "round_trips": stats.round_trips if stats else 0,
        "requests": stats.requests if stats else 0,
    }


# -- the run ------------------------------------------------------------------------------


async def run(args: argparse.Namespace, dsn: str | None) -> dict[str, Any]:
    """One run of ``args.processes`` workers (sharing a quota when ``dsn``); its figures."""
    with fake_server(queue_time=0.02, run_time=0.1) as server:
        common = {
            "url": server.url,
            "dsn": dsn,
            "namespace": f"bench-{uuid.uuid4().hex[:8]}",
            "cap": args.cap,
            "pairs": args.pairs,
            "start_at": time.monotonic() + START_DELAY,
        }
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--worker",
                json.dumps({**common, "index": i}),
                stdout=subprocess.PIPE,
            )
            for i in range(args.processes)
        ]
        outputs = await asyncio.gather(*(w.communicate() for w in workers))
        if any(w.returncode for w in workers):
            raise RuntimeError("a worker failed")
        figures = [json.loads(out) for out, _ in outputs]
        times = await server.arrivals("detail")
    requests = sum(f["requests"] for f in figures)
    return {
        "run": "shared quota" if dsn else "no quota (own caps)",
        "processes": args.processes,
        "cap": args.cap,
        "pairs": args.processes * args.pairs,
        "failed": sum(f["failed"] for f in figures),
        "status_requests": len(times),
        "max_any_1s": max_in_span(times),
        "max_whole_1s": max_in_whole_second(times),
        "mean_per_s": len(times) / (max(times) - min(times)) if len(times) > 1 else math.nan,
        "rt_per_request": sum(f["round_trips"] for f in figures) / requests
        if requests
        else math.nan,
        "wall_s": max(f["wall"] for f in figures),
    }


def main() -> None:
    """Run the benchmark, or (``--worker``) one worker."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=2000, help="pairs per process")
    parser.add_argument("--cap", type=float, default=50.0, help="max_polls_per_second")
    parser.add_argument("--dsn", help="a PostgreSQL server of your own (default: a throw-away one)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run without a quota")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(work(json.loads(args.worker)))), flush=True)
        return
    rows = []
    with database(args.dsn) as dsn:
        rows.append(asyncio.run(run(args, dsn)))
    if not args.no_baseline:
        rows.append(asyncio.run(run(args, None)))
    print(machine())
    where = "at --dsn" if args.dsn else "throw-away, on 127.0.0.1"
    print(f"PostgreSQL {where}; fake tasks finish 0.12 s after their submit")
    headers = list(rows[0])
    print(table(headers, [[row[h] for h in headers] for row in rows]))


if __name__ == "__main__":
    main()
