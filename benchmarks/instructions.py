"""Client instructions per task, counted by valgrind: a figure the machine's noise cannot move.

CPU time on a shared 2-core VM varies by 10-30 % from one run to the next
(steal time), more than the overhead being measured. Instructions executed
do not: this script runs each ``throughput.py`` variant in a child process
under ``valgrind --tool=cachegrind --cache-sim=no`` twice, converting
``--small`` and then ``--large`` instant tasks after the same warm-up, and
reports (instructions(large) - instructions(small)) / (large - small): the
client's instructions per task, start-up and warm-up cancelled out. The
fake server runs in its own process, not under valgrind. Repeated runs agree
within ~0.5 %.

Instructions are not time: memory stalls (cache misses, the garbage
collector walking young objects) cost the SDK more than the floor, so its
CPU-time ratio comes out above its instruction ratio. Use this to compare
versions of the code; use ``throughput.py`` for the times.

Needs ``valgrind`` (``apt-get install valgrind``). Run::

    python benchmarks/instructions.py                      # floor and sdk
    python benchmarks/instructions.py --variants floor sdk sdk-default
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from _common import fake_server, machine, table
from throughput import VARIANTS, make_pairs, measure

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def count(variant: str, tasks: int, warmup: int) -> int:
    """Instructions of one child process converting ``tasks`` after ``warmup``."""
    command = [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        variant,
        str(tasks),
        str(warmup),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True)
    found = _REFS.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count from valgrind:\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


async def child(variant: str, tasks: int, warmup: int) -> None:
    """The measured process: a warm-up, then ``tasks`` conversions (none if 0)."""
    with fake_server(queue_time=0.0, run_time=0.0) as server:
        await measure(server, variant, make_pairs("warm", warmup), 100)
        if tasks:
            await measure(server, variant, make_pairs("run", tasks), 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["floor", "sdk"], choices=VARIANTS)
    parser.add_argument("--small", type=int, default=1000, help="tasks of the first run")
    parser.add_argument("--large", type=int, default=3000, help="tasks of the second run")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, tasks, warmup = args.child
        asyncio.run(child(variant, int(tasks), int(warmup)))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    print(machine())
    runs = [(v, n) for v in args.variants for n in (args.small, args.large)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # one valgrind per core
        counts = dict(zip(runs, pool.map(lambda run: count(*run, args.warmup), runs), strict=True))
    per_task = {
        v: (counts[v, args.large] - counts[v, args.small]) / (args.large - args.small)
        for v in args.variants
    }
    base = per_task[args.variants[0]]
    rows = [[v, f"{n / 1000:,.1f}k", f"{n / base:.3f}x"] for v, n in per_task.items()]
    print(table(["variant", "client instructions per task", f"vs {args.variants[0]}"], rows))


if __name__ == "__main__":
    main()
