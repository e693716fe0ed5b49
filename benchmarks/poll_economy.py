"""Poll economy: status requests per task and detection delay, per poll policy.

Tasks last 5-120 s (stratified uniform, seeded), with time scaled down by
``--scale`` (default 20: 0.25-6 s of real time). Each task is one
``convert_to_wav`` (submit, then the SDK's waiter) against a FakeVidgo in a
separate process whose per-track ``run_time`` is set to the scaled duration
(``queue_time=0``). Every policy converts the same durations; the fake counts
the status requests each task got, and knows each task's finish instant on
the machine-wide monotonic clock, so

    detection delay = (convert_to_wav returned) - (task finished).

Every figure is reported in unscaled seconds (scaled x ``--scale``).

Policies (intervals divided by the scale):

* ``default``: vidgo-async's default ``PollPolicy`` (1 s, x1.5, 15 s cap,
  10 % jitter, progress estimate on).
* ``fixed 0.1s / 1s / 6s``: what peer SDKs do - ``PollPolicy(initial=T,
  factor=1, max_interval=T, jitter=0, use_progress=False)``; they ignore
  ``progress``, so they run once and are listed under both modes.
* ``candidate ...``: other ``PollPolicy`` field values (``--candidate``).
* ``prototype estimator``: the default policy's blind schedule with the
  progress estimate of :class:`ProtoSchedule` (a proposal for
  ``PollSchedule``), run by a hand-written submit + ``get_task`` loop.

The client's rate cap is lifted (``max_polls_per_second=1e6``); instead a
policy's tasks run at most ``--max-rate x shortest interval`` at a time, so
the fake is never flooded (the 0.1 s poller runs a few tasks at a time).

Targets (issue 6): (a) no fixed-interval poller beats the default on both
mean requests and p95 delay; (b) with progress, <= 4 requests per task and
p95 delay < 5 % of the task's duration.

Run::

    python benchmarks/poll_economy.py
    python benchmarks/poll_economy.py --tasks 120 --scale 10
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from typing import Any

import attrs
from _common import API_KEY, FakeServer, fake_server, machine, percentile, table

from vidgo_async import PollPolicy, Task, TaskStatus, VidgoClient

SHORTEST, LONGEST = 5.0, 120.0
DEFAULT = PollPolicy()


def scaled(policy: PollPolicy, scale: float) -> PollPolicy:
    """``policy`` with every duration divided by ``scale``."""
    return attrs.evolve(
        policy,
        initial=policy.initial / scale,
        max_interval=policy.max_interval / scale,
        callback_interval=policy.callback_interval / scale,
    )


def fixed(interval: float) -> PollPolicy:
    """A peer SDK's fixed-interval poller."""
    return PollPolicy(
        initial=interval, factor=1.0, max_interval=interval, jitter=0.0, use_progress=False
    )


class ProtoSchedule:
    """A proposed progress estimate: widest baseline, aim short while unsure.

    The rate is measured from the first running sample once progress has
    moved >= 5 points since it, else from the submit instant at 0 %
    (assumes little queueing). Reported progress is read as the middle of
    its integer step. With ``err = 1 / points moved`` (the rate's relative
    error from integer steps), the next check aims at
    ``remaining * (1 - err)`` until the uncertainty of the remaining time is
    under 3 % of the task's estimated length, then at the estimated finish
    plus 1 % of it. Without progress it is the blind exponential schedule.
    """

    def __init__(self, policy: PollPolicy, started: float) -> None:
        self._policy = policy
        self._started = started
        self._blind = policy.initial
        self._samples: list[tuple[float, float]] = []

    def next(self, task: Task, now: float) -> float:
        """Delay before the next check after ``task``, read at ``now``."""
        blind = self._blind * (1 - self._policy.jitter * random.random())
        self._blind = min(self._blind * self._policy.factor, self._policy.max_interval)
        if task.status is not TaskStatus.RUNNING or not task.progress:
            return blind
        progress = task.progress + 0.5
        self._samples.append((now, progress))
        t0, p0 = self._samples[0]
        if progress - p0 < 5:
            t0, p0 = self._started, 0.0
        moved = progress - p0
        remaining = (100 - progress) * (now - t0) / moved
        err = 1 / max(moved, 0.5)
        length = now - self._started + remaining
        if remaining * err > 0.03 * length:
            return max(self._policy.initial, remaining * (1 - err))
        return max(self._policy.initial / 4, remaining + 0.01 * length)


async def proto_convert(client: VidgoClient, source: str, audio: str, policy: PollPolicy) -> None:
    """Submit and wait like ``convert_to_wav``, scheduled by :class:`ProtoSchedule`."""
    task = await client.submit_wav(source, audio)
    schedule = ProtoSchedule(policy, time.monotonic())
    delay = policy.initial
    while True:
        await asyncio.sleep(delay)
        snapshot = await client.get_task(task.task_id)
        if snapshot.status is TaskStatus.FINISHED and snapshot.wav_url:
            return
        if snapshot.status is TaskStatus.FAILED:
            raise RuntimeError(f"task {task.task_id} failed")
        delay = schedule.next(snapshot, time.monotonic())


PROTO = "prototype estimator"


def policies(candidates: list[str]) -> dict[str, tuple[PollPolicy, bool]]:
    """Name -> (unscaled policy, whether it reads progress, i.e. runs in both modes)."""
    chosen: dict[str, tuple[PollPolicy, bool]] = {"default": (DEFAULT, True)}
    for interval in (0.1, 1.0, 6.0):
        chosen[f"fixed {interval:g}s"] = (fixed(interval), False)
    for text in candidates:
        fields = dict(item.split("=") for item in text.split(","))
        values: dict[str, Any] = {k: float(v) for k, v in fields.items()}
        policy = attrs.evolve(DEFAULT, **values)
        chosen[f"candidate {text}"] = (policy, True)
    chosen[PROTO] = (DEFAULT, True)
    return chosen


