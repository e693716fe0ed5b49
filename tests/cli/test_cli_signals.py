"""An interrupted batch loses nothing; the live bar on a terminal agrees with the lines above it."""

from __future__ import annotations

import asyncio
import enum
import fcntl
import json
import os
import pty
import re
import signal
import sqlite3
import struct
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_support import COMMAND_TIMEOUT, api_env, environ, run_cli, start_cli

from vidgo_async.testing import FakeVidgo

pytestmark = pytest.mark.asyncio

_FAST = ("--max-polls-per-second", "500")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Out(enum.Enum):
    """Where `_on_a_terminal` sends the command's stdout, besides a file descriptor."""

    NOWHERE = "/dev/null"
    TERMINAL = "the terminal too"
    CLOSED = "closed (`>&-`)"


def _pairs(path: Path, fast: int, slow: int, *, bad: str = "") -> Path:
    rows = [f"m,fast{i}\n" for i in range(fast)] + [f"m,slow{i}\n" for i in range(slow)]
    path.write_text("task_id,audio_id\n" + "".join(rows) + bad)
    return path


async def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the batch"
        await asyncio.sleep(0.05)


async def _interrupt(process: asyncio.subprocess.Process, signum: int) -> tuple[int, str]:
    """Send ``signum`` and collect the exit status and stderr (killed if it hangs)."""
    try:
        process.send_signal(signum)
        _, err = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, err.decode()


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)],
    ids=["SIGTERM", "SIGHUP", "SIGINT"],
)
async def test_a_signal_stops_the_batch_and_a_rerun_resumes_it(
    vidgo_fake: FakeVidgo, tmp_path: Path, signum: int, code: int
) -> None:
    """SIGTERM/SIGHUP/SIGINT: 128+N, one line, results already on disk, journal intact."""
    for i in range(3):
        vidgo_fake.set_duration(f"slow{i}", run_time=120)
    source = _pairs(tmp_path / "pairs.csv", 3, 3)
    output = tmp_path / "out.jsonl"
    process = await start_cli(
        "batch", str(source), "--output", str(output), *_FAST, env=api_env(vidgo_fake)
    )
    try:
        # Each result is flushed as it comes: the fast ones are on disk while the batch runs.
        await _until(
            lambda: (
                len(_lines(output)) == 3
                and all(vidgo_fake.accept_count[f"slow{i}"] == 1 for i in range(3))
            )
        )
    finally:
        returned, err = await _interrupt(process, signum)
    assert returned == code, err
    assert f"vidgo-async: interrupted by {signal.Signals(signum).name}" in err
    assert "Traceback" not in err
    with sqlite3.connect(tmp_path / "vidgo-journal.sqlite") as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM conversions GROUP BY state"))
    assert states == {"finished": 3, "accepted": 3}

    for i in range(3):
        vidgo_fake.set_duration(f"slow{i}", run_time=0.01)
    rerun = await run_cli("batch", str(source), *_FAST, env=api_env(vidgo_fake))
    assert rerun.code == 0, rerun.err
    assert vidgo_fake.request_count("submit") == 6  # the re-run waited, never resubmitted


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "no-journal"])
async def test_an_interrupted_summary_offers_a_rerun_only_with_a_journal(
    vidgo_fake: FakeVidgo, tmp_path: Path, journal: bool
) -> None:
    """Interrupted, the summary counts the unfinished pairs as left for a re-run only
    when a journal lets a re-run resume them (the demo, which keeps none, said so too)."""
    vidgo_fake.set_duration("slow0", run_time=120)
    source = _pairs(tmp_path / "pairs.csv", 1, 1)
    flags = () if journal else ("--no-journal",)
    process = await start_cli("batch", str(source), *flags, *_FAST, env=api_env(vidgo_fake))
    try:
        await _until(lambda: vidgo_fake.accept_count["slow0"] == 1)
    finally:
        returned, err = await _interrupt(process, signal.SIGINT)
    assert returned == 130, err
    assert ("left for a re-run" in err) == journal, err
    assert ("interrupted: not finished" in err) == (not journal), err


