"""Running the real ``vidgo-async`` command (``python -m vidgo_async``) in a subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping

import attrs

from vidgo_async.testing import FakeVidgo

#: Seconds any one command may take before its test fails.
COMMAND_TIMEOUT = 60.0


@attrs.frozen
class Ran:
    """A finished command: exit status, stdout and stderr (decoded)."""

    code: int
    out: str
    err: str


def environ(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``VIDGO_*``, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDGO_")}
    env.update(extra or {})
    return env


def api_env(fake: FakeVidgo, **extra: str) -> dict[str, str]:
    """``VIDGO_API_KEY`` and ``VIDGO_BASE_URL`` pointing at ``fake``."""
    return {"VIDGO_API_KEY": fake.api_key, "VIDGO_BASE_URL": fake.url, **extra}


async def start_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    python: tuple[str, ...] = (),
    stdin: int | None = None,
) -> asyncio.subprocess.Process:
    """Start ``vidgo-async ARGS`` with piped stdout and stderr."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        *python,
        "-m",
        "vidgo_async",
        *args,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ(env),
    )


async def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    python: tuple[str, ...] = (),
    input: bytes | None = None,
) -> Ran:
    """Run ``vidgo-async ARGS`` to its end (bounded by :data:`COMMAND_TIMEOUT`)."""
    process = await start_cli(
        *args, env=env, python=python, stdin=None if input is None else asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(input), COMMAND_TIMEOUT)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def one_line(text: str) -> bool:
    """Whether ``text`` is one line of error, without a traceback."""
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text
