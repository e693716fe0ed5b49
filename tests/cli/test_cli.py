"""The vidgo-async command line, run as a subprocess against the fake server."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cli_support import COMMAND_TIMEOUT, api_env, run_cli, start_cli

from vidgo_async import VidgoClient
from vidgo_async.testing import FakeVidgo, iter_wav
from vidgo_async.webhooks import CallbackReceiver

pytestmark = pytest.mark.asyncio


async def _cli(
    *args: str, env: dict[str, str] | None = None, python: tuple[str, ...] = ()
) -> tuple[int, str, str]:
    ran = await run_cli(*args, env=env, python=python)
    return ran.code, ran.out, ran.err


def _api(fake: FakeVidgo) -> dict[str, str]:
    return api_env(fake)


async def test_help_lists_commands_and_examples() -> None:
    """--help names every command and shows examples."""
    code, out, _ = await _cli("--help")
    assert code == 0
    for word in ("wav", "batch", "status", "download", "fake-server", "demo", "examples:"):
        assert word in out


@pytest.mark.parametrize("command", ["wav", "batch", "status", "download", "fake-server", "demo"])
async def test_every_option_of_a_command_says_what_it_does(command: str) -> None:
    """`COMMAND --help` describes every option (fake-server's listed bare names)."""
    code, out, _ = await _cli(command, "--help")
    assert code == 0
    lines = [*out.split("options:", 1)[1].splitlines(), ""]
    bare = [
        line.strip()
        for line, after in itertools.pairwise(lines)
        # An option with no text beside it, nor below it (argparse wraps long names).
        if line.startswith("  -") and "  " not in line.strip() and not after.startswith(" " * 8)
    ]
    assert not bare, bare


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


async def test_status_takes_the_submits_cap_without_listing_it(vidgo_fake: FakeVidgo) -> None:
    """`status` sends no submit: its help lists no submits' cap, but a script passing one
    set of flags to every command still runs."""
    _, out, _ = await _cli("status", "--help")
    assert "--max-polls-per-second" in out and "--max-submits-per-second" not in out
    task_id = vidgo_fake.seed_task(status="running")
    code, out, err = await _cli(
        "status", task_id, "--max-submits-per-second", "2", "--json", env=_api(vidgo_fake)
    )
    assert code == 0, err
    assert json.loads(out)["status"] == "running"


async def test_status_escapes_control_characters_of_the_servers_message(
    vidgo_fake: FakeVidgo,
) -> None:
    """A failed task's message with terminal control sequences is printed escaped, on
    one line (it was printed raw: the server could clear the screen)."""
    message = "bad input\x1b[2J\x1b]0;owned\x07\r\nDone: fake.wav"
    task_id = vidgo_fake.seed_task(status="failed", error_message=message)
    code, out, _ = await _cli("status", task_id, env=_api(vidgo_fake))
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert out.count("\n") == 1 and "\\x1b[2J" in out


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
    ran = await run_cli(
        *("batch", "-", "--json", "--download", str(tmp_path)),
        env=_api(vidgo_fake),
        input=pairs.encode(),
    )
    assert ran.code == 0, ran.err
    rows = [json.loads(line) for line in ran.out.splitlines()]
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


async def test_batch_closes_its_input_under_warnings_as_errors(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """`batch FILE` under -W error leaks no file handle: no ResourceWarning, no traceback."""
    source = tmp_path / "pairs.csv"
    source.write_text("task_id,audio_id\nm,a1\nm,a2\n")
    code, _, err = await _cli("batch", str(source), env=_api(vidgo_fake), python=("-W", "error"))
    assert code == 0, err
    assert "ResourceWarning" not in err and "Traceback" not in err


# A loopback API address nothing listens on: usage errors must come before any request.
_NO_API = {"VIDGO_API_KEY": "k", "VIDGO_BASE_URL": "http://127.0.0.1:9"}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("batch", "{tmp}/missing.csv"), "missing.csv"),
        (("batch", "{tmp}"), "{tmp}"),
        (("batch", "{pairs}", "--concurrency", "0"), "--concurrency"),
        (("batch", "{pairs}", "--concurrency", "many"), "--concurrency"),
        (("batch", "{pairs}", "--timeout", "-1"), "--timeout"),
        (("wav", "m", "a", "--timeout", "nan"), "--timeout"),
        (("download", "https://example.com/a.wav", "{tmp}/a.wav", "--timeout", "0"), "--timeout"),
        (("demo", "--count", "0"), "--count"),
        (("fake-server", "--port", "70000"), "--port"),
    ],
    ids=[
        "missing-file",
        "directory",
        "concurrency-0",
        "concurrency-word",
        "timeout-negative",
        "timeout-nan",
        "download-timeout-0",
        "count-0",
        "port-too-big",
    ],
)
async def test_usage_errors_exit_2_with_one_line(
    tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    """Bad options and an unreadable input file exit 2 with one clear line."""
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("task_id,audio_id\nm,a1\n")
    argv = [a.format(tmp=tmp_path, pairs=pairs) for a in args]
    code, out, err = await _cli(*argv, env=_NO_API)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and needle.format(tmp=tmp_path) in err
    assert out == ""


@contextlib.asynccontextmanager
async def _trickling_storage() -> AsyncIterator[str]:
    """A loopback storage host sending a WAV header, then a byte every 50 ms."""
    handlers: set[asyncio.Task[object]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100044\r\n\r\n")
            writer.write(b"".join(iter_wav(100_044, stop=100)))
            for _ in range(10_000):
                await asyncio.sleep(0.05)
                writer.write(b"\0")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            handlers.discard(task)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/a.wav"
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def test_download_timeout_bounds_the_whole_download(tmp_path: Path) -> None:
    """`download --timeout` ends a trickling download: exit 1, one line, only the .part
    (and its record) left."""
    env = {"VIDGO_API_KEY": "k", "VIDGO_BASE_URL": "http://127.0.0.1:9"}  # loopback allowed
    async with _trickling_storage() as url:
        code, _, err = await _cli(
            "download", url, str(tmp_path / "a.wav"), "--timeout", "1", env=env
        )
    assert code == 1
    assert "RequestTimeoutError" in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav.part", "a.wav.part.version"]


async def test_batch_reports_undecodable_and_malformed_rows_and_goes_on(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """Non-UTF-8 bytes, an unterminated quote, blank ids: per-line reports; the rest converts."""
    source = tmp_path / "pairs.csv"
    source.write_bytes(b'task_id,audio_id\nm,a1\nm,bad\xff\n  ,  \nm,a2\nm,"unterminated\n')
    output = tmp_path / "results.jsonl"
    code, _, err = await _cli("batch", str(source), "--output", str(output), env=_api(vidgo_fake))
    assert code == 1
    assert "line 3: skipped: not valid UTF-8" in err
    assert "line 4: skipped:" in err
    assert "line 6: skipped: not valid CSV" in err
    assert "Traceback" not in err
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(row["audio_id"] for row in rows) == ["a1", "a2"]


async def test_batch_of_an_empty_input_says_so_and_exits_0(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """A header without rows converts nothing, says so, and is not a failure."""
    source = tmp_path / "pairs.csv"
    source.write_text("task_id,audio_id\n")
    code, _, err = await _cli("batch", str(source), env=_api(vidgo_fake))
    assert code == 0
    assert "no pairs" in err
    assert vidgo_fake.requests == []


async def test_fake_server_on_a_port_in_use_says_to_choose_another() -> None:
    """A port already taken: one line naming it and --port, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        code, _, err = await _cli("fake-server", "--port", str(busy))
    assert code == 1, err
    assert len(err.strip().splitlines()) == 1 and f":{busy}" in err and "--port" in err, err


async def test_fake_server_delivers_callbacks_through_its_callback_proxy() -> None:
    """`fake-server --callback-proxy ORIGIN`: a receiver whose public URL is a public
    name gets its callbacks at ORIGIN, and the wait returns on one, not on the 60 s
    safety-net poll (the fake could not reach the public name)."""
    receiver = CallbackReceiver("https://hooks.example.com")
    async with receiver.serve() as local:
        process = await start_cli("fake-server", "--port", "0", "--callback-proxy", local)
        try:
            assert process.stdout is not None
            first = await asyncio.wait_for(process.stdout.readline(), COMMAND_TIMEOUT)
            url = re.search(r"http://127\.0\.0\.1:\d+", first.decode())
            assert url is not None, first
            async with VidgoClient("test-key", base_url=url[0], callbacks=receiver) as client:
                wav = await asyncio.wait_for(client.convert_to_wav("m", "a1"), 20)
            assert wav.endswith(".wav")
        finally:
            process.terminate()
            await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)


async def test_fake_server_refuses_a_callback_proxy_that_is_no_origin() -> None:
    """--callback-proxy takes an origin, checked before the server starts."""
    code, _, err = await _cli("fake-server", "--callback-proxy", "hooks.example.com/path")
    assert code == 2 and "--callback-proxy" in err, err