@pytest.mark.parametrize("command", ["batch", "wav"])
async def test_a_stop_without_a_journal_names_each_task_paid_for(
    vidgo_fake: FakeVidgo, tmp_path: Path, command: str
) -> None:
    """`--no-journal` and SIGINT while accepted conversions run: stderr names each task
    paid for (its WAV URL comes with it: `vidgo-async status ID`); nothing else keeps
    them, the API lists no tasks, and a re-run's submits meet only 409s."""
    for i in range(3):
        vidgo_fake.set_duration(f"slow{i}", run_time=120)
    if command == "batch":
        args: tuple[str, ...] = ("batch", str(_pairs(tmp_path / "pairs.csv", 0, 3)))
    else:
        args = ("wav", "m", "slow0")
    process = await start_cli(*args, "--no-journal", *_FAST, env=api_env(vidgo_fake))
    wanted = 3 if command == "batch" else 1
    try:
        await _until(lambda: sum(vidgo_fake.accept_count.values()) == wanted)
    finally:
        returned, err = await _interrupt(process, signal.SIGINT)
    assert returned == 130, err
    tasks = [ids[0] for ids in vidgo_fake.accepted.values()]
    assert len(tasks) == wanted and all(task in err for task in tasks), err


async def _on_a_terminal(
    *args: str,
    env: dict[str, str],
    stop_when: Path | None = None,
    stdout: int | Out = Out.NOWHERE,
    columns: int = 160,
) -> str:
    """Run the CLI with stderr on a pty of ``columns``; what the terminal got, without
    ANSI codes.

    With ``stop_when``, SIGTERM is sent once that file has a line; ``stdout`` is where
    its standard output goes (a file descriptor, or an :class:`Out`).
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, columns, 0, 0))
    where = {Out.NOWHERE: asyncio.subprocess.DEVNULL, Out.TERMINAL: slave, Out.CLOSED: None}
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "vidgo_async", *args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=where[stdout] if isinstance(stdout, Out) else stdout,
        stderr=slave,
        env=environ({**env, "TERM": "xterm-256color", "COLUMNS": str(columns)}),
        preexec_fn=(lambda: os.close(1)) if stdout is Out.CLOSED else None,
    )
    os.close(slave)
    reader = asyncio.create_task(asyncio.to_thread(_read_all, master))
    try:
        if stop_when is not None:
            await _until(lambda: bool(_lines(stop_when)))
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), COMMAND_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        text = await reader  # ends once the child (the pty's last writer) is gone
        os.close(master)
    return _ANSI.sub("", text).replace("\r\n", "\n")


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


async def test_live_bar_counts_skipped_rows_like_the_lines_above_it(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """On a terminal the bar ends at rows/rows, its counts below it with the skipped rows
    it reported above it."""
    source = _pairs(tmp_path / "pairs.csv", 3, 0, bad="m,\nm,x,y\n")
    screen = await _on_a_terminal("batch", str(source), *_FAST, env=api_env(vidgo_fake))
    assert "line 5: skipped" in screen and "line 6: skipped" in screen
    counts = re.split(r"[\r\n]+", screen[screen.rindex("converting") :])[1]
    assert counts == "5/5 rows: 3 ok, 0 failed, 2 skipped, 0 in flight", screen


async def test_interrupted_bar_line_is_finished(vidgo_fake: FakeVidgo, tmp_path: Path) -> None:
    """SIGTERM on a terminal: the bar's lines are ended before the summary and the message."""
    vidgo_fake.set_duration("slow0", run_time=120)
    source = _pairs(tmp_path / "pairs.csv", 1, 1)
    output = tmp_path / "out.jsonl"
    args = ("batch", str(source), "--output", str(output), *_FAST)
    screen = await _on_a_terminal(*args, env=api_env(vidgo_fake), stop_when=output)
    assert "\nvidgo-async: interrupted by SIGTERM" in screen, screen
    _, counts, after = screen[screen.rindex("converting") :].split("\n", 2)
    assert counts.startswith("1/2 rows: 1 ok,") and after, screen


@pytest.mark.parametrize("flag", ["--json", ""], ids=["json", "text"])
async def test_results_reach_stdout_while_the_live_bar_is_on_a_terminal(
    vidgo_fake: FakeVidgo, tmp_path: Path, flag: str
) -> None:
    """`batch ... --json > results.jsonl` at a terminal: the results go to the file, not
    to the terminal above the bar (the bar's stdout redirect sent them there)."""
    source = _pairs(tmp_path / "pairs.csv", 3, 0)
    results = tmp_path / "results.txt"
    flags = (flag,) if flag else ()
    with results.open("wb") as out:
        screen = await _on_a_terminal(
            "batch", str(source), *flags, *_FAST, env=api_env(vidgo_fake), stdout=out.fileno()
        )
    lines = results.read_text().splitlines()
    assert len(lines) == 3, (lines, screen)
    if flag == "--json":
        assert all(json.loads(line)["ok"] for line in lines)
    else:
        assert all(line.split("\t")[:2] == ["ok", "m"] for line in lines)
    assert "fast0" not in screen, screen


