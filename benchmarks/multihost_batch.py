"""One batch spread over several processes, one of them SIGKILLed mid-run.

A FakeVidgo runs in a child process, PostgreSQL on 127.0.0.1 (a throw-away
cluster, ``tests/pg_server.py``, unless ``--dsn`` names one). ``--processes``
workers are given the same ``--pairs`` pairs, one PostgreSQL journal and one
:class:`~vidgo_async.postgres.SharedQuota` namespace with a cap of
``--cap`` status requests a second, all together. Each prints a line per
result it yields. When ``--kill-at`` of the results are in, the first worker
is SIGKILLed; the others take its pairs over once its lease
(``--lease`` seconds) has run out. Counted at the fake and from the
workers' output:

* status requests in any one-second span (sliding) and in any whole second,
  against the cap;
* conversions created per track (must be 1: never converted twice);
* results reported per pair across the fleet, the killed worker's included
  (must be 1: every pair reported, once).

Run::

    python benchmarks/multihost_batch.py                       # 4 x 20,000 pairs, cap 50
    python benchmarks/multihost_batch.py --pairs 600 --json    # the CI test's size
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from _common import API_KEY, fake_server, machine, table
from shared_quota import max_in_span, max_in_whole_second

from vidgo_async import VidgoClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pg_server import database  # a helper of the tests

# -- a worker process ---------------------------------------------------------------------


async def work(options: dict[str, Any]) -> None:
    """One worker: every pair through ``convert_many``, a JSON line per result."""
    from vidgo_async.postgres import SharedJournal, SharedQuota

    pairs = [(f"p{i}", f"{options['prefix']}-a{i}") for i in range(options["pairs"])]
    journal = SharedJournal(options["dsn"], lease_seconds=options["lease"])
    async with contextlib.AsyncExitStack() as stack:
        quota = await stack.enter_async_context(
            SharedQuota(options["dsn"], namespace=options["namespace"])
        )
        client = await stack.enter_async_context(
            VidgoClient(
                API_KEY, base_url=options["url"], quota=quota, max_polls_per_second=options["cap"]
            )
        )
        batch = client.convert_many(
            pairs, journal=journal, timeout=3600, concurrency=options["concurrency"]
        )
        lags: list[float] = []
        ticker = asyncio.create_task(measure_lag(lags))
        async for result in batch:
            line = {"audio_id": result.audio_id, "ok": result.ok, "task_id": result.task_id}
            print(json.dumps(line), flush=True)
        ticker.cancel()
    over = sum(lag > 0.05 for lag in lags)
    print(json.dumps({"lag_max": max(lags, default=0.0), "lags_over_50ms": over}))


async def measure_lag(into: list[float], period: float = 0.01) -> None:
    """How late the event loop wakes a sleeper, every ``period``: time the worker's
    requests may spend between their rate slot and the wire."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time()
        await asyncio.sleep(period)
        into.append(loop.time() - asked - period)


# -- the run ------------------------------------------------------------------------------


async def read_results(worker: asyncio.subprocess.Process, into: list[dict[str, Any]]) -> None:
    """Every result line ``worker`` prints, appended to ``into`` as it comes."""
    assert worker.stdout is not None
    async for line in worker.stdout:
        into.append(json.loads(line))


def lag_of(outputs: list[list[dict[str, Any]]]) -> tuple[float, int]:
    """The workers' longest event-loop lag and how many ticks were over 50 ms."""
    ends = [line for output in outputs for line in output if "lag_max" in line]
    return max((e["lag_max"] for e in ends), default=0.0), sum(e["lags_over_50ms"] for e in ends)


async def run(args: argparse.Namespace, dsn: str) -> dict[str, Any]:
    """One run of the fleet; its figures."""
    with fake_server(queue_time=0.05, run_time=0.5) as server:
        options = {
            "url": server.url,
            "dsn": dsn,
            "namespace": f"bench-{uuid.uuid4().hex[:8]}",
            "prefix": uuid.uuid4().hex[:8],  # pairs of this run's own, in a journal kept
            "cap": args.cap,
            "pairs": args.pairs,
            "lease": args.lease,
            "concurrency": args.concurrency,
        }
        started = time.monotonic()
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--worker", json.dumps(options), stdout=subprocess.PIPE
            )
            for _ in range(args.processes)
        ]
        outputs: list[list[dict[str, Any]]] = [[] for _ in workers]
        pairs = zip(workers, outputs, strict=True)
        readers = [asyncio.ensure_future(read_results(w, o)) for w, o in pairs]
        killed_at = None
        try:
            while killed_at is None:
                if sum(map(len, outputs)) >= args.kill_at * args.pairs:
                    workers[0].send_signal(signal.SIGKILL)
                    killed_at = sum(map(len, outputs))
                elif all(r.done() for r in readers):
                    break
                await asyncio.sleep(0.05)
            await asyncio.wait_for(asyncio.gather(*readers), args.timeout)
            codes = await asyncio.gather(*(w.wait() for w in workers))
        finally:
            for worker in workers:
                if worker.returncode is None:
                    worker.kill()
                    await worker.wait()
        wall = time.monotonic() - started
        if any(codes[1:]):
            raise RuntimeError(f"a surviving worker failed: exit statuses {codes}")
        times = await server.arrivals("detail")
        created = await server.accepted()
    lag_max, lags_over = lag_of(outputs)
    outputs = [[line for line in output if "audio_id" in line] for output in outputs]
    reported = Counter(line["audio_id"] for output in outputs for line in output)
    tracks = [f"{options['prefix']}-a{i}" for i in range(args.pairs)]
    return {
        "processes": args.processes,
        "pairs": args.pairs,
        "killed after": killed_at,
        "killed reported": len(outputs[0]),
        "reported once": sum(reported[t] == 1 for t in tracks),
        "reported twice+": sum(reported[t] > 1 for t in tracks),
        "not reported": sum(reported[t] == 0 for t in tracks),
        "failed": sum(not line["ok"] for output in outputs for line in output),
        "created once": sum(created.get(t, 0) == 1 for t in tracks),
        "created twice+": sum(created.get(t, 0) > 1 for t in tracks),
        "cap": args.cap,
        "max any 1 s": max_in_span(times),
        "max whole 1 s": max_in_whole_second(times),
        "wall s": round(wall, 1),
        "loop lag max s": round(lag_max, 3),
        "lag ticks > 50 ms": lags_over,
    }


def main() -> None:
    """Run the benchmark, or (``--worker``) one worker."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=20_000, help="pairs, all workers together")
    parser.add_argument("--cap", type=float, default=50.0, help="status requests a second, shared")
    parser.add_argument("--lease", type=float, default=5.0, help="the journal's lease, seconds")
    parser.add_argument("--concurrency", type=int, default=32, help="each worker's batch")
    parser.add_argument("--kill-at", type=float, default=0.3, help="fraction of results in")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds, at most")
    parser.add_argument("--dsn", help="a PostgreSQL server of your own (default: a throw-away one)")
    parser.add_argument("--json", action="store_true", help="end with the figures as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(work(json.loads(args.worker)))
        return
    with database(args.dsn) as dsn:
        row = asyncio.run(run(args, dsn))
    print(machine())
    print(f"tasks run 0.55 s on the fake; lease {args.lease:g} s; worker 0 SIGKILLed")
    print(table(list(row), [list(row.values())]))
    if args.json:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
