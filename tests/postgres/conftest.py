"""A real PostgreSQL server for the shared-quota tests, started once per session.

``pg_server.TemporaryPostgres``: ``initdb`` into a temporary directory and
``pg_ctl start`` on a free port of 127.0.0.1, as a user other than root;
stopped and removed at the end. ``$VIDGO_TEST_POSTGRES_DSN`` points the
tests at a server of your own instead. Where no server can be started (no
binaries; root and no other user) the tests skip, saying why - unless
``$VIDGO_REQUIRE_POSTGRES`` is set (CI), which makes that a failure.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from pg_server import TemporaryPostgres, Unavailable


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The DSN of a running PostgreSQL server (ours, or ``$VIDGO_TEST_POSTGRES_DSN``)."""
    external = os.environ.get("VIDGO_TEST_POSTGRES_DSN")
    if external:
        yield external
        return
    try:
        server = TemporaryPostgres()
    except Unavailable as exc:
        if os.environ.get("VIDGO_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required here ($VIDGO_REQUIRE_POSTGRES): {exc}")
        pytest.skip(str(exc))
    try:
        dsn = server.start()
    except (subprocess.SubprocessError, OSError) as exc:
        stderr = getattr(exc, "stderr", None) or b""
        server.stop()
        pytest.fail(
            f"PostgreSQL did not start ({exc}):\n{stderr.decode(errors='replace')}\n"
            f"{server.log_tail()}"
        )
    try:
        yield dsn
    finally:
        server.stop()


@pytest.fixture
def namespace() -> str:
    """A namespace of this test's own: tests never share a quota by accident."""
    return f"test-{uuid.uuid4().hex[:12]}"