@pytest.mark.parametrize("source", ["stdin", "fifo"])
async def test_a_quiet_input_pipe_holds_up_neither_the_pairs_read_nor_a_signal(
    vidgo_fake: FakeVidgo, tmp_path: Path, source: str
) -> None:
    """`producer | vidgo-async batch -` (or a named pipe): a pair read is converted and
    printed while the producer is quiet, and SIGTERM stops the command at once; the
    input was read on the event loop, which waited for the next line to do either."""
    output = tmp_path / "out.jsonl"
    fifo = tmp_path / "pairs.fifo"
    if source == "fifo":
        os.mkfifo(fifo)
    name = "-" if source == "stdin" else str(fifo)
    args = ("batch", name, "--no-journal", "--output", str(output), *_FAST)
    process = await start_cli(*args, env=api_env(vidgo_fake), stdin=asyncio.subprocess.PIPE)
    writer = None
    try:
        if source == "stdin":
            assert process.stdin is not None
            process.stdin.write(b"task_id,audio_id\nm,a1\n")
            await process.stdin.drain()  # and stays open, quiet
        else:
            writer = await asyncio.to_thread(os.open, fifo, os.O_WRONLY)  # once it reads
            os.write(writer, b"task_id,audio_id\nm,a1\n")
        await _until(lambda: len(_lines(output)) == 1, timeout=10)
        started = time.monotonic()
        returned, err = await _interrupt(process, signal.SIGTERM)
        assert returned == 143, err
        assert time.monotonic() - started < 5, err
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if writer is not None:
            os.close(writer)
    assert json.loads(_lines(output)[0])["ok"]


@pytest.mark.parametrize("flag", ["--json", ""], ids=["json", "text"])
async def test_a_result_line_on_a_narrow_terminal_is_never_cut_by_a_newline(
    vidgo_fake: FakeVidgo, tmp_path: Path, flag: str
) -> None:
    """stdout and stderr on one 40-column terminal: each result line (its WAV URL
    with it) reaches the terminal whole, wrapped by the terminal alone; the bar's
    console broke it with newlines, and a URL copied from the screen was broken."""
    source = _pairs(tmp_path / "pairs.csv", 2, 0)
    flags = (flag,) if flag else ()
    args = ("batch", str(source), *flags, *_FAST)
    screen = await _on_a_terminal(*args, env=api_env(vidgo_fake), stdout=Out.TERMINAL, columns=40)
    urls = re.findall(r"http://127\.0\.0\.1:\d+/files/[\w-]+\.wav", screen)
    assert len(set(urls)) == 2, screen


async def test_a_closed_stdout_under_the_live_bar_is_no_crash(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """`batch pairs.csv >&-` at a terminal: the batch runs (its results go nowhere, the
    journal keeps them); asking a closed stdout whether it was a terminal was an
    internal error before any pair."""
    source = _pairs(tmp_path / "pairs.csv", 2, 0)
    args = ("batch", str(source), "--journal", str(tmp_path / "j.sqlite"), *_FAST)
    screen = await _on_a_terminal(*args, env=api_env(vidgo_fake), stdout=Out.CLOSED)
    assert "internal error" not in screen and "2 ok" in screen, screen
    assert vidgo_fake.request_count("submit") == 2


async def test_a_refused_account_ends_a_batch_whose_input_pipe_is_quiet(
    vidgo_fake: FakeVidgo, tmp_path: Path
) -> None:
    """`producer | batch -` out of credits while the producer is quiet: the pairs under
    way end and the command exits 3 at once; it waited for the pipe's next line."""
    vidgo_fake.credits = 2
    for i in range(6):
        vidgo_fake.set_duration(f"a{i}", run_time=0.5)
    args = ("batch", "-", "--no-journal", "--concurrency", "8", *_FAST)
    process = await start_cli(*args, env=api_env(vidgo_fake), stdin=asyncio.subprocess.PIPE)
    assert process.stdin is not None
    try:
        process.stdin.write(b"task_id,audio_id\n" + b"".join(b"m,a%d\n" % i for i in range(6)))
        await process.stdin.drain()  # and stays open, quiet
        out, err = await asyncio.wait_for(process.communicate(), 15)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 3, err
    assert len(out.decode().splitlines()) == 2  # the two paid URLs
