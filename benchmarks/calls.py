"""Calls per batch pair, by package: where the SDK's cost over the floor goes.

``throughput.py`` times the SDK against a raw-aiohttp floor and
``instructions.py`` counts their instructions; this script says what the
difference is made of. It converts ``--count`` instant tasks with each of
``throughput.py``'s ``floor`` and ``sdk`` runners (the fake server in another
process) under ``sys.setprofile``, counting every Python function entered
(a coroutine's resumption counts as an entry) and every C function called,
and prints them per pair, by package, then the functions whose counts differ
most. Counts hardly move from run to run (the event loop's batching of
ready callbacks does, a little), so two versions of the code compare here
without the machine's noise.

Run::

    python benchmarks/calls.py
    python benchmarks/calls.py --count 500 --top 40
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from types import FrameType
from typing import Any

from _common import fake_server, table
from throughput import VARIANTS, make_pairs

Key = tuple[str, str]  # (package, function)


def _package(filename: str) -> str:
    """The package (or stdlib module) a code object belongs to."""
    for marker in ("site-packages/", "/lib/python3."):
        if marker in filename:
            rest = filename.split(marker, 1)[1]
            if marker != "site-packages/":
                rest = "stdlib " + rest.split("/", 1)[1]
            return rest.split("/")[0].removesuffix(".py")
    if "/vidgo_async/" in filename:
        return "vidgo_async"
    return filename.rsplit("/", 1)[-1]


async def count(variant: str, pairs: int, warmup: int) -> Counter[Key]:
    """The calls of one run of ``variant`` over ``pairs`` instant tasks, after a warm-up."""
    calls: Counter[Key] = Counter()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            calls[_package(code.co_filename), code.co_name] += 1
        elif event == "c_call":
            calls["C", getattr(arg, "__qualname__", repr(arg))] += 1

    with fake_server(queue_time=0.0, run_time=0.0) as server:
        runner = VARIANTS[variant]
        await runner(server, make_pairs(f"warm-{variant}", warmup), 100)
        sys.setprofile(profile)
        try:
            await runner(server, make_pairs(f"run-{variant}", pairs), 100)
        finally:
            sys.setprofile(None)
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="pairs per run")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--top", type=int, default=25, help="functions listed")
    args = parser.parse_args()
    pairs: int = args.count
    floor = asyncio.run(count("floor", pairs, args.warmup))
    sdk = asyncio.run(count("sdk", pairs, args.warmup))

    def per_pair(calls: Counter[Key], package: str | None = None) -> float:
        chosen = (n for (p, _), n in calls.items() if package is None or p == package)
        return sum(chosen) / pairs

    packages = sorted({p for p, _ in floor | sdk}, key=lambda p: -per_pair(sdk, p))
    rows = [["all", f"{per_pair(floor):.0f}", f"{per_pair(sdk):.0f}"]]
    rows += [[p, f"{per_pair(floor, p):.1f}", f"{per_pair(sdk, p):.1f}"] for p in packages[:12]]
    print(f"calls per pair, {pairs} instant tasks (C: built-in functions and methods)")
    print(table(["package", "floor", "sdk"], rows))
    diff = Counter({k: sdk[k] - floor[k] for k in floor | sdk})
    print()
    print(
        table(
            ["sdk extra per pair", "function"],
            [[f"{n / pairs:.1f}", f"{p}: {f}"] for (p, f), n in diff.most_common(args.top)],
        )
    )


if __name__ == "__main__":
    main()
