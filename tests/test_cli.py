"""The vidgo-async command line, run as a subprocess against the fake server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from vidgo_async.testing import FakeVidgo

pytestmark = pytest.mark.asyncio


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VIDGO_")}
    environ.update(env or {})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vidgo_async",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _api(fake: FakeVidgo) -> dict[str, str]:
    return {"VIDGO_API_KEY": fake.api_key, "VIDGO_BASE_URL": fake.url}


async def test_help_lists_commands_and_examples() -> None:
    """--help names every command and shows examples."""
    code, out, _ = await _cli("--help")
    assert code == 0
    for word in ("wav", "batch", "status", "download", "fake-server", "demo", "examples:"):
        assert word in out


async def test_wav_prints_the_url(vidgo_fake: FakeVidgo) -> None:
    """`wav TASK AUDIO` prints the WAV URL and exits 0."""
    code, out, err = await _cli("wav", "music-1", "audio-1", env=_api(vidgo_fake))
    assert code == 0, err
    assert out.strip().endswith(".wav") and vidgo_fake.accept_count["audio-1"] == 1


async def test_status_as_json(vidgo_fake: FakeVidgo) -> None:
    """`status --json` prints the task as JSON."""
    task_id = vidgo_fake.seed_task(status="running", progress=40)
    code, out, _ = await _cli("status", task_id, "--json", env=_api(vidgo_fake))
    assert code == 0
    assert json.loads(out) == {
        "task_id": task_id,
        "status": "running",
        "progress": 40.0,
        "wav_url": None,
        "error_message": None,
        "created_time": json.loads(out)["created_time"],
    }


async def test_missing_key_is_one_clear_line() -> None:
    """No API key: exit 2 and one line naming VIDGO_API_KEY, no traceback."""
    code, _out, err = await _cli("status", "task-1")
    assert code == 2
    assert "VIDGO_API_KEY" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


async def test_api_error_is_one_clear_line(vidgo_fake: FakeVidgo) -> None:
    """A server error ends with exit 1 and one line, never a traceback."""
    code, _, err = await _cli("status", "no-such-task", env=_api(vidgo_fake))
    assert code == 1
    assert "NotFoundError" in err and "Traceback" not in err


async def test_batch_reports_bad_rows_and_converts_good_ones(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """Bad CSV rows are reported with line numbers; good rows convert; exit 1."""
    source = tmp_path / "pairs.csv"
    source.write_text("task_id,audio_id\nm,a1\nm,\n\nm,a2,extra\nm,a3\n")
    output = tmp_path / "results.jsonl"
    code, _, err = await _cli("batch", str(source), "--output", str(output), env=_api(vidgo_fake))
    assert code == 1
    assert "line 3:" in err and "line 5:" in err
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(row["audio_id"] for row in rows) == ["a1", "a3"]
    assert all(row["ok"] and row["wav_url"] for row in rows)


async def test_batch_of_jsonl_from_stdin_exits_zero(vidgo_fake: FakeVidgo, tmp_path: Path) -> None:
    """JSON lines on stdin, all converting, exit 0 with --json results on stdout."""
    pairs = "".join(json.dumps({"task_id": "m", "audio_id": f"a{i}"}) + "\n" for i in range(4))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("VIDGO_")}
    environ.update(_api(vidgo_fake))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vidgo_async",
        "batch",
        "-",
        "--json",
        "--download",
        str(tmp_path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ,
    )
    out, err = await asyncio.wait_for(process.communicate(pairs.encode()), 60)
    assert process.returncode == 0, err.decode()
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert len(rows) == 4 and all(Path(row["path"]).is_file() for row in rows)


async def test_batch_missing_column_is_a_usage_error(vidgo_fake: FakeVidgo, tmp_path: Path) -> None:
    """A CSV header without audio_id exits 2 with one line and sends nothing."""
    source = tmp_path / "pairs.csv"
    source.write_text("task_id,track\nm,a1\n")
    code, _, err = await _cli("batch", str(source), env=_api(vidgo_fake))
    assert code == 2 and "audio_id" in err and "Traceback" not in err
    assert vidgo_fake.requests == []


async def test_demo_runs_offline() -> None:
    """`demo` converts and downloads a batch against its own fake server, exit 0."""
    code, _, err = await _cli("demo", "--count", "20")
    assert code == 0, err
    assert "succeeded  20" in err
