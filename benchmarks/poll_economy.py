"""Poll economy: status requests per task and detection delay, per poll policy and scenario.

Each scenario is a stream of conversions: ``--concurrency`` tasks in flight
per policy, the next one submitted when one returns, so that a client that
learns has seen earlier tasks finish. Every task is one ``convert_to_wav``
against a FakeVidgo in a separate process whose per-track ``run_time`` is
the scaled duration (``queue_time=0``, no ``progress`` reported unless said).
The fake counts the status requests each task got and knows each task's
finish instant on the machine-wide monotonic clock, so

    detection delay = (convert_to_wav returned) - (task finished).

Time is scaled down by ``--scale`` (default 50); every figure is reported in
unscaled seconds. All policies of a scenario run at once, on the same
durations (seeded), each with a client of its own (a fresh learner):

* ``blind``: the default ``PollPolicy`` with ``learn=False`` (1 s, x1.5,
  15 s cap, 10 % jitter) - the schedule before issue 14;
* ``learned``: the default ``PollPolicy()`` (``learn=True``);
* ``fixed 1s`` / ``fixed 6s``: what peer SDKs do - ``PollPolicy(initial=T,
  factor=1, max_interval=T, jitter=0, use_progress=False, learn=False)``;
* ``callbacks``: the default policy with a ``CallbackReceiver`` (the fake
  POSTs each task's end to it).

Scenarios (durations in unscaled seconds):

* ``consistent``: log-normal, median 30 s, sigma 0.35;
* ``wide``: uniform over 5-120 s (stratified);
* ``bimodal``: 70 % log-normal around 15 s, 30 % around 90 s (sigma 0.2);
* ``drift``: ``consistent``, doubled from task 200 on (350 tasks);
* ``progress``: ``wide`` with ``progress`` reported (blind and learned only):
  the progress estimate still leads.

Figures: requests per task and delay (p50, p95, p95 as % of duration) over
the first 50 tasks (learning) and after them; for ``drift``, over tasks
50-199, 200-249 (the change) and 250-349.

Targets (issue 14), as ratios to ``blind`` in the same run: consistent and
bimodal, learned requests <= 0.7x and p95 % <= 0.5x; wide, neither figure
worse and no fixed poller better on both; drift, the consistent targets from
task 250 on and requests <= 1.2x over tasks 200-249.

Run::

    python benchmarks/poll_economy.py
    python benchmarks/poll_economy.py --scenario consistent --scale 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import statistics
import time
from collections.abc import AsyncIterator

import attrs
from _common import API_KEY, FakeServer, fake_server, machine, percentile, table

from vidgo_async import PollPolicy, VidgoClient
from vidgo_async.webhooks import CallbackReceiver

WARM_UP = 50
DRIFT_AT = 200
BLIND = PollPolicy(learn=False)


def fixed(interval: float) -> PollPolicy:
    """A peer SDK's fixed-interval poller."""
    return PollPolicy(
        initial=interval,
        factor=1.0,
        max_interval=interval,
        jitter=0.0,
        use_progress=False,
        learn=False,
    )


# name -> (unscaled policy, with a callback receiver)
POLICIES: dict[str, tuple[PollPolicy, bool]] = {
    "blind": (BLIND, False),
    "learned": (PollPolicy(), False),
    "fixed 1s": (fixed(1.0), False),
    "fixed 6s": (fixed(6.0), False),
    "callbacks": (PollPolicy(), True),
}
SCENARIOS = ("consistent", "wide", "bimodal", "drift", "progress")
BLIND_LEARNED = ("blind", "learned")  # the policies of the progress scenario


def scaled(policy: PollPolicy, scale: float) -> PollPolicy:
    """``policy`` with every duration divided by ``scale``."""
    return attrs.evolve(
        policy,
        initial=policy.initial / scale,
        max_interval=policy.max_interval / scale,
        callback_interval=policy.callback_interval / scale,
    )


