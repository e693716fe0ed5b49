"""Callbacks against polling alone: status reads per task and finish-to-return delay.

Runs the fake API in a separate process (so its work does not share the
client's event loop), submits N WAV conversions at a steady rate and waits on each, in three
set-ups: polling alone, callbacks, and callbacks that are all dropped.

    python benchmarks/callbacks.py                # 2000 tasks, 200 new per second
    python benchmarks/callbacks.py --tasks 500 --run-time 1.0

The delay of a task is measured from the moment it finishes on the fake
(submit sent + queue time + run time, so the figure is an upper bound: it
includes the submit's own latency up to acceptance) to the moment its wait
returns. Status reads are counted on the client's HTTP session.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from vidgo_async import PollPolicy, VidgoClient
from vidgo_async.webhooks import CallbackReceiver

_SERVER = """
import asyncio
from vidgo_async.testing import CallbackFaults, serve
asyncio.run(serve(0, queue_time={queue}, run_time={run}, callback_retry_scale=0.01,
                  callback_faults=CallbackFaults(drop={drop})))
"""


@asynccontextmanager
async def fake_server(queue: float, run: float, drop: float) -> AsyncIterator[str]:
    """A FakeVidgo in a child process; yields its URL."""
    code = _SERVER.format(queue=queue, run=run, drop=drop)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
        yield line.split(" at ", 1)[1].split()[0]
    finally:
        process.terminate()
        await process.wait()


def counting_session() -> tuple[aiohttp.ClientSession, dict[str, int]]:
    """A session that counts status reads (GETs of the detail route)."""
    counts = {"status": 0}

    async def on_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        if params.method == "GET" and params.url.path.endswith("/detail/music"):
            counts["status"] += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    connector = aiohttp.TCPConnector(limit=128)
    return aiohttp.ClientSession(connector=connector, trace_configs=[trace]), counts


async def run(
    name: str, args: argparse.Namespace, *, callbacks: bool, drop: float
) -> dict[str, Any]:
    """One scenario; returns its figures."""
    work = args.queue_time + args.run_time
    poll = PollPolicy(callback_interval=args.callback_interval)
    receiver = CallbackReceiver() if callbacks else None
    async with fake_server(args.queue_time, args.run_time, drop) as url, _serving(receiver):
        session, counts = counting_session()
        delays: list[float] = []
        lower: list[float] = []
        slots = asyncio.Semaphore(args.concurrency)
        async with (
            session,
            VidgoClient(
                "test-key",
                base_url=url,
                session=session,
                poll=poll,
                callbacks=receiver,
                max_polls_per_second=5000.0,
            ) as client,
        ):

            async def one(index: int) -> None:
                await asyncio.sleep(index / args.rate)  # a steady stream of new tasks
                async with slots:
                    sent = time.monotonic()
                    task = await client.submit_wav("parent", f"audio-{index}")
                    answered = time.monotonic()
                await client.await_task(task.task_id, timeout=600)
                now = time.monotonic()
                delays.append(now - (sent + work))
                lower.append(now - (answered + work))

            started = time.monotonic()
            await asyncio.gather(*(one(index) for index in range(args.tasks)))
            elapsed = time.monotonic() - started
    delays.sort()
    lower.sort()
    return {
        "low95": lower[int(0.95 * (len(lower) - 1))] * 1000,
        "scenario": name,
        "done": len(delays),
        "reads": counts["status"] / args.tasks,
        "p50": statistics.median(delays) * 1000,
        "p95": delays[int(0.95 * (len(delays) - 1))] * 1000,
        "max": delays[-1] * 1000,
        "elapsed": elapsed,
    }


@asynccontextmanager
async def _serving(receiver: CallbackReceiver | None) -> AsyncIterator[None]:
    if receiver is None:
        yield
        return
    async with receiver.serve():
        yield


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0, help="new tasks per second")
    parser.add_argument("--concurrency", type=int, default=64, help="submits in flight")
    parser.add_argument("--queue-time", type=float, default=0.5, help="fake: seconds queued")
    parser.add_argument("--run-time", type=float, default=2.0, help="fake: seconds running")
    parser.add_argument(
        "--callback-interval", type=float, default=10.0, help="safety-net poll interval"
    )
    args = parser.parse_args()
    rows = [
        await run("polling alone", args, callbacks=False, drop=0.0),
        await run("callbacks", args, callbacks=True, drop=0.0),
        await run("callbacks, all dropped", args, callbacks=True, drop=1.0),
    ]
    print(
        f"{args.tasks} tasks at {args.rate:g}/s, {args.queue_time}+{args.run_time} s each, "
        f"PollPolicy() defaults, callback_interval={args.callback_interval} s"
    )
    header = ("done", "reads/task", "p50 ms", "p95 ms", "max ms", "p95 low")
    print(f"{'scenario':<24}" + "".join(f"{name:>11}" for name in header))
    for row in rows:
        print(
            f"{row['scenario']:<24}{row['done']:>11}{row['reads']:>11.2f}"
            f"{row['p50']:>11.1f}{row['p95']:>11.1f}{row['max']:>11.1f}{row['low95']:>11.1f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
