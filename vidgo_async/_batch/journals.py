"""Which journal a batch uses, opened as the run sees it (:class:`BatchJournal`).

``convert_many(journal=...)`` takes a SQLite file (``journal.Journal``, one
batch at a time, one process: every claim succeeds), or a ``postgresql://``
DSN or a :class:`JournalSource` (``vidgo_async.postgres.SharedJournal``): the
PostgreSQL journal of ``vidgo_async._postgres.journal``, imported only then,
where workers on several hosts share one batch, each pair claimed by one of
them under a lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import time

from yarl import URL

from .._validate import is_loopback
from ..errors import ConfigurationError
from .intake import Key
from .journal import (
    BatchJournal,
    Claim,
    Entry,
    Journal,
    JournalSource,
    JournalWriteError,
)

try:
    import fcntl
except ImportError:  # Windows: one batch per SQLite journal is not enforced
    fcntl = None  # type: ignore[assignment]

__all__ = ["SqliteJournal", "checked_journal", "open_journal"]

logger = logging.getLogger("vidgo_async")

# The SQLite journals' lock files this process holds, by (device, inode), and whether
# the batch holding each is ending. Process-wide by nature: flock is per process.
_HELD: dict[tuple[int, int], bool] = {}
_NOTICE = 0.5  # seconds a batch of this process holding the journal has to start ending


class SqliteJournal:
    """The SQLite journal behind the async calls; its writes stay synchronous.

    One batch at a time uses a SQLite journal: two would each submit every pair,
    and one could overwrite the rows the other finished. :meth:`open` takes an
    exclusive ``flock`` on ``<journal>.lock``, held until :meth:`close` (the
    operating system drops it if the process dies). Never on the database file
    itself: closing any descriptor of a file drops the ``fcntl`` locks SQLite
    holds on it, and readers of the journal must not be held back.
    """

    def __init__(self, journal: Journal, lock: int | None) -> None:
        self.journal = journal
        self._lock = lock

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, wait: float = 0.0) -> SqliteJournal:
        """The journal at ``path``, once no other batch uses it: a batch of this process
        that is ending (a loop left with ``break``) is waited for, ``wait`` seconds.

        Raises:
            ConfigurationError: Another batch uses it, or it cannot be used.
        """
        lock = await _lock(path, wait)
        try:
            return cls(Journal(path), lock)
        except BaseException:
            _unlock(lock)
            raise

    async def claim(self, source_task_id: str, audio_id: str) -> Claim:
        """Always this process's: one process per SQLite journal."""
        try:
            return True, self.journal.get(source_task_id, audio_id)
        except (sqlite3.Error, OSError) as exc:
            raise JournalWriteError(str(exc)) from exc

    recheck_every = 0.0

    async def recheck(self, keys: list[Key]) -> tuple[list[Key], list[Key]]:
        """Every pair is free: no other process holds any."""
        return keys, []

    async def record(self, source_task_id: str, audio_id: str, entry: Entry) -> None:
        """Write the pair's new row (committed before this returns)."""
        try:
            self.journal.record(source_task_id, audio_id, entry)
        except (sqlite3.Error, OSError) as exc:
            raise JournalWriteError(str(exc)) from exc

    async def hold(self, source_task_id: str, audio_id: str, *, reported: bool = False) -> None:
        """Nothing to confirm: one process per SQLite journal."""

    async def bind(self, api: str) -> str | None:
        """See :meth:`BatchJournal.bind`."""
        return self.journal.bind(api)

    async def learned(self) -> dict[str, list[tuple[float, float]]]:
        """The task durations an earlier run learned, per model."""
        return self.journal.learned()

    async def keep_learned(self, model: str, observations: list[tuple[float, float]]) -> None:
        """Save what was learned of ``model``'s durations."""
        self.journal.keep_learned(model, observations)

    def ending(self) -> None:
        """Tell a batch of this process waiting for the journal that it is coming free."""
        if self._lock is not None:
            _HELD[_identity(self._lock)] = True

    async def close(self) -> None:
        """Close the database, and let another batch use it."""
        try:
            self.journal.close()
        finally:
            _unlock(self._lock)
            self._lock = None