def durations(count: int, seed: int) -> list[float]:
    """``count`` durations spread uniformly over 5-120 s (one per stratum), shuffled."""
    rng = random.Random(seed)
    width = (LONGEST - SHORTEST) / count
    values = [SHORTEST + width * (i + rng.random()) for i in range(count)]
    rng.shuffle(values)
    return values


async def run_policy(
    server: FakeServer,
    tag: str,
    policy: PollPolicy,
    spans: list[float],
    args: argparse.Namespace,
    *,
    proto: bool = False,
) -> list[dict[str, float]]:
    """Convert one track per duration under ``policy``; per-task figures (unscaled)."""
    audio_ids = [f"{tag}-{i}" for i in range(len(spans))]
    await server.set_durations(
        {a: (0.0, span / args.scale) for a, span in zip(audio_ids, spans, strict=True)}
    )
    shortest = min(policy.initial, policy.max_interval) or 1e-3
    slots = asyncio.Semaphore(max(1, min(len(spans), int(args.max_rate * shortest))))
    returned: dict[str, float] = {}
    async with VidgoClient(
        API_KEY, base_url=server.url, poll=policy, max_polls_per_second=1e6, max_connections=100
    ) as client:

        async def convert(audio_id: str) -> None:
            async with slots:
                if proto:
                    await proto_convert(client, f"music-{tag}", audio_id, policy)
                else:
                    await client.convert_to_wav(f"music-{tag}", audio_id, timeout=LONGEST)
                returned[audio_id] = time.monotonic()

        await asyncio.gather(*(convert(a) for a in audio_ids))
    finish = await server.finish_times()
    polls = (await server.stats(by_task=True, reset=True))["detail_by_task"]
    rows = []
    for audio_id, span in zip(audio_ids, spans, strict=True):
        task_id, finished_at = finish[audio_id]
        delay = (returned[audio_id] - finished_at) * args.scale
        rows.append({"span": span, "requests": polls[task_id], "delay": delay})
    return rows


def summary(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean requests per task, delay p50/p95 (s) and p95 of delay as % of duration."""
    delays = [r["delay"] for r in rows]
    return {
        "requests": statistics.mean(r["requests"] for r in rows),
        "p50": percentile(delays, 50),
        "p95": percentile(delays, 95),
        "p95_pct": percentile([100 * r["delay"] / r["span"] for r in rows], 95),
        "min": min(delays),
    }


def verdicts(figures: dict[str, dict[str, float]], progress: bool) -> list[str]:
    """Target (a) for this mode, and (b) when progress is reported."""
    lines = []
    base = figures["default"]
    for name, f in figures.items():
        if name.startswith("fixed"):
            beats = f["requests"] < base["requests"] and f["p95"] < base["p95"]
            lines.append(f"  (a) {name} beats default on both figures: {'YES' if beats else 'no'}")
    if progress:
        for name, f in figures.items():
            if name.startswith("fixed"):
                continue
            met = f["requests"] <= 4 and f["p95_pct"] < 5
            lines.append(
                f"  (b) {name}: {f['requests']:.2f} requests/task, p95 delay "
                f"{f['p95_pct']:.1f}% of duration -> {'MET' if met else 'NOT MET'}"
            )
    return lines


async def main_async(args: argparse.Namespace) -> None:
    print(machine())
    spans = durations(args.tasks, args.seed)
    print(
        f"{args.tasks} tasks, durations uniform over {SHORTEST:g}-{LONGEST:g} s (seed "
        f"{args.seed}), time scaled 1/{args.scale:g}; figures in unscaled seconds",
        flush=True,
    )
    chosen = policies(args.candidate)
    fixed_rows: dict[str, dict[str, float]] = {}
    for progress in (False, True):
        figures: dict[str, dict[str, float]] = {}
        with fake_server(queue_time=0.0, report_progress=progress) as server:
            for index, (name, (policy, reads_progress)) in enumerate(chosen.items()):
                if not reads_progress and name in fixed_rows:
                    figures[name] = fixed_rows[name]  # ignores progress: same as measured
                    continue
                started = time.perf_counter()
                rows = await run_policy(
                    server,
                    f"p{int(progress)}-{index}",
                    scaled(policy, args.scale),
                    spans,
                    args,
                    proto=name == PROTO,
                )
                figures[name] = summary(rows)
                if not reads_progress:
                    fixed_rows[name] = figures[name]
                print(f"  {name}: {time.perf_counter() - started:.1f}s", flush=True)
        print(f"\nprogress reported: {'yes' if progress else 'no'}")
        print(
            table(
                ["policy", "requests/task", "delay p50 s", "delay p95 s", "p95 % of duration"],
                [[n, f["requests"], f["p50"], f["p95"], f["p95_pct"]] for n, f in figures.items()],
            )
        )
        if min(f["min"] for f in figures.values()) < 0:
            print("  warning: a negative delay - the clocks do not agree")
        print("\n".join(verdicts(figures, progress)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=60, help="tasks per policy")
    parser.add_argument("--scale", type=float, default=20.0, help="time divided by this")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--max-rate", type=float, default=1500.0, help="status requests/s the fake is offered"
    )
    parser.add_argument(
        "--candidate",
        action="append",
        default=[],
        metavar="FIELD=VALUE,...",
        help="an extra PollPolicy to measure, e.g. initial=2,factor=1.4,max_interval=10",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