def durations(scenario: str, count: int, seed: int) -> list[float]:
    """``count`` task durations of ``scenario``, in submission order (seeded)."""
    rng = random.Random(f"{scenario}-{seed}")
    if scenario in ("wide", "progress"):
        width = 115 / count
        spans = [5 + width * (i + rng.random()) for i in range(count)]
        rng.shuffle(spans)
        return spans
    if scenario == "bimodal":
        return [
            (15.0 if rng.random() < 0.7 else 90.0) * math.exp(rng.gauss(0, 0.2))
            for _ in range(count)
        ]
    spans = [30 * math.exp(rng.gauss(0, 0.35)) for _ in range(count)]
    if scenario == "drift":
        spans = [span * (2 if i >= DRIFT_AT else 1) for i, span in enumerate(spans)]
    return spans


@contextlib.asynccontextmanager
async def client_for(
    server: FakeServer, policy: PollPolicy, callbacks: bool
) -> AsyncIterator[VidgoClient]:
    """A client of ``server`` under ``policy`` (rate cap lifted), maybe with a receiver."""
    receiver = CallbackReceiver() if callbacks else None
    async with contextlib.AsyncExitStack() as stack:
        if receiver is not None:
            await stack.enter_async_context(receiver.serve())
        client = VidgoClient(
            API_KEY,
            base_url=server.url,
            poll=policy,
            callbacks=receiver,
            max_polls_per_second=1e6,
            max_connections=64,
        )
        yield await stack.enter_async_context(client)


async def run_policy(
    server: FakeServer,
    tag: str,
    policy: PollPolicy,
    callbacks: bool,
    spans: list[float],
    args: argparse.Namespace,
) -> list[dict[str, float]]:
    """Convert one track per duration, ``--concurrency`` at a time, in order;
    per-task figures (unscaled), in submission order (audio id ``f"{tag}-{i}"``)."""
    audio_ids = [f"{tag}-{i}" for i in range(len(spans))]
    returned: dict[str, float] = {}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for audio_id in audio_ids:
        queue.put_nowait(audio_id)
    async with client_for(server, policy, callbacks) as client:

        async def worker() -> None:
            while not queue.empty():
                audio_id = queue.get_nowait()
                await client.convert_to_wav(f"music-{tag}", audio_id, timeout=1000 / args.scale)
                returned[audio_id] = time.monotonic()

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    pairs = zip(audio_ids, spans, strict=True)
    return [{"span": s, "returned": returned[a]} for a, s in pairs]


