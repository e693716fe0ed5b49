"""The batch journal: every submit recorded in SQLite before and after its request.

A re-run with the same journal knows, for each ``(task_id, audio_id)`` pair,
whether it finished or failed (report it again), was accepted (wait on the
known task, never submit again), was being submitted when the process died
(its outcome is unknown: a resubmit may only settle it through the 409
rule), never reached the server, or was rejected for the pair with nothing
accepted (submit it again). A row naming a task is waited on unless the task
finished or the server said it failed (:func:`~.verdicts.task_to_wait_on`).

It also keeps what the client learned of how long tasks take (a bounded
summary per model), so that a re-run polls from what the last run learned.

Writes are committed one by one in WAL mode, so a SIGKILL loses nothing
that was committed; SQLite calls are short enough to run on the event loop.

What a batch needs of any journal (:class:`BatchJournal`, its rows and its two
errors) is defined here too, where the PostgreSQL journal takes it from. A
worker that lost a claim (paused past its lease, another worker took the pair
over) learns it at its next write or :meth:`BatchJournal.hold`, which raise
:class:`LostClaim`: the batch then drops the pair, sending nothing more for it
and reporting nothing (the taker reports it).
"""

from __future__ import annotations

import enum
import logging
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

from .._converter import converter
from ..errors import (
    APIError,
    ConfigurationError,
    TaskFailedError,
)
from .durations import dump_durations, load_durations
from .intake import Key

__all__ = [
    "COLUMNS",
    "REPORTED",
    "SETTLED",
    "BatchJournal",
    "Claim",
    "Entry",
    "Journal",
    "JournalSource",
    "JournalWriteError",
    "LostClaim",
    "State",
    "entry_of",
]

logger = logging.getLogger("vidgo_async")


_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS conversions (
    source_task_id TEXT NOT NULL,
    audio_id       TEXT NOT NULL,
    state          TEXT NOT NULL,
    task_id        TEXT,
    wav_url        TEXT,
    path           TEXT,
    error_type     TEXT,
    error          TEXT,
    error_status   INTEGER,
    updated_at     REAL NOT NULL,
    PRIMARY KEY (source_task_id, audio_id)
)
""",
    # What was learned of task durations, per model (``_timing.learned``), as JSON.
    "CREATE TABLE IF NOT EXISTS learned (model TEXT PRIMARY KEY, summary TEXT)",
    # The API host the journal's tasks belong to (``Journal.bind``).
    "CREATE TABLE IF NOT EXISTS about (name TEXT PRIMARY KEY, value TEXT)",
)


class State(str, enum.Enum):
    """Where a pair stands in the journal."""

    SUBMITTING = "submitting"  # the request may be on the wire
    UNSENT = "unsent"  # the submit provably never reached the server
    ACCEPTED = "accepted"  # the server gave a task id
    FINISHED = "finished"  # the WAV URL is known
    FAILED = "failed"  # a definitive failure; reported again, never resubmitted
    UNKNOWN = "unknown"  # the submit may have been accepted; never resubmitted
    REJECTED = "rejected"  # 400, 404, 422: nothing accepted; submitted by a later run


@attrs.frozen(kw_only=True)
class Entry:
    """One pair's row."""

    state: State
    task_id: str | None = None
    wav_url: str | None = None
    path: str | None = None
    error_type: str | None = None
    error: str | None = None
    error_status: int | None = None

    @classmethod
    def written(
        cls,
        state: State,
        *,
        task_id: str | None = None,
        wav_url: str | None = None,
        path: str | os.PathLike[str] | None = None,
        error: BaseException | None = None,
    ) -> Entry:
        """The row a journal writes for a pair's new state (``error`` as its class
        name, message and HTTP status)."""
        message, status = None, None
        if isinstance(error, TaskFailedError):
            message = error.error_message
        elif isinstance(error, APIError):
            message, status = error.message, error.status
        elif error is not None:
            message = str(error)
        return cls(
            state=state,
            task_id=task_id,
            wav_url=wav_url,
            path=None if path is None else os.fspath(path),
            error_type=None if error is None else type(error).__name__,
            error=message,
            error_status=status,
        )


