"""Scale: N pending waits in one process - memory, event-loop lag, poll rate.

For each ``--counts`` N, a fresh child process (so memory figures do not
mix) starts a FakeVidgo in yet another process, seeds N tasks that stay
``running`` forever, and starts N ``client.wait(task_id, timeout=3600)``
with the client's defaults (``PollPolicy()``, ``max_polls_per_second=10``).
Then it measures:

* memory per pending wait: RSS growth (after ``gc.collect()``) from before
  the waits were created to when all are pending, divided by N;
* event-loop lag: a ticker sleeping 10 ms records how late it wakes, over a
  ``--window`` of seconds while all N waits are pending (p50/p99/max);
* poll rate: the status requests the fake received during the window,
  per second, against ``max_polls_per_second`` (counted server-side: what
  the vendor would see).

With ``--tracemalloc`` the smallest N is run once more under
``tracemalloc`` to show what the memory is made of (that run's figures are
not reported: tracing inflates them).

Targets (issue 6): < 4 KiB per pending wait and loop lag p99 < 50 ms at 100,000.

Run::

    python benchmarks/scale.py                          # 10,000 and 100,000
    python benchmarks/scale.py --counts 100000 --window 30
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from _common import API_KEY, fake_server, machine, percentile, rss_kib, table

from vidgo_async import VidgoClient

TICK = 0.01
RATE = 10.0


async def ticker(lags: list[float]) -> None:
    """Sleep ``TICK`` forever, recording each wake-up's lateness in seconds."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(TICK)
        lags.append(loop.time() - started - TICK)


async def single(count: int, window: float, trace: bool) -> dict[str, Any]:
    """Figures for ``count`` pending waits (run in a fresh process)."""
    with fake_server(report_progress=False) as server:
        await server.seed_running("pending-", count)
        lags: list[float] = []
        async with VidgoClient(API_KEY, base_url=server.url, max_polls_per_second=RATE) as client:
            await client.get_task("pending-0")  # session, connection, code paths warm
            tick = asyncio.create_task(ticker(lags))
            await asyncio.sleep(0.5)
            gc.collect()
            before = rss_kib() or 0
            if trace:
                tracemalloc.start(3)
            started = time.perf_counter()
            waits = [
                asyncio.create_task(client.wait(f"pending-{i}", timeout=3600)) for i in range(count)
            ]
            created = time.perf_counter() - started
            await asyncio.sleep(0)  # back once every wait has run its first step
            settled = time.perf_counter() - started
            # Let overdue poll slots (reserved while the first steps ran) drain first.
            await asyncio.sleep(3.0)
            gc.collect()
            after = rss_kib() or 0
            top = _top_allocations() if trace else []
            await server.stats(reset=True)
            lags.clear()
            await asyncio.sleep(window)
            polls = (await server.stats())["routes"].get("detail", 0)
            window_lags = list(lags)
            ended = sum(w.done() for w in waits)
            started = time.perf_counter()
            for wait in waits:
                wait.cancel()
            await asyncio.gather(*waits, return_exceptions=True)
            cancelled = time.perf_counter() - started
            tick.cancel()
            await asyncio.gather(tick, return_exceptions=True)
    return {
        "count": count,
        "kib_per_wait": (after - before) / count,
        "rss_growth_mib": (after - before) / 1024,
        "create_s": created,
        "first_steps_s": settled,
        "lag_p50_ms": 1000 * percentile(window_lags, 50),
        "lag_p99_ms": 1000 * percentile(window_lags, 99),
        "lag_max_ms": 1000 * max(window_lags, default=float("nan")),
        "polls_per_s": polls / window,
        "ended_early": ended,
        "cancel_s": cancelled,
        "top": top,
    }


def _top_allocations(limit: int = 12) -> list[str]:
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = snapshot.statistics("lineno")
    total = sum(stat.size for stat in stats)
    lines = [f"total traced: {total / 1024:.0f} KiB"]
    for stat in stats[:limit]:
        frame = stat.traceback[0]
        where = frame.filename.split("site-packages/")[-1].split("lib/python3.11/")[-1]
        where = where.split("/work/main/")[-1]
        lines.append(f"{stat.size / 1024:9.0f} KiB {stat.count:8d} blocks  {where}:{frame.lineno}")
    return lines


def run_child(count: int, window: float, trace: bool) -> dict[str, Any]:
    """Run :func:`single` in a fresh interpreter; its figures."""
    command = [sys.executable, str(Path(__file__).resolve()), "--single", str(count)]
    command += ["--window", str(window)] + (["--tracemalloc"] if trace else [])
    out = subprocess.run(command, check=True, capture_output=True, text=True, timeout=900)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--window", type=float, default=20.0, help="seconds of measurement")
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the smallest N")
    parser.add_argument("--single", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single is not None:
        print(json.dumps(asyncio.run(single(args.single, args.window, args.tracemalloc))))
        return
    print(machine())
    print(f"pending waits, default PollPolicy, max_polls_per_second={RATE:g}", flush=True)
    results = []
    for count in args.counts:
        results.append(run_child(count, args.window, trace=False))
        print(f"  {count}: done", flush=True)
    print(
        table(
            [
                "pending waits",
                "KiB/wait",
                "RSS growth MiB",
                "create s",
                "first steps s",
                "lag p50 ms",
                "lag p99 ms",
                "lag max ms",
                "polls/s (cap 10)",
                "ended early",
                "cancel all s",
            ],
            [
                [
                    r["count"],
                    r["kib_per_wait"],
                    r["rss_growth_mib"],
                    r["create_s"],
                    r["first_steps_s"],
                    r["lag_p50_ms"],
                    r["lag_p99_ms"],
                    r["lag_max_ms"],
                    r["polls_per_s"],
                    r["ended_early"],
                    r["cancel_s"],
                ]
                for r in results
            ],
        )
    )
    big = max(results, key=lambda r: r["count"])
    print(
        f"target at {big['count']}: < 4 KiB/wait -> "
        f"{'MET' if big['kib_per_wait'] < 4 else 'NOT MET'} ({big['kib_per_wait']:.2f}); "
        f"lag p99 < 50 ms -> {'MET' if big['lag_p99_ms'] < 50 else 'NOT MET'} "
        f"({big['lag_p99_ms']:.1f} ms); polls/s <= {RATE:g} -> "
        f"{'MET' if big['polls_per_s'] <= RATE else 'NOT MET'} ({big['polls_per_s']:.2f})"
    )
    if args.tracemalloc:
        traced = run_child(min(args.counts), args.window / 4, trace=True)
        print(f"\ntracemalloc, {traced['count']} pending waits (top lines):")
        print("\n".join(traced["top"]))


if __name__ == "__main__":
    main()
