"""Callbacks in a multi-worker web app: worker processes behind one port, one relay.

A FakeVidgo runs in a child process and POSTs each task's callback to the
app's one public URL. ``--workers`` processes each serve an aiohttp app on
that port (``SO_REUSEPORT``: the kernel hands each connection to any worker)
with a :class:`~vidgo_async.webhooks.CallbackReceiver` and a
:class:`~vidgo_async.postgres.CallbackRelay` on one PostgreSQL (a throw-away
cluster, ``tests/pg_server.py``, unless ``--dsn`` names one). Together they
start ``--waits`` conversions at ``--rate`` a second (``convert_to_wav``),
each waiting with the default safety net (a poll every 60 s). Reported:

* status reads per task, counted at the fake;
* the delay from each task's finish on the fake to its wait's return
  (p50, p95, max; one machine-wide monotonic clock);
* callbacks that reached another worker than the waiting one, and were relayed.

The same run without a relay shows what the relay is for: a callback
reaching the wrong worker is lost, and that wait ends at its safety net.

Run::

    python benchmarks/callbacks_workers.py                   # 4 workers, 2,000 waits
    python benchmarks/callbacks_workers.py --waits 200 --no-baseline --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import API_KEY, fake_server, machine, percentile, table
from aiohttp import web

from vidgo_async import PollPolicy, VidgoClient
from vidgo_async.webhooks import CallbackReceiver

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pg_server import database  # a helper of the tests

SECRET = "benchmark-secret-of-at-least-32-bytes"
START_DELAY = 4.0  # seconds for every worker to import, connect and listen
RUN_TIME = 1.0  # seconds a task runs on the fake


# -- a worker process ---------------------------------------------------------------------


async def work(options: dict[str, Any]) -> dict[str, Any]:
    """One worker: serve callbacks on the shared port, start its share of the waits."""
    async with contextlib.AsyncExitStack() as stack:
        relay = None
        if options["dsn"]:
            from vidgo_async.postgres import CallbackRelay

            relay = await stack.enter_async_context(CallbackRelay(options["dsn"], secret=SECRET))
        receiver = CallbackReceiver(f"http://127.0.0.1:{options['port']}", relay=relay)
        app = web.Application()
        receiver.add_routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", options["port"], reuse_port=True).start()
        client = await stack.enter_async_context(
            VidgoClient(
                API_KEY,
                base_url=options["url"],
                callbacks=receiver,
                poll=PollPolicy(),
                max_polls_per_second=options["cap"],
            )
        )
        returned: dict[str, float] = {}

        async def one(audio_id: str, at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            await client.convert_to_wav(f"src-{audio_id}", audio_id, timeout=600)
            returned[audio_id] = time.monotonic()

        index, workers, period = options["index"], options["workers"], 1 / options["rate"]
        mine = range(index, options["waits"], workers)
        await asyncio.gather(*(one(f"a{n}", options["start_at"] + n * period) for n in mine))
        result = {
            "returned": returned,
            "forwarded": relay.stats.forwarded if relay else 0,
            "delivered": relay.stats.delivered if relay else 0,
        }
        print(json.dumps(result), flush=True)
        # Keep serving (other workers' callbacks may come here) until the parent says stop.
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    return result


# -- the run ------------------------------------------------------------------------------


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def run(args: argparse.Namespace, dsn: str | None) -> dict[str, Any]:
    """One run of ``args.workers`` workers (with a relay when ``dsn``); its figures."""
    with fake_server(queue_time=0.05, run_time=RUN_TIME, callback_retry_scale=0.01) as server:
        common = {
            "url": server.url,
            "dsn": dsn,
            "port": free_port(),
            "workers": args.workers,
            "waits": args.waits,
            "rate": args.rate,
            "cap": args.cap,
            "start_at": time.monotonic() + START_DELAY,
        }
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--worker",
                json.dumps({**common, "index": i}),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            for i in range(args.workers)
        ]
        try:
            lines = await asyncio.gather(*(w.stdout.readline() for w in workers))  # type: ignore[union-attr]
        finally:
            for worker in workers:
                worker.stdin.close()  # type: ignore[union-attr]
            await asyncio.gather(*(w.wait() for w in workers))
        if any(w.returncode for w in workers) or not all(lines):
            raise RuntimeError("a worker failed")
        figures = [json.loads(line) for line in lines]
        finishes = await server.finish_times()
        reads = (await server.stats(by_task=True))["detail_by_task"]
    returned = {audio: at for f in figures for audio, at in f["returned"].items()}
    delays = [at - finishes[audio][1] for audio, at in returned.items()]
    return {
        "run": "relay" if dsn else "no relay",
        "workers": args.workers,
        "results": len(returned),
        "reads_per_task": sum(reads.values()) / len(returned),
        "misrouted": sum(f["forwarded"] for f in figures),
        "p50_delay": percentile(delays, 50),
        "p95_delay": percentile(delays, 95),
        "max_delay": max(delays),
    }


def main() -> None:
    """Run the benchmark, or (``--worker``) one worker."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--waits", type=int, default=2000, help="waits, all workers together")
    parser.add_argument("--rate", type=float, default=100.0, help="new waits a second")
    parser.add_argument("--cap", type=float, default=50.0, help="max_polls_per_second per worker")
    parser.add_argument("--dsn", help="a PostgreSQL server of your own (default: a throw-away one)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run without a relay")
    parser.add_argument("--json", action="store_true", help="end with the relay run as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(work(json.loads(args.worker)))
        return
    rows = []
    with database(args.dsn) as dsn:
        rows.append(asyncio.run(run(args, dsn)))
    if not args.no_baseline:
        rows.append(asyncio.run(run(args, None)))
    print(machine())
    print(f"tasks run {RUN_TIME} s on the fake; {args.rate:g} new waits a second")
    headers = list(rows[0])
    print(table(headers, [[row[h] for h in headers] for row in rows]))
    if args.json:
        print(json.dumps(rows[0]))


if __name__ == "__main__":
    main()