#: The columns of a pair's row, as :class:`Entry` names them.
COLUMNS = tuple(field.name for field in attrs.fields(Entry))


def entry_of(values: Iterable[object]) -> Entry:
    """The :class:`Entry` of a row's :data:`COLUMNS` values, in order, as either journal
    reads them.

    Raises:
        JournalWriteError: A value this version cannot read: a state unknown here, or
            one of another type (edited by hand; SQLite stores any).
    """
    try:
        entry: Entry = converter.structure(dict(zip(COLUMNS, values, strict=True)), Entry)
    except (ValueError, TypeError) as exc:
        raise JournalWriteError(f"its row is not one this version reads ({exc})") from None
    return entry


#: States a run leaves a pair in for good: no other worker takes it up in that run.
SETTLED = frozenset({State.FINISHED, State.FAILED, State.UNKNOWN, State.REJECTED})
#: ... of which a later run reports the pair from its row, never submitting it again.
#: (A rejected submit, nothing paid, is tried again: the cause may be gone.)
REPORTED = SETTLED - {State.REJECTED}


#: What a claim answers: whether this process holds the pair, and the pair's row.
Claim = tuple[bool, Entry | None]


class JournalWriteError(Exception):
    """A journal could not write a pair's row (a full disk, a locked file, a lost
    database connection): the batch logs it and goes on, the result stands, and a
    re-run polls the pair's task again. Never reaches a user."""


class LostClaim(Exception):
    """This worker no longer holds the pair: another worker took it over. Never reaches
    a user: the batch drops the pair (the other worker reports it)."""


class BatchJournal(Protocol):
    """What ``_Batch`` needs of a journal."""

    async def claim(self, source_task_id: str, audio_id: str) -> Claim:
        """Take the pair for this process (``False``: another worker holds it).

        Raises:
            JournalWriteError: The journal failed; the pair is left as it was.
        """

    @property
    def recheck_every(self) -> float:
        """Seconds between two looks at the pairs other workers held."""
        ...

    async def recheck(self, keys: list[Key]) -> tuple[list[Key], list[Key]]:
        """Of ``keys``, pairs another worker held when claimed: those unsettled and free
        now (their holder let go, or its lease ran out: claim them) and those unsettled
        and still held. The others are settled: their holder reports them."""
        ...

    async def record(self, source_task_id: str, audio_id: str, entry: Entry) -> None:
        """Write the pair's new row (:meth:`Entry.written`).

        Raises:
            LostClaim: Another worker holds the pair now; nothing was written.
            JournalWriteError: Nothing was written, for another reason.
        """

    async def hold(self, source_task_id: str, audio_id: str, *, reported: bool = False) -> None:
        """Confirm (and extend) this process's claim, right before a submit is sent
        or a result reported. ``reported``: a result whose row stays unsettled (a
        failure a re-run may mend) is being reported: for the other workers of this
        run the pair is settled (they neither wait for it nor take it over).

        Raises:
            LostClaim: Another worker holds the pair now.
            JournalWriteError: The journal failed: the claim could not be confirmed.
        """

    async def bind(self, api: str) -> str | None:
        """Tie the journal to the API host ``api``; the host it is tied to if another.

        Raises:
            JournalWriteError: The database failed.
        """

    async def learned(self) -> dict[str, list[tuple[float, float]]]:
        """The task durations an earlier run learned, per model."""

    async def keep_learned(self, model: str, observations: list[tuple[float, float]]) -> None:
        """Save what was learned of ``model``'s durations."""

    def ending(self) -> None:
        """The batch is ending: :meth:`close` follows once its submits in flight are
        answered."""

    async def close(self) -> None:
        """Give up this process's claims and disconnect."""


@runtime_checkable
class JournalSource(Protocol):
    """A journal given as an object with options (``vidgo_async.postgres.SharedJournal``)."""

    async def open_batch_journal(self) -> BatchJournal:
        """Connect; ``convert_many`` calls this when the batch starts."""


