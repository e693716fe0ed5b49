"""The promise itself: a batch stopped at any moment, then re-run, never converts a track
twice, and every paid conversion's URL reaches the user - against a fake whose 409 names
no task, so that nothing but the journal can tell a re-run which task a track became."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
from pathlib import Path

import pytest
from cli_support import COMMAND_TIMEOUT, api_env, run_cli, start_cli

from vidgo_async.testing import FakeVidgo, Fault

pytestmark = pytest.mark.asyncio

_PAIRS = 60
_OPTIONS = ("--max-polls-per-second", "500", "--concurrency", "4")


def _input(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.csv"
    rows = "".join(f"m{i // 4},a{i}\n" for i in range(_PAIRS))
    path.write_text("task_id,audio_id\n" + rows)
    return path


def _reported(*outputs: Path) -> dict[str, dict[str, object]]:
    """The last line each pair got in the ``--output`` files, by audio id."""
    seen: dict[str, dict[str, object]] = {}
    for output in outputs:
        if output.exists():
            for line in output.read_text().splitlines():
                record = json.loads(line)
                seen[str(record["audio_id"])] = record
    return seen


async def _interrupted_then_rerun(
    fake: FakeVidgo, tmp_path: Path, signum: int, submits: int, *, signals: int = 1
) -> dict[str, dict[str, object]]:
    """Stop the batch once the fake has seen ``submits`` submits (more are on the wire
    then; ``signals`` times, 0.1 s apart), re-run it to the end; what each pair was last
    reported as."""
    source, first, second = _input(tmp_path), tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    env = api_env(fake)
    # Answers take a while: the stop always finds submits accepted but not yet answered.
    fake.inject(Fault.slow(0.2), route="submit", times=_PAIRS)
    process = await start_cli("batch", str(source), "--output", str(first), *_OPTIONS, env=env)
    try:
        for _ in range(int(COMMAND_TIMEOUT / 0.005)):
            if fake.request_count("submit") >= submits:
                break
            await asyncio.sleep(0.005)
        for _ in range(signals):
            with contextlib.suppress(ProcessLookupError):  # over already: nothing to stop
                process.send_signal(signum)
            await asyncio.sleep(0.1)
        await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    rerun = await run_cli("batch", str(source), "--output", str(second), *_OPTIONS, env=env)
    assert "Traceback" not in rerun.err
    return _reported(first, second)


@pytest.mark.parametrize("seed", range(3))
async def test_sigterm_at_any_moment_loses_no_paid_conversion(
    make_fake_for_cli: FakeVidgo, tmp_path: Path, seed: int
) -> None:
    """SIGTERM at a random moment, then a re-run: every pair converted exactly once and
    reported with its URL (in-flight submits are answered and journalled first)."""
    fake = make_fake_for_cli
    submits = random.Random(seed).randrange(1, _PAIRS)
    reported = await _interrupted_then_rerun(fake, tmp_path, signal.SIGTERM, submits)
    assert all(count == 1 for count in fake.accept_count.values())
    assert len(fake.accept_count) == _PAIRS
    assert sorted(reported) == sorted(f"a{i}" for i in range(_PAIRS))
    assert all(record["wav_url"] for record in reported.values()), [
        record for record in reported.values() if not record["wav_url"]
    ]


@pytest.mark.parametrize("signals", [2, 3])
async def test_more_sigints_during_the_grace_lose_no_paid_conversion(
    make_fake_for_cli: FakeVidgo, tmp_path: Path, signals: int
) -> None:
    """Ctrl-C two or three times: the later ones do not cut short the grace of the
    submits in flight (they did: 16-20 of 60 pairs were then unknown outcomes at the
    re-run)."""
    fake = make_fake_for_cli
    reported = await _interrupted_then_rerun(fake, tmp_path, signal.SIGINT, 20, signals=signals)
    assert all(count == 1 for count in fake.accept_count.values())
    assert sorted(reported) == sorted(f"a{i}" for i in range(_PAIRS))
    assert all(record["wav_url"] for record in reported.values()), [
        record for record in reported.values() if not record["wav_url"]
    ]


@pytest.mark.parametrize("seed", range(3))
async def test_sigkill_at_any_moment_never_converts_twice(
    make_fake_for_cli: FakeVidgo, tmp_path: Path, seed: int
) -> None:
    """SIGKILL at a random moment, then a re-run: no track converted twice, every pair
    reported; a pair whose submit was on the wire when the process died and whose 409
    names no task is reported as an unknown outcome, never as a failure to resubmit."""
    fake = make_fake_for_cli
    submits = random.Random(100 + seed).randrange(1, _PAIRS)
    reported = await _interrupted_then_rerun(fake, tmp_path, signal.SIGKILL, submits)
    assert all(count == 1 for count in fake.accept_count.values())
    assert sorted(reported) == sorted(f"a{i}" for i in range(_PAIRS))
    for record in reported.values():
        assert record["wav_url"] or record["error_type"] == "SubmitOutcomeUnknownError", record
