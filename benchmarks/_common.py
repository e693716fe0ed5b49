"""Shared helpers of the benchmarks: a FakeVidgo in its own process, and small figures.

Every benchmark runs the fake server in a separate process (so client and
server never share an event loop or a core's worth of Python), started with
:func:`fake_server`. The child is this file run as a script: it builds a
:class:`~vidgo_async.testing.FakeVidgo` with the given options, adds a few
``/_bench/...`` control routes (request counts by route and by task, arrival
times by route, each task's finish time on the shared monotonic clock,
conversions created per audio id, per-audio durations, seeded pending
tasks), prints its URL and serves until terminated.

The control routes go through the fake's own middleware, so they need the
API key and are logged under route names ``"bench-..."`` - never counted as
status requests.

``time.monotonic`` is ``CLOCK_MONOTONIC`` on Linux, one clock for every
process of the machine, so finish times read from the fake compare directly
with the client's own ``time.monotonic()``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

API_KEY = "bench-key"
_START_TIMEOUT = 20.0
_STOP_TIMEOUT = 5.0


class FakeServer:
    """A FakeVidgo running in a child process; see :func:`fake_server`."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url
        self.api_key = API_KEY

    @property
    def pid(self) -> int:
        """The server process's id."""
        return self.process.pid

    async def control(self, method: str, path: str, payload: Any = None, **params: str) -> Any:
        """Call a ``/_bench`` control route; its JSON answer."""
        headers = {"Authorization": f"Bearer {self.api_key}"}
        timeout = aiohttp.ClientTimeout(total=120)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.request(
                method, f"{self.url}/_bench/{path}", json=payload, params=params, headers=headers
            ) as response,
        ):
            response.raise_for_status()
            return await response.json()

    async def stats(self, *, by_task: bool = False, reset: bool = False) -> dict[str, Any]:
        """Requests by route (``{"routes": {...}}``), optionally detail requests per task.

        Args:
            by_task: Add ``"detail_by_task"``: task id -> status requests.
            reset: Forget the recorded requests afterwards.
        """
        params = {"by_task": "1" if by_task else "0", "reset": "1" if reset else "0"}
        result: dict[str, Any] = await self.control("GET", "stats", **params)
        return result

    async def arrivals(self, route: str) -> list[float]:
        """When each request to ``route`` arrived, on the shared ``time.monotonic()``."""
        result: list[float] = await self.control("GET", "arrivals", route=route)
        return result

    async def finish_times(self) -> dict[str, tuple[str, float]]:
        """``audio_id`` -> (task id, the ``time.monotonic()`` instant it finishes)."""
        result = await self.control("GET", "finish")
        return {audio: (task_id, at) for audio, (task_id, at) in result.items()}

    async def accepted(self) -> dict[str, int]:
        """``audio_id`` -> how many conversions of it the fake accepted (created)."""
        result: dict[str, int] = await self.control("GET", "accepted")
        return result

    async def set_durations(self, durations: dict[str, tuple[float, float]]) -> None:
        """Per ``audio_id``, the ``(queue_time, run_time)`` of its conversions."""
        await self.control("POST", "durations", {k: list(v) for k, v in durations.items()})

    async def seed_running(self, prefix: str, count: int) -> None:
        """Add ``count`` tasks ``<prefix>0 ...`` that stay ``running`` forever."""
        await self.control("POST", "seed", {"prefix": prefix, "count": count})

    def rss_kib(self) -> int | None:
        """The server process's resident memory, in KiB."""
        return rss_kib(self.pid)