class Journal:
    """A SQLite journal of one batch (or several runs of it).

    Args:
        path: The database file; created if missing.

    Raises:
        ConfigurationError: ``path`` is a folder, not a SQLite database this
            version can read (another shape, unknown states, damaged), or cannot
            be written.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ConfigurationError(
                f"cannot open the journal {str(path)!r}: the folder"
                f" {str(self.path.parent)!r} does not exist"
            )
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open the journal {str(path)!r}: {exc}") from None
        try:
            for statement in ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", *_SCHEMA):
                self._db.execute(statement)
            problem = self._unreadable()
        except sqlite3.Error as exc:
            problem = f"is not a usable SQLite database: {exc}"
        if problem is not None:
            self._db.close()
            raise ConfigurationError(f"the journal {str(path)!r} {problem}") from None

    def _unreadable(self) -> str | None:
        """What this version cannot read in the journal (another version's or tool's
        table of that name), checked once here rather than failing every pair."""
        (check,) = self._db.execute("PRAGMA quick_check(1)").fetchone()
        if check != "ok":  # a file damaged on disk (a second of reading for a huge one)
            return f"is damaged: {' '.join(str(check).split())[:200]}"
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(conversions)")}
        missing = [
            c for c in ("source_task_id", "audio_id", *COLUMNS, "updated_at") if c not in columns
        ]
        if missing:
            return f"has another shape (no column {', '.join(missing)})"
        known = [state.value for state in State]
        unknown = self._db.execute(
            "SELECT DISTINCT state FROM conversions"
            f" WHERE state NOT IN ({', '.join('?' * len(known))}) LIMIT 3",
            known,
        ).fetchall()
        if unknown:
            return f"has rows in states unknown here: {', '.join(repr(s) for (s,) in unknown)}"
        return None

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def get(self, source_task_id: str, audio_id: str) -> Entry | None:
        """The pair's row, if it has one."""
        row = self._db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM conversions"
            " WHERE source_task_id = ? AND audio_id = ?",
            (source_task_id, audio_id),
        ).fetchone()
        if row is None:
            return None
        return entry_of(row)

    def record(self, source_task_id: str, audio_id: str, entry: Entry) -> None:
        """Write the pair's new row (a committed transaction of its own)."""
        self._db.execute(
            "INSERT INTO conversions (source_task_id, audio_id, state, task_id, wav_url,"
            " path, error_type, error, error_status, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (source_task_id, audio_id) DO UPDATE SET"
            " state = excluded.state,"
            " task_id = COALESCE(excluded.task_id, conversions.task_id),"
            " wav_url = excluded.wav_url, path = excluded.path,"
            " error_type = excluded.error_type, error = excluded.error,"
            " error_status = excluded.error_status, updated_at = excluded.updated_at",
            (
                source_task_id,
                audio_id,
                entry.state.value,
                entry.task_id,
                entry.wav_url,
                entry.path,
                entry.error_type,
                entry.error,
                entry.error_status,
                time.time(),
            ),
        )

    def bind(self, api: str) -> str | None:
        """See :meth:`BatchJournal.bind`; JournalWriteError if the database failed."""
        try:
            self._db.execute("INSERT OR IGNORE INTO about VALUES ('api', ?)", (api,))
            (bound,) = self._db.execute("SELECT value FROM about WHERE name = 'api'").fetchone()
        except sqlite3.Error as exc:
            raise JournalWriteError(str(exc)) from None
        return None if bound == api else str(bound)

    def learned(self) -> dict[str, list[tuple[float, float]]]:
        """The task durations an earlier run learned, per model."""
        rows = self._db.execute("SELECT model, summary FROM learned")
        return {model: load_durations(summary) for model, summary in rows if summary}

    def keep_learned(self, model: str, observations: list[tuple[float, float]]) -> None:
        """Save what was learned of ``model``'s durations; a failure is only logged,
        since it costs a re-run no more than starting cold."""
        try:
            self._db.execute(
                "INSERT INTO learned (model, summary) VALUES (?, ?)"
                " ON CONFLICT (model) DO UPDATE SET summary = excluded.summary",
                (model, dump_durations(observations)),
            )
        except sqlite3.Error as exc:
            logger.warning("could not save the learned durations to the journal: %s", exc)
