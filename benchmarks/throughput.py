"""Throughput against the floor: ``convert_many`` vs a minimal raw-aiohttp loop.

Both convert ``--count`` instantly-finishing tracks (fake ``queue_time=0,
run_time=0``) at ``--concurrency`` against one FakeVidgo in a separate
process, alternated in one run (floor, sdk-default, sdk, then floor, sdk,
sdk-default, and so on). Each task is
one ``POST /api/generate/submit`` and one ``GET /api/generate/detail/music``
for both; the request counts the fake recorded are printed to prove it.

Fairness settings, stated:

* The floor is ``--concurrency`` workers sharing one ``ClientSession`` with
  ``TCPConnector(limit=concurrency)``; each does submit, then GET detail
  until ``finished`` - no retries, models, or checks.
* The SDK gets ``max_connections=concurrency`` (same pool size) and
  ``max_polls_per_second=1e6`` so its poll rate cap is never the bottleneck
  (the floor has none); ``convert_many(concurrency=...)`` bounds submits.
* ``sdk`` uses ``PollPolicy(initial=0.0)`` - the policy a user picks for
  tasks that finish at once: the first check right after the submit, as the
  floor does. ``sdk-default`` (default ``PollPolicy``: first check after
  ~1 s) is shown for reference; its waits overlap, so it costs about one
  second of wall time per run, not per task.

Client CPU is ``time.process_time()`` of this process (the server's CPU is
not in it). Ratios are per round (sdk / the floor run next to it), then the
median over rounds.

Run::

    python benchmarks/throughput.py                  # 5,000 tasks x 3 rounds, then a profile
    python benchmarks/throughput.py --profile-top 0 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from _common import API_KEY, FakeServer, fake_server, machine, table

from vidgo_async import PollPolicy, VidgoClient

Pairs = list[tuple[str, str]]
Runner = Callable[[FakeServer, Pairs, int], Awaitable[int]]


async def floor(server: FakeServer, pairs: Pairs, concurrency: int) -> int:
    """The floor: submit, then GET detail until finished; the number finished."""
    submit_url = f"{server.url}/api/generate/submit"
    detail_url = f"{server.url}/api/generate/detail/music"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    todo = iter(pairs)
    finished = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal finished
        for source, audio in todo:
            body = {"model": "convert-to-wav", "input": {"task_id": source, "audio_id": audio}}
            async with session.post(submit_url, json=body) as response:
                task_id = (await response.json())["data"]["task_id"]
            while True:
                async with session.get(detail_url, params={"task_id": task_id}) as response:
                    data = (await response.json())["data"]
                if data["status"] == "finished":
                    finished += 1
                    break

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return finished


def sdk(policy: PollPolicy) -> Runner:
    """A runner converting with ``convert_many`` under ``policy``."""

    async def run(server: FakeServer, pairs: Pairs, concurrency: int) -> int:
        finished = 0
        async with VidgoClient(
            API_KEY,
            base_url=server.url,
            poll=policy,
            max_connections=concurrency,
            max_polls_per_second=1e6,
        ) as client:
            async for result in client.convert_many(pairs, concurrency=concurrency):
                finished += result.ok
        return finished

    return run


VARIANTS: dict[str, Runner] = {
    "floor": floor,
    "sdk": sdk(PollPolicy(initial=0.0)),
    "sdk-default": sdk(PollPolicy()),
    # The learned schedule off: what learning costs on instant tasks.
    "sdk-nolearn": sdk(PollPolicy(initial=0.0, learn=False)),
}


async def measure(
    server: FakeServer, name: str, pairs: Pairs, concurrency: int
) -> dict[str, float]:
    """One timed run: wall, CPU and the requests the fake saw, per task."""
    await server.stats(reset=True)
    gc.collect()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    finished = await VARIANTS[name](server, pairs, concurrency)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if finished != len(pairs):
        raise RuntimeError(f"{name}: {finished} of {len(pairs)} finished")
    routes = (await server.stats(reset=True))["routes"]
    return {
        "wall": wall,
        "cpu_ms_per_task": 1000 * cpu / len(pairs),
        "submits": routes.get("submit", 0) / len(pairs),
        "polls": routes.get("detail", 0) / len(pairs),
    }


def make_pairs(tag: str, count: int) -> Pairs:
    """Distinct pairs (each track can be converted once per server)."""
    return [(f"music-{tag}", f"{tag}-{i}") for i in range(count)]


async def bench(args: argparse.Namespace, server: FakeServer) -> None:
    names = ["floor"] + ([] if args.no_default_policy else ["sdk-default"]) + ["sdk"]
    for name in names:  # warm-up: imports, first connections, code paths
        await measure(server, name, make_pairs(f"warm-{name}", args.warmup), args.concurrency)
    runs: dict[str, list[dict[str, float]]] = defaultdict(list)
    for round_ in range(args.rounds):
        # The floor first, then the others in turn: each runs right after the floor
        # as often as the others (which showed in its wall time).
        others = names[1:]
        shift = round_ % len(others) if others else 0
        for name in [names[0], *others[shift:], *others[:shift]]:
            figures = await measure(
                server, name, make_pairs(f"r{round_}-{name}", args.count), args.concurrency
            )
            runs[name].append(figures)
            print(
                f"round {round_ + 1} {name:11} wall {figures['wall']:.2f}s "
                f"cpu {figures['cpu_ms_per_task']:.3f} ms/task",
                flush=True,
            )
    print()
    print(report(runs, args.count))


def report(runs: dict[str, list[dict[str, float]]], count: int) -> str:
    """The summary table: medians and per-round ratios against the floor."""
    rows: list[list[object]] = []
    for name, figures in runs.items():
        wall = statistics.median(f["wall"] for f in figures)
        cpu = statistics.median(f["cpu_ms_per_task"] for f in figures)
        wall_ratio = statistics.median(
            f["wall"] / b["wall"] for f, b in zip(figures, runs["floor"], strict=True)
        )
        cpu_ratio = statistics.median(
            f["cpu_ms_per_task"] / b["cpu_ms_per_task"]
            for f, b in zip(figures, runs["floor"], strict=True)
        )
        rows.append(
            [
                name,
                len(figures),
                round(wall, 2),
                round(count / wall),
                round(cpu, 3),
                f"{wall_ratio:.2f}x",
                f"{cpu_ratio:.2f}x",
                f"{figures[-1]['submits']:.2f} + {figures[-1]['polls']:.2f}",
            ]
        )
    headers = [
        "variant",
        "runs",
        "wall s (median)",
        "tasks/s",
        "client CPU ms/task",
        "wall vs floor",
        "CPU vs floor",
        "submits + polls per task",
    ]
    return table(headers, rows)


async def profiled(args: argparse.Namespace, server: FakeServer) -> None:
    """Profile one floor and one sdk run; print where the sdk spends more own time."""
    own: dict[str, dict[Any, tuple[int, float]]] = {}
    for name in ("floor", "sdk"):
        profile = cProfile.Profile()
        profile.enable()
        await measure(server, name, make_pairs(f"profile-{name}", args.count), args.concurrency)
        profile.disable()
        raw: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        own[name] = {key: (value[1], value[2]) for key, value in raw.items()}
    print(by_package(own))
    print()
    print(top_extra(own, args.profile_top))


def by_package(own: dict[str, dict[Any, tuple[int, float]]]) -> str:
    """Own time (tottime) per package, floor vs sdk, in seconds."""
    totals: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for name, functions in own.items():
        for (filename, _, _), (_, tottime) in functions.items():
            totals[_package(filename)][name] += tottime
    rows = [
        [package, round(t["floor"], 3), round(t["sdk"], 3), round(t["sdk"] - t["floor"], 3)]
        for package, t in sorted(totals.items(), key=lambda i: i[1]["floor"] - i[1]["sdk"])
    ]
    return table(["package (own time, s)", "floor", "sdk", "sdk extra"], rows)


def top_extra(own: dict[str, dict[Any, tuple[int, float]]], limit: int) -> str:
    """The functions whose own time grew most from floor to sdk."""
    floor_, sdk_ = own["floor"], own["sdk"]
    rows = []
    for key in set(floor_) | set(sdk_):
        calls0, time0 = floor_.get(key, (0, 0.0))
        calls1, time1 = sdk_.get(key, (0, 0.0))
        rows.append([round(1000 * (time1 - time0), 1), calls0, calls1, _where(key)])
    rows.sort(key=lambda row: -float(row[0]))  # type: ignore[arg-type]
    return table(["sdk extra ms", "calls floor", "calls sdk", "function"], rows[:limit])


def _where(key: tuple[str, int, str]) -> str:
    filename, line, function = key
    for cut in ("site-packages/", "lib/python3.11/", "/work/main/"):
        filename = filename.split(cut)[-1]
    return f"{filename}:{line}({function})"


def _package(filename: str) -> str:
    for marker in ("vidgo_async", "aiohttp", "yarl", "multidict", "cattrs", "attr", "backoff"):
        if f"/{marker}/" in filename or f"/{marker}s/" in filename:
            return marker
    for marker in ("asyncio", "json", "logging", "selectors", "enum", "typing"):
        if f"/{marker}/" in filename or filename.endswith(f"/{marker}.py"):
            return f"stdlib {marker}"
    if filename.startswith("~") or filename.startswith("<"):
        return "builtins (C)"
    return "other"


async def main_async(args: argparse.Namespace) -> None:
    print(machine())
    print(
        f"{args.count} instant conversions x {args.rounds} rounds, concurrency "
        f"{args.concurrency}; fake server in a separate process",
        flush=True,
    )
    with fake_server(pin=not args.no_pin, queue_time=0.0, run_time=0.0) as server:
        await bench(args, server)
        if args.profile_top:
            print("\n--- cProfile: one floor run and one sdk run, own time ---")
            await profiled(args, server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="conversions per run")
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds")
    parser.add_argument("--warmup", type=int, default=300, help="conversions per warm-up run")
    parser.add_argument(
        "--profile-top", type=int, default=30, help="functions listed by the profile; 0: none"
    )
    parser.add_argument(
        "--no-default-policy", action="store_true", help="skip the sdk-default variant"
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="let the OS place the client and the server"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
