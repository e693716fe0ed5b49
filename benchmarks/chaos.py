"""Chaos run: thousands of conversions through convert_many against a faulty FakeVidgo.

Checks, from the fake's own records, that nothing is lost, nothing is
converted twice, nothing hangs and nothing leaks (connections, tasks,
sessions, the API key). Exit status 0 only when every invariant holds.

    python benchmarks/chaos.py                   # 10,000 conversions, concurrency 64
    python benchmarks/chaos.py --tasks 500       # a quick run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import sys
import time
from collections import Counter
from typing import Any

import aiohttp
import attrs

from vidgo_async import (
    ConversionResult,
    PollPolicy,
    RetryPolicy,
    SubmitOutcomeUnknownError,
    TaskFailedError,
    Timeouts,
    VidgoClient,
)
from vidgo_async.testing import FakeVidgo

CANARY = "sk-canary-7f3a9c2e41d8b6"
FAULTS = {
    "server_error": 0.20,  # half JSON 500, half HTML 502
    "rate_limited": 0.10,  # half with Retry-After
    "reset_before": 0.025,
    "reset_after": 0.025,
    "stall": 0.01,
    "garbage": 0.01,
}
FAIL_MESSAGE = "chaos: the source track is corrupt"


class LeakWatch(logging.Handler):
    """Counts log records (formatted, with tracebacks) that contain the key."""

    def __init__(self, secret: str) -> None:
        super().__init__(logging.DEBUG)
        self.secret = secret
        self.records = 0
        self.leaks = 0
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        if self.secret in self.format(record):
            self.leaks += 1


def _chain(exc: BaseException | None) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _leaks_in(result: ConversionResult, secret: str) -> int:
    texts = [repr(result), str(attrs.asdict(result, recurse=True))]
    for exc in _chain(result.error):
        texts += [str(exc), repr(exc), repr(getattr(exc, "__dict__", {}))]
    return sum(secret in text for text in texts)


def _socket_fds() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


async def chaos(tasks: int, concurrency: int, seed: int, deadline: float) -> dict[str, Any]:
    """Run the batch; the figures and invariant checks."""
    sockets_before = _socket_fds()
    async with FakeVidgo(api_key=CANARY, queue_time=0.02, run_time=0.1, seed=seed) as fake:
        fake.set_fault_rates(FAULTS, routes=("submit", "detail"), stall_seconds=1.5)
        failing = {f"audio-{i}" for i in range(0, tasks, 20)}  # 5 % of tasks fail
        for audio_id in failing:
            fake.fail(audio_id, FAIL_MESSAGE)
        client = VidgoClient(
            CANARY,
            base_url=fake.url,
            poll=PollPolicy(initial=0.02, factor=1.5, max_interval=0.2),
            retry=RetryPolicy(base_delay=0.01, max_delay=0.2, max_retry_after=0.2),
            timeouts=Timeouts(connect=2.0, total=0.75),
            max_polls_per_second=5000.0,
            max_connections=concurrency * 2,
        )
        pairs = [(f"music-{i // 4}", f"audio-{i}") for i in range(tasks)]
        results: list[ConversionResult] = []
        started = time.monotonic()

        async def consume() -> None:
            async with client:
                batch = client.convert_many(pairs, concurrency=concurrency, timeout=deadline)
                async for result in batch:
                    results.append(result)

        await asyncio.wait_for(consume(), deadline + 30)
        elapsed = time.monotonic() - started
        files = dict(fake.tasks.items())
        accepted = fake.accept_count
        undelivered = fake.undelivered_accepts
        requests = Counter(r.route for r in fake.requests)
        faults = Counter(r.fault for r in fake.requests if r.fault)
        url_base = fake.url
    gc.collect()
    return _verdict(
        tasks=tasks,
        results=results,
        failing=failing,
        accepted=accepted,
        undelivered=undelivered,
        task_ids=set(files),
        url_base=url_base,
        elapsed=elapsed,
        deadline=deadline,
        requests=requests,
        faults=faults,
        sockets_left=_socket_fds() - sockets_before,
    )


def _verdict(**run: Any) -> dict[str, Any]:
    results: list[ConversionResult] = run["results"]
    per_pair = Counter(r.audio_id for r in results)
    outcomes = Counter("finished" if r.ok else type(r.error).__name__ for r in results)
    wrong_urls = [
        r
        for r in results
        if r.ok
        and (
            r.task_id not in run["task_ids"]
            or r.wav_url != f"{run['url_base']}/files/{r.task_id}.wav"
        )
    ]
    wrong_failures = [
        r
        for r in results
        if isinstance(r.error, TaskFailedError)
        and (r.audio_id not in run["failing"] or r.error.error_message != FAIL_MESSAGE)
    ]
    unknown = sum(isinstance(r.error, SubmitOutcomeUnknownError) for r in results)
    other_errors = [
        r
        for r in results
        if r.error is not None
        and not isinstance(r.error, (TaskFailedError, SubmitOutcomeUnknownError))
    ]
    open_sessions = sum(
        isinstance(o, aiohttp.ClientSession) and not o.closed for o in gc.get_objects()
    )
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    checks = {
        "every input has exactly one result": len(per_pair) == run["tasks"]
        and set(per_pair.values()) == {1},
        "no audio id accepted twice": max(run["accepted"].values(), default=0) <= 1,
        "finished results carry their task's URL": not wrong_urls,
        "failed results carry the server's message": not wrong_failures,
        "unknown outcomes == accepted-but-unanswered submits": unknown == run["undelivered"],
        "no other error": not other_errors,
        "ended within the deadline": run["elapsed"] < run["deadline"],
        "no task, session or socket left open": not others
        and not open_sessions
        and run["sockets_left"] <= 0,
    }
    return {
        **run,
        "outcomes": outcomes,
        "unknown": unknown,
        "checks": checks,
        "other_errors": other_errors[:5],
    }


def _print(report: dict[str, Any], watch: LeakWatch, result_leaks: int) -> bool:
    print(f"\nchaos run: {report['tasks']} conversions in {report['elapsed']:.1f}s")
    print(f"  requests by route: {dict(report['requests'])}")
    print(f"  faults injected:   {dict(report['faults'])}")
    print(f"  outcomes:          {dict(report['outcomes'])}")
    print(
        f"  accepted but unanswered submits: {report['undelivered']}, "
        f"SubmitOutcomeUnknownError: {report['unknown']}"
    )
    print(f"  log records at DEBUG: {watch.records}, containing the key: {watch.leaks}")
    checks = dict(report["checks"])
    checks["API key in no log line, exception, repr or asdict"] = (
        watch.leaks == 0 and result_leaks == 0
    )
    width = max(map(len, checks))
    print()
    for name, ok in checks.items():
        print(f"  {name:<{width}}  {'PASS' if ok else 'FAIL'}")
    for result in report["other_errors"]:
        print(f"  unexpected: {result.audio_id}: {result.error!r}")
    return all(checks.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--deadline", type=float, default=150.0, help="seconds for the run")
    args = parser.parse_args()
    watch = LeakWatch(CANARY)
    root = logging.getLogger()
    root.addHandler(watch)
    for name in ("", "aiohttp", "backoff", "vidgo_async", "asyncio"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    report = asyncio.run(chaos(args.tasks, args.concurrency, args.seed, args.deadline))
    root.removeHandler(watch)
    result_leaks = sum(_leaks_in(r, CANARY) for r in report["results"])
    return 0 if _print(report, watch, result_leaks) else 1


if __name__ == "__main__":
    sys.exit(main())
