"""The live bar as a user sees it: ``vidgo-async batch`` in a real terminal (tmux).

A pty test reads the bytes the command wrote; here tmux interprets them (the
cursor moves and line erasures of the redrawn bar, the ^C the terminal echoes)
and each test reads the screen it leaves, scrolled-off lines included and
lines the terminal wrapped joined back. tmux is needed: the tests skip without
it, unless ``$VIDGO_REQUIRE_TMUX`` is set (CI installs it).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest
import pytest_asyncio
from cli_support import COMMAND_TIMEOUT, api_env, environ

from vidgo_async.testing import FakeVidgo

pytestmark = pytest.mark.asyncio

_FAST = ("--max-polls-per-second", "500")
_URL = re.compile(r"http://127\.0\.0\.1:\d+/files/[\w-]+\.wav")


class Terminal:
    """One tmux server of the test's own, running one command in a window of a given size."""

    def __init__(self, tmp_path: Path) -> None:
        self.socket = f"vidgo-test-{uuid.uuid4().hex[:12]}"
        self.config = tmp_path / "tmux.conf"
        # The window stays when the command ends, for its screen to be read.
        self.config.write_text("set -g remain-on-exit on\nset -g history-limit 10000\n")

    async def tmux(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        process = await asyncio.create_subprocess_exec(
            "tmux",
            "-L",
            self.socket,
            "-f",
            str(self.config),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 0, err.decode()
        return out.decode()

    async def run(self, *args: str, env: Mapping[str, str], columns: int = 80) -> None:
        """Start ``vidgo-async ARGS`` on a ``columns`` x 24 terminal, in this directory."""
        command = shlex.join([sys.executable, "-m", "vidgo_async", *args])
        # The server's environment is the first command's: the API's, and no COLUMNS or
        # LINES that would override the terminal's own size.
        sized = {k: v for k, v in environ(env).items() if k not in ("COLUMNS", "LINES")}
        await self.tmux(
            "new-session",
            "-d",
            "-x",
            str(columns),
            "-y",
            "24",
            "-c",
            os.getcwd(),
            f"exec {command}",
            env=sized,
        )

    async def state(self, name: str) -> str:
        return (await self.tmux("display-message", "-p", f"#{{{name}}}")).strip()

    async def until(self, condition: Callable[[str], bool]) -> str:
        """The screen, once ``condition`` holds for it."""
        async with asyncio.timeout(COMMAND_TIMEOUT):
            while not condition(screen := await self.screen()):  # noqa: ASYNC110 - a screen is no event
                await asyncio.sleep(0.1)
        return screen

    async def ended(self) -> str:
        """The command's last screen, once it ended (its exit status is other tests' job:
        tmux 3.3 does not always know it)."""
        async with asyncio.timeout(COMMAND_TIMEOUT):
            while await self.state("pane_dead") != "1":  # noqa: ASYNC110 - nor is tmux's state
                await asyncio.sleep(0.1)
        return await self.screen()

    async def screen(self) -> str:
        """The whole history and screen, wrapped lines joined, without tmux's own line."""
        text = await self.tmux("capture-pane", "-p", "-J", "-S", "-", "-E", "-")
        lines = [line.rstrip() for line in text.splitlines()]
        return "\n".join(line for line in lines if not line.startswith("Pane is dead")).strip()


@pytest_asyncio.fixture
async def terminal(tmp_path: Path) -> AsyncIterator[Terminal]:
    if shutil.which("tmux") is None:
        if os.environ.get("VIDGO_REQUIRE_TMUX"):
            pytest.fail("tmux is required here ($VIDGO_REQUIRE_TMUX)")
        pytest.skip("tmux is not installed")
    terminal = Terminal(tmp_path)
    try:
        yield terminal
    finally:
        kill = await asyncio.create_subprocess_exec(
            "tmux", "-L", terminal.socket, "kill-server", stderr=asyncio.subprocess.DEVNULL
        )
        await kill.wait()


def _pairs(path: Path, names: list[str], *, bad: str = "") -> Path:
    path.write_text("task_id,audio_id\n" + "".join(f"m,{name}\n" for name in names) + bad)
    return path


def _bars(screen: str) -> list[int]:
    """The indexes of the screen's lines that are the bar's."""
    return [i for i, line in enumerate(screen.splitlines()) if line.startswith("converting ")]


async def test_the_bar_and_its_counts_fit_an_80_column_terminal(
    vidgo_fake: FakeVidgo, tmp_path: Path, terminal: Terminal
) -> None:
    """At 80 columns the bar's last state is on screen whole: rows/rows, then the counts,
    once, below every result line (each URL whole). On one line they needed about 110
    columns, and rich cut them to fit: the count read ``14/…``."""
    source = _pairs(tmp_path / "pairs.csv", [f"a{i}" for i in range(12)], bad="m,\nm,x,y\n")
    await terminal.run("batch", str(source), "--no-journal", *_FAST, env=api_env(vidgo_fake))
    screen = await terminal.ended()
    lines = screen.splitlines()
    [bar] = _bars(screen)
    assert lines[bar + 1] == "14/14 rows: 12 ok, 0 failed, 2 skipped, 0 in flight", screen
    assert "…" not in screen
    results = [line for line in lines[:bar] if line.startswith("ok\t") or line.startswith("ok ")]
    assert len(results) == 12 and all(_URL.search(line) for line in results), screen


async def test_ctrl_c_at_the_terminal_leaves_one_bar_then_the_summary(
    vidgo_fake: FakeVidgo, tmp_path: Path, terminal: Terminal
) -> None:
    """Ctrl-C typed at the terminal (which echoes ^C): the screen shows the bar's last
    state once, then the summary and the message; no stale copy of the bar is left above."""
    vidgo_fake.set_duration("slow", run_time=120)
    source = _pairs(tmp_path / "pairs.csv", ["fast", "slow"])
    await terminal.run("batch", str(source), *_FAST, env=api_env(vidgo_fake))
    await terminal.until(lambda screen: "1 ok, 0 failed, 1 in flight" in screen)
    await terminal.tmux("send-keys", "C-c")
    screen = await terminal.ended()
    lines = screen.splitlines()
    [bar] = _bars(screen)
    assert lines[bar + 1].startswith("1/2 rows: 1 ok,"), screen
    assert lines[-1] == "vidgo-async: interrupted by SIGINT", screen
    assert screen.index("vidgo-async batch") > screen.index(lines[bar + 1]), screen


async def test_a_narrow_terminal_shows_each_url_whole(
    vidgo_fake: FakeVidgo, tmp_path: Path, terminal: Terminal
) -> None:
    """At 40 columns the terminal wraps each result line, never cut by the bar's console
    with a newline: joined back, every URL is whole."""
    source = _pairs(tmp_path / "pairs.csv", ["a1", "a2", "a3"])
    await terminal.run(
        "batch", str(source), "--no-journal", *_FAST, env=api_env(vidgo_fake), columns=40
    )
    screen = await terminal.ended()
    assert len(set(_URL.findall(screen))) == 3, screen
    assert len(_bars(screen)) == 1, screen


async def test_a_50_column_terminal_still_shows_the_rows_done_out_of_all(
    vidgo_fake: FakeVidgo, tmp_path: Path, terminal: Terminal
) -> None:
    """At 50 columns the counts line, rows done out of all first, is whole: the bar's
    line held the count, which rich cut to ``3/…`` (the bar narrows to fit too)."""
    source = _pairs(tmp_path / "pairs.csv", ["a1", "a2", "a3"])
    await terminal.run(
        "batch", str(source), "--no-journal", *_FAST, env=api_env(vidgo_fake), columns=50
    )
    screen = await terminal.ended()
    lines = screen.splitlines()
    [bar] = _bars(screen)
    assert lines[bar + 1] == "3/3 rows: 3 ok, 0 failed, 0 in flight", screen
    assert "…" not in lines[bar] + lines[bar + 1], screen
