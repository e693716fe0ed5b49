"""Peak memory of downloading a large WAV: the client's memory must stay flat.

Serves one WAV of ``--size-mb`` megabytes from FakeVidgo in a separate
process (so the server's memory is not counted), downloads it with
``download_file``, and reports how much the client process's peak RSS grew,
and the throughput. Exits 1 if the growth exceeds ``--limit-mib``.

Run::

    python benchmarks/download_memory.py --size-mb 500
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import aiohttp

from vidgo_async._wire.download import download_file
from vidgo_async.testing import FakeVidgo

MIB = 1024 * 1024


def serve(size: int, conn: Connection) -> None:
    """Child process: serve a FakeVidgo with one finished task, send its WAV URL."""
    asyncio.run(_serve(size, conn))


async def _serve(size: int, conn: Connection) -> None:
    async with FakeVidgo(wav_size=size) as fake:
        conn.send(f"{fake.url}/files/{fake.seed_task()}.wav")
        await asyncio.Event().wait()  # until the parent terminates us


def status_kib(field: str, pid: int | str = "self") -> int | None:
    """A ``VmRSS``/``VmHWM`` figure of /proc/<pid>/status in KiB (None off Linux)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset this process's peak RSS (Linux: write 5 to clear_refs); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


async def download(url: str, dest: Path) -> tuple[float, int]:
    """Download with a fresh session; the seconds taken and the peak growth in KiB."""
    resettable = reset_peak()

    def peak() -> int:
        if resettable:
            return status_kib("VmHWM") or 0
        # No resettable peak: ru_maxrss since start (an under-estimate if it was higher).
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    async with aiohttp.ClientSession() as session:
        before = (status_kib("VmRSS") or 0) if resettable else peak()
        started = time.perf_counter()
        await download_file(session, url, dest, allow_private=True)
        elapsed = time.perf_counter() - started
        return elapsed, peak() - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=500.0, help="file size in MB (10**6)")
    parser.add_argument("--limit-mib", type=float, default=16.0, help="allowed peak growth")
    parser.add_argument("--dir", type=Path, default=None, help="where to write (a temp dir)")
    args = parser.parse_args()
    size = int(args.size_mb * 1_000_000)

    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    server = context.Process(target=serve, args=(size, child_end), daemon=True)
    server.start()
    try:
        if not parent_end.poll(30):
            print("the fake server did not start", file=sys.stderr)
            return 2
        url = parent_end.recv()
        with tempfile.TemporaryDirectory(dir=args.dir) as folder:
            dest = Path(folder) / "big.wav"
            elapsed, growth_kib = asyncio.run(download(url, dest))
            if dest.stat().st_size != size:
                print(f"wrong size: {dest.stat().st_size} != {size}", file=sys.stderr)
                return 2
        server_peak = status_kib("VmHWM", server.pid or 0)
    finally:
        server.terminate()
        server.join(5)

    growth = growth_kib / 1024
    verdict = "OK" if growth < args.limit_mib else "OVER LIMIT"
    server_note = "" if server_peak is None else f"; server peak RSS {server_peak / 1024:.1f} MiB"
    print(
        f"download {size / 1e6:.0f} MB: client peak RSS growth {growth:.2f} MiB "
        f"(limit {args.limit_mib:g} MiB) {verdict}; {size / 1e6 / elapsed:.0f} MB/s "
        f"in {elapsed:.2f}s{server_note} [pid {os.getpid()}]"
    )
    return 0 if growth < args.limit_mib else 1


if __name__ == "__main__":
    sys.exit(main())
