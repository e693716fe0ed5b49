"""Fixtures of the CLI tests: every command runs in the test's own directory."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every command in ``tmp_path``: the default journal is written there."""
    monkeypatch.chdir(tmp_path)
