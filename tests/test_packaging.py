"""What the installed distribution declares: one version, the licence, the links, a quiet logger."""

from __future__ import annotations

import importlib.metadata
import logging
import sys
from pathlib import Path

import vidgo_async

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)["project"]  # type: ignore[no-any-return]


def test_version_comes_from_pyproject() -> None:
    """``__version__`` is the installed distribution's version, which is pyproject's."""
    assert vidgo_async.__version__ == importlib.metadata.version("vidgo-async")
    assert vidgo_async.__version__ == _pyproject()["version"]


def test_distribution_declares_the_mit_licence_and_ships_its_text() -> None:
    """The metadata names the MIT licence and the LICENSE file that goes with it."""
    distribution = importlib.metadata.distribution("vidgo-async")
    assert distribution.metadata["License-Expression"] == "MIT"
    assert distribution.metadata.get_all("License-File") == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert licence.startswith("MIT License\n\nCopyright (c) 2026 vidgo-async developers\n")


def test_distribution_links_home_docs_changelog_and_issues() -> None:
    """Project-URL entries point at the repository."""
    urls = importlib.metadata.metadata("vidgo-async").get_all("Project-URL") or []
    labels = {url.partition(", ")[0] for url in urls}
    assert labels == {"Homepage", "Documentation", "Changelog", "Issues"}
    assert all(", https://github.com/vidgo-async/vidgo-async" in url for url in urls)


def test_the_library_logger_has_a_null_handler() -> None:
    """Importing the package gives its logger a NullHandler, and configures nothing else."""
    handlers = logging.getLogger("vidgo_async").handlers
    assert [type(handler) for handler in handlers] == [logging.NullHandler]
