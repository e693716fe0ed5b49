"""Every Python snippet of the README runs as written, against the built-in fake server.

A snippet that defines tests runs under pytest; any other runs as a script. Each
runs in a subprocess, in a temporary directory, with ``VIDGO_API_KEY`` and
``VIDGO_BASE_URL`` pointing at a fake (and ``VIDGO_POSTGRES_DSN`` at the session's
PostgreSQL server and ``VIDGO_CALLBACK_SECRET`` at a secret, for a snippet that reads
them). A snippet may be skipped only by an HTML comment right before it:
``<!-- readme-test: skip (why) -->``.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from vidgo_async.testing import FakeVidgo

README = Path(__file__).resolve().parent.parent / "README.md"

# Long enough for the default poll policy (a first check after 1 s) and a pytest start-up.
SNIPPET_TIMEOUT = 60.0

_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
_SKIP = re.compile(r"<!-- readme-test: skip \((.+?)\) -->\s*$")

PYTEST_INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""


def _snippets() -> list[object]:
    """The README's Python blocks, named by their section and line, with their skip marks."""
    text = README.read_text(encoding="utf-8")
    params: list[object] = []
    for match in _BLOCK.finditer(text):
        before = text[: match.start()]
        line = before.count("\n") + 1
        section = re.findall(r"^## (.+)$", before, re.MULTILINE) or ["top"]
        name = re.sub(r"\W+", "-", section[-1].split(":")[0]).strip("-").lower()
        skip = _SKIP.search(before.rstrip("\n").rsplit("\n", 1)[-1])
        marks = [pytest.mark.skip(reason=f"README: {skip.group(1)}")] if skip else []
        params.append(pytest.param(match.group(1), id=f"{name}-line-{line}", marks=marks))
    return params


SNIPPETS = _snippets()


async def _run(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), SNIPPET_TIMEOUT)
    except asyncio.TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"the snippet ran longer than {SNIPPET_TIMEOUT} s")
    return process.returncode or 0, output.decode(errors="replace")


def test_readme_has_snippets_and_few_skips() -> None:
    """The README shows Python, and nearly all of it runs here."""
    skipped = [p for p in SNIPPETS if p.marks]  # type: ignore[attr-defined]
    assert len(SNIPPETS) >= 6
    assert len(skipped) <= 1


def test_readme_keeps_the_ci_test_command() -> None:
    """CI runs the README's test command, in a venv of its own beside the demo's."""
    text = README.read_text(encoding="utf-8")
    assert "&& coverage run -m pytest && coverage report\n" in text
    assert "python3 -m venv .venv-test" in text and "python3 -m venv .venv-demo" in text


@pytest.mark.asyncio
@pytest.mark.parametrize("source", SNIPPETS)
async def test_snippet_runs_against_the_fake(
    source: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The snippet exits 0 (a test snippet: its tests pass) against a fresh fake server."""
    async with FakeVidgo() as fake:
        env = {**os.environ, "VIDGO_API_KEY": fake.api_key, "VIDGO_BASE_URL": fake.url}
        if "VIDGO_POSTGRES_DSN" in source:
            env["VIDGO_POSTGRES_DSN"] = request.getfixturevalue("postgres_dsn")
            env["VIDGO_CALLBACK_SECRET"] = "a-secret-of-the-readme-s-own-32-bytes"
        env.pop("PYTEST_ADDOPTS", None)
        if re.search(r"^(async )?def test_", source, re.MULTILINE):
            (tmp_path / "pytest.ini").write_text(PYTEST_INI, encoding="utf-8")
            (tmp_path / "test_snippet.py").write_text(source, encoding="utf-8")
            args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
            code, output = await _run(args, tmp_path, env)
            assert code == 0 and " passed" in output, output
        else:
            (tmp_path / "snippet.py").write_text(source, encoding="utf-8")
            code, output = await _run([sys.executable, "-W", "error", "snippet.py"], tmp_path, env)
            assert code == 0, output