def summary(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean requests per task, delay p50/p95 (s) and p95 of delay as % of duration."""
    delays = [r["delay"] for r in rows]
    return {
        "requests": statistics.mean(r["requests"] for r in rows),
        "p50": percentile(delays, 50),
        "p95": percentile(delays, 95),
        "pct": percentile([100 * r["delay"] / r["span"] for r in rows], 95),
        "min": min(delays),
    }


def segments(scenario: str, count: int) -> list[tuple[str, int, int]]:
    """The task ranges reported: learning, then warm (and around the drift)."""
    if scenario == "drift":
        return [
            ("first 50", 0, WARM_UP),
            ("50-199", WARM_UP, DRIFT_AT),
            ("200-249", DRIFT_AT, DRIFT_AT + 50),
            (f"250-{count - 1}", DRIFT_AT + 50, count),
        ]
    return [("first 50", 0, WARM_UP), (f"50-{count - 1}", WARM_UP, count)]


async def run_scenario(
    scenario: str, args: argparse.Namespace
) -> dict[str, dict[str, dict[str, float]]]:
    """Every policy on the scenario's durations, at once; figures per policy and segment."""
    count = DRIFT_AT + 150 if scenario == "drift" else args.tasks
    spans = durations(scenario, count, args.seed)
    chosen = {n: p for n, p in POLICIES.items() if scenario != "progress" or n in BLIND_LEARNED}
    with fake_server(
        queue_time=0.0, report_progress=scenario == "progress", callback_retry_scale=1 / args.scale
    ) as server:
        tags = {name: f"{scenario}-{i}" for i, name in enumerate(chosen)}
        await server.set_durations(
            {
                f"{tags[name]}-{i}": (0.0, span / args.scale)
                for name in chosen
                for i, span in enumerate(spans)
            }
        )
        started = time.perf_counter()
        runs = await asyncio.gather(
            *(
                run_policy(server, tags[name], scaled(policy, args.scale), cb, spans, args)
                for name, (policy, cb) in chosen.items()
            )
        )
        finish = await server.finish_times()
        polls = (await server.stats(by_task=True, reset=True))["detail_by_task"]
    print(f"  {scenario}: {count} tasks, {time.perf_counter() - started:.0f} s", flush=True)
    figures: dict[str, dict[str, dict[str, float]]] = {}
    for name, rows in zip(chosen, runs, strict=True):
        for i, row in enumerate(rows):  # in submission order: audio id f"{tag}-{i}"
            task_id, finished_at = finish[f"{tags[name]}-{i}"]
            row["requests"] = polls.get(task_id, 0)
            row["delay"] = (row["returned"] - finished_at) * args.scale
        figures[name] = {
            label: summary(rows[start:end]) for label, start, end in segments(scenario, count)
        }
    return figures


def report(scenario: str, figures: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    """The scenario's table, then its verdicts."""
    labels = list(next(iter(figures.values())))
    rows = []
    for name, by_label in figures.items():
        for label in labels:
            f, base = by_label[label], figures["blind"][label]
            rows.append(
                [
                    name,
                    label,
                    f["requests"],
                    f"{f['requests'] / base['requests']:.2f}x",
                    f["p50"],
                    f["p95"],
                    f["pct"],
                    f"{f['pct'] / base['pct']:.2f}x",
                ]
            )
    headers = ["policy", "tasks", "req/task", "vs blind", "p50 s", "p95 s", "p95 %", "vs blind"]
    print(f"\n{scenario}\n" + table(headers, rows))
    if min(f["min"] for by_label in figures.values() for f in by_label.values()) < 0:
        print("  warning: a negative delay - the clocks do not agree")
    return verdicts(scenario, figures, labels)


def ratio(figures: dict[str, dict[str, dict[str, float]]], label: str) -> tuple[float, float]:
    """Learned / blind: requests per task, and p95 delay as % of duration."""
    f, base = figures["learned"][label], figures["blind"][label]
    return f["requests"] / base["requests"], f["pct"] / base["pct"]


def verdicts(
    scenario: str, figures: dict[str, dict[str, dict[str, float]]], labels: list[str]
) -> list[str]:
    """One line per target of issue 14 that applies to ``scenario``."""
    warm = labels[-1]
    requests, pct = ratio(figures, warm)
    met = "MET" if scenario == "progress" else "NOT MET"
    if scenario in ("consistent", "bimodal", "drift"):
        met = "MET" if requests <= 0.7 and pct <= 0.5 else "NOT MET"
        line = f"{scenario} [{warm}]: requests {requests:.2f}x, p95 % {pct:.2f}x -> {met}"
        lines = [line + " (target <= 0.7x and <= 0.5x)"]
        if scenario == "drift":
            change, _ = ratio(figures, labels[2])
            met = "MET" if change <= 1.2 else "NOT MET"
            lines.append(f"drift [{labels[2]}]: requests {change:.2f}x -> {met} (target <= 1.2x)")
        return lines
    if scenario == "wide":
        met = "MET" if requests <= 1 and pct <= 1 else "NOT MET"
        lines = [f"wide: requests {requests:.2f}x, p95 % {pct:.2f}x -> {met} (target <= 1x both)"]
        learned = figures["learned"][warm]
        for name in ("fixed 1s", "fixed 6s"):
            f = figures[name][warm]
            beats = f["requests"] < learned["requests"] and f["pct"] < learned["pct"]
            lines.append(f"wide: {name} better than learned on both: {'YES' if beats else 'no'}")
        return lines
    return [f"progress: requests {requests:.2f}x, p95 % {pct:.2f}x (the estimate leads)"]


async def main_async(args: argparse.Namespace) -> None:
    print(machine())
    print(
        f"{args.tasks} tasks per scenario (drift: {DRIFT_AT + 150}), {args.concurrency} in"
        f" flight per policy, seed {args.seed}, time scaled 1/{args.scale:g};"
        " figures in unscaled seconds",
        flush=True,
    )
    started = time.perf_counter()
    lines = []
    for scenario in args.scenario or SCENARIOS:
        lines += report(scenario, await run_scenario(scenario, args))
    print("\n" + "\n".join(lines))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=300, help="tasks per policy and scenario")
    parser.add_argument("--concurrency", type=int, default=8, help="tasks in flight per policy")
    parser.add_argument("--scale", type=float, default=50.0, help="time divided by this")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="(repeatable)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