async def _lock(path: str | os.PathLike[str], wait: float) -> int | None:
    """The descriptor of the journal's lock file under an exclusive ``flock``; None
    where there is no ``flock`` (Windows), for an in-memory journal, or when the lock
    file cannot be opened (a read-only folder: the batch goes on unguarded, as before).

    Raises:
        ConfigurationError: Another batch holds it: another process's, or one of this
            process that is not ending (or still is after ``wait`` seconds).
    """
    name = os.fspath(path)
    if fcntl is None or name == ":memory:":
        return None
    try:
        fd = _open_lock_file(name)
    except OSError as exc:
        logger.warning("no lock file beside the journal %r (%s): not guarded", name, exc)
        return None
    started = time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            ending = _HELD.get(_identity(fd))
            # A batch left with ``break`` starts ending on the loop's next turns.
            waited = time.monotonic() - started
            if (ending and waited < wait) or (ending is False and waited < _NOTICE):
                await asyncio.sleep(0.05)
                continue
            os.close(fd)
            # A batch of this program: the Python user's own loop, left early.
            here = (
                " of this program (a loop left early frees it sooner under contextlib.aclosing)"
                if ending is not None
                else ""
            )
            raise ConfigurationError(
                f"the journal {name!r} is in use by another batch{here}: one batch at a"
                " time per SQLite journal (workers on several hosts share a postgresql:// one)"
            ) from None
        except OSError as exc:  # no flock on this file system
            logger.warning("cannot lock the journal %r (%s): not guarded", name, exc)
            os.close(fd)
            return None
        _HELD[_identity(fd)] = False
        return fd


def _open_lock_file(name: str) -> int:
    """``<journal>.lock`` beside the file the journal's path leads to (a symlink's target:
    one lock however it is reached), made writable for whoever the umask allows."""
    lock = os.path.realpath(name) + ".lock"
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # another user's lock file: flock needs only to open it
        return os.open(lock, os.O_RDONLY)


def _unlock(fd: int | None) -> None:
    if fd is not None:
        _HELD.pop(_identity(fd), None)
        os.close(fd)  # drops the flock


def _identity(fd: int) -> tuple[int, int]:
    """The lock file behind ``fd``, however its path was spelled."""
    stat = os.fstat(fd)
    return stat.st_dev, stat.st_ino


def is_postgres(journal: object) -> bool:
    """Whether ``journal`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(journal, str) and journal.startswith(("postgresql://", "postgres://"))


# libpq's key=value form of a connection string
_KEYWORDS = re.compile(r"(?:^|\s)(?:host|hostaddr|port|dbname|user|password|sslmode)\s*=")


def is_other_dsn(journal: object) -> bool:
    """Whether ``journal`` is a connection string in a form ``convert_many`` does not
    take (``postgresql+asyncpg://``, a misspelt scheme, libpq's ``key=value``): never
    a file name, and never repeated, as it may hold a password."""
    if not isinstance(journal, str) or is_postgres(journal):
        return False
    return "://" in journal or _KEYWORDS.search(journal) is not None


def checked_journal(
    journal: str | os.PathLike[str] | JournalSource | None,
) -> str | os.PathLike[str] | JournalSource | None:
    """``convert_many``'s ``journal``, checked before any request: a SQLite file this
    version can use, or a source of another journal (a ``postgresql://`` DSN becomes
    ``SharedJournal(dsn)``, connected when the batch starts).

    Raises:
        ConfigurationError: It cannot be used, the ``postgres`` extra is missing for a
            DSN, or it is a connection string of another form (never repeated: it may
            hold a password).
    """
    if is_postgres(journal):
        try:
            from ..postgres import SharedJournal  # the extra's module: only for such a journal
        except ImportError as exc:
            raise ConfigurationError(
                "a PostgreSQL journal needs the postgres extra: pip install 'vidgo-async[postgres]'"
            ) from exc
        return SharedJournal(str(journal))
    if is_other_dsn(journal):
        raise ConfigurationError(
            "journal: a connection string must be a postgresql:// (or postgres://) URL;"
            " yours is not repeated here, as it may hold a password"
        )
    if journal is not None and not isinstance(journal, JournalSource):
        Journal(journal).close()  # raises now what opening it at the start would raise
    return journal


async def open_journal(
    journal: str | os.PathLike[str] | JournalSource, *, wait: float, api: URL
) -> BatchJournal:
    """Open the journal ``journal`` names: a SQLite file (waiting up to ``wait`` seconds
    for an ending batch of this process to let go of it), or a source of another; tied
    to the host of ``api`` (every server on this machine counts as one).

    Raises:
        ConfigurationError: It cannot be used, or it is tied to another API host (its
            finished pairs would be reported, and its tasks waited on, without a
            request to this one).
    """
    if isinstance(journal, JournalSource):
        opened = await journal.open_batch_journal()
    else:
        opened = await SqliteJournal.open(journal, wait=wait)
    host = "a server on this machine" if is_loopback(api) else api.host or ""
    try:
        bound = await opened.bind(host)
        if bound is not None:
            raise ConfigurationError(
                f"the journal holds the conversions of the API at {bound}, not {host}:"
                " give this one a journal of its own"
            )
    except BaseException as exc:
        await opened.close()
        if isinstance(exc, JournalWriteError):
            raise ConfigurationError(f"cannot use the journal: {exc}") from None
        raise
    return opened
