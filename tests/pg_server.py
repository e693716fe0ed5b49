"""A throw-away PostgreSQL server on 127.0.0.1: ``initdb`` into a temporary directory,
``pg_ctl start`` on a free port, stopped and removed on exit.

PostgreSQL refuses to run as root: as root, the server runs as
``$VIDGO_TEST_PG_USER``, else ``postgres``, else ``nobody``. The binaries are
looked up in ``$VIDGO_TEST_PG_BIN``, on ``$PATH``, then in Debian's
``/usr/lib/postgresql/*/bin``. Used by the tests' ``postgres_dsn`` fixture
(``conftest.py``) and by ``benchmarks/shared_quota.py``.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

__all__ = ["TemporaryPostgres", "Unavailable", "database"]

_USERS = ("postgres", "nobody")
_START_TIMEOUT = 60


class Unavailable(Exception):
    """No server can be started on this machine (the message says why)."""


def bin_dir() -> Path:
    """A directory holding initdb and pg_ctl.

    Raises:
        Unavailable: There is none.
    """
    found = shutil.which("initdb")
    candidates = [
        os.environ.get("VIDGO_TEST_PG_BIN", ""),
        os.path.dirname(found) if found else "",
        *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True),
    ]
    for candidate in filter(None, candidates):
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    raise Unavailable(
        "no PostgreSQL binaries (initdb, pg_ctl) found: install PostgreSQL "
        "(apt-get install postgresql), or set $VIDGO_TEST_PG_BIN or $VIDGO_TEST_POSTGRES_DSN"
    )


def server_user() -> pwd.struct_passwd:
    """Who runs the server: ourselves, or (as root) a user that is not root.

    Raises:
        Unavailable: Running as root, and no such user exists.
    """
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    wanted = os.environ.get("VIDGO_TEST_PG_USER")
    for name in [wanted] if wanted else _USERS:
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise Unavailable("running as root, and no user to run PostgreSQL as (postgres, nobody)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class TemporaryPostgres:
    """One cluster in a temporary directory; ``with TemporaryPostgres() as dsn: ...``.

    Raises (on entry):
        Unavailable: No binaries, or no user to run them as.
        subprocess.SubprocessError: initdb or pg_ctl failed (see :meth:`log_tail`).
    """

    def __init__(self) -> None:
        self.bin_dir = bin_dir()
        self.user = server_user()
        self.root = Path(tempfile.mkdtemp(prefix="vidgo-pg-"))
        os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()

    def __enter__(self) -> str:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> str:
        """Create the cluster and start the server; its DSN (user ``vidgo``, trusted)."""
        self._run("initdb", "-D", str(self.data), "-U", "vidgo", "--auth=trust", "-E", "UTF8")
        self._start()
        return f"postgresql://vidgo@127.0.0.1:{self.port}/postgres"

    def restart(self, pause: float, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl -m mode``), wait ``pause`` seconds, start it again."""
        self.halt(mode)
        time.sleep(pause)
        self.resume()

    def halt(self, mode: str = "fast") -> None:
        """Stop the server (``pg_ctl -m mode``), keeping its data for :meth:`resume`."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def resume(self) -> None:
        """Start the server :meth:`halt` stopped."""
        self._start()

    def _start(self) -> None:
        # A scratch server: durability buys nothing here.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", str(_START_TIMEOUT), "-o", options, "start",
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the server if it runs, and remove everything."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self) -> str:
        """The end of the server's log, for a failure message."""
        try:
            return self.log.read_text()[-2000:]
        except OSError:
            return "(no server log)"

    def _run(self, program: str, *args: str) -> None:
        kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        subprocess.run(
            [str(self.bin_dir / program), *args],
            cwd=self.root,
            check=True,
            capture_output=True,
            timeout=_START_TIMEOUT + 10,
            **kwargs,
        )


@contextmanager
def database(dsn: str | None) -> Iterator[str]:
    """``dsn``, or (None) a throw-away server's for the duration of the ``with``."""
    if dsn:
        yield dsn
        return
    with TemporaryPostgres() as own:
        yield own


@asynccontextmanager
async def a_server_of_its_own() -> AsyncIterator[tuple[TemporaryPostgres, str]]:
    """A throw-away server for one test that stops or restarts it, and its DSN; the test
    skips where none can be started."""
    try:
        server = TemporaryPostgres()
    except Unavailable as exc:
        pytest.skip(str(exc))
    try:
        dsn = await asyncio.to_thread(server.start)
    except Exception as exc:  # pragma: no cover - an environment problem
        await asyncio.to_thread(server.stop)
        pytest.skip(f"cannot start a server of its own: {exc}")
    try:
        yield server, dsn
    finally:
        await asyncio.to_thread(server.stop)