@contextlib.contextmanager
def fake_server(*, pin: bool = False, **options: Any) -> Iterator[FakeServer]:
    """Run a FakeVidgo in a child process on a free port; stop it on exit.

    Args:
        pin: Give the server the last CPU and this process the others (on
            Linux with 2+ CPUs), so the scheduler never puts both on one
            core; the client's CPU share, and so the timings, vary less.
        **options: :class:`~vidgo_async.testing.FakeVidgo` keyword arguments
            (``queue_time``, ``run_time``, ``report_progress`` ...); JSON values.

    Yields:
        The running server (its URL is known and it answers).
    """
    options = {"api_key": API_KEY, **options}
    command = [sys.executable, str(Path(__file__).resolve()), "--options", json.dumps(options)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinned = pin and len(cpus) >= 2
    try:
        if pinned:
            os.sched_setaffinity(process.pid, {cpus[-1]})
            os.sched_setaffinity(0, set(cpus[:-1]))
        url = _read_url(process)
        yield FakeServer(process, url)
    finally:
        _stop(process)
        if pinned:
            os.sched_setaffinity(0, set(cpus))


def _read_url(process: subprocess.Popen[str]) -> str:
    """The URL line the child prints once it is listening."""
    assert process.stdout is not None
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            line = process.stdout.readline().strip()
            if line.startswith("http://"):
                return line
            if not line and process.poll() is not None:
                break
    raise RuntimeError(f"the fake server did not start (exit status {process.poll()})")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(_STOP_TIMEOUT)
    if process.stdout is not None:
        process.stdout.close()


# -- figures ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by linear interpolation; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rss_kib(pid: int | str = "self") -> int | None:
    """``VmRSS`` of a process in KiB (None off Linux)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def machine() -> str:
    """One line describing this machine and Python."""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} CPUs, {mem:.1f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}"
    )


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table (also valid Markdown)."""
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"
        for row in cells
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


# -- the child process --------------------------------------------------------------------


def _control_routes(fake: Any) -> list[web.RouteDef]:
    async def stats(request: web.Request) -> web.Response:
        records = fake.requests
        answer: dict[str, Any] = {"routes": Counter(r.route or "?" for r in records)}
        if request.query.get("by_task") == "1":
            answer["detail_by_task"] = Counter(
                r.query.get("task_id", "") for r in records if r.route == "detail"
            )
        if request.query.get("reset") == "1":
            fake.reset_log()
        return web.json_response(answer)

    async def arrivals(request: web.Request) -> web.Response:
        route = request.query["route"]
        return web.json_response([r.at for r in fake.requests if r.route == route])

    async def finish(_: web.Request) -> web.Response:
        return web.json_response(
            {
                task.audio_id: [task_id, task.accepted_at + task.queue_time + task.run_time]
                for task_id, task in fake.tasks.items()
                if task.seeded is None and task.audio_id is not None
            }
        )

    async def accepted(_: web.Request) -> web.Response:
        return web.json_response(fake.accept_count)

    async def durations(request: web.Request) -> web.Response:
        for audio_id, (queue, run) in (await request.json()).items():
            fake.set_duration(audio_id, queue_time=queue, run_time=run)
        return web.json_response({"ok": True})

    async def seed(request: web.Request) -> web.Response:
        body = await request.json()
        for i in range(int(body["count"])):
            fake.seed_task(f"{body['prefix']}{i}", status="running", progress=10)
        return web.json_response({"ok": True})

    return [
        web.get("/_bench/stats", stats, name="bench-stats"),
        web.get("/_bench/arrivals", arrivals, name="bench-arrivals"),
        web.get("/_bench/finish", finish, name="bench-finish"),
        web.get("/_bench/accepted", accepted, name="bench-accepted"),
        web.post("/_bench/durations", durations, name="bench-durations"),
        web.post("/_bench/seed", seed, name="bench-seed"),
    ]


async def _serve(options: dict[str, Any]) -> None:
    from vidgo_async.testing import FakeVidgo

    options.setdefault("credits", 10**9)  # benchmarks never run out of credits
    fake = FakeVidgo(**options)
    fake.app.router.add_routes(_control_routes(fake))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with fake:
        print(fake.url, flush=True)
        await stop.wait()


def main() -> None:
    """Child process entry point: serve a FakeVidgo with ``--options`` (JSON)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--options", default="{}", help="FakeVidgo keyword arguments as JSON")
    args = parser.parse_args()
    asyncio.run(_serve(json.loads(args.options)))


if __name__ == "__main__":
    main()
