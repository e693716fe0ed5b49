"""The batch's journal as the run sees it: async calls, and a claim per pair.

``convert_many(journal=...)`` takes a SQLite file (``journal.Journal``, one
process: every claim succeeds), or a ``postgresql://`` DSN or a
:class:`JournalSource` (``vidgo_async.postgres.SharedJournal``): the PostgreSQL
journal of ``vidgo_async._postgres.journal``, imported only then, where workers
on several hosts share one batch, each pair claimed by one of them under a lease.

A worker that lost a claim (paused past its lease, another worker took the
pair over) learns it at its next write or :meth:`BatchJournal.hold`, which
raise :class:`LostClaim`: the batch then drops the pair, sending nothing more
for it and reporting nothing (the taker reports it).
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

from .intake import Key
from .journal import Entry, Journal

__all__ = [
    "BatchJournal",
    "Claim",
    "JournalSource",
    "LostClaim",
    "SqliteJournal",
    "is_postgres",
    "open_journal",
]

#: What a claim answers: whether this process holds the pair, and the pair's row.
Claim = tuple[bool, Entry | None]


class LostClaim(Exception):
    """This worker no longer holds the pair: another worker took it over (or the claim
    could not be confirmed). Never reaches a user: the batch drops the pair."""


class BatchJournal(Protocol):
    """What ``_Batch`` needs of a journal."""

    async def claim(self, source_task_id: str, audio_id: str) -> Claim:
        """Take the pair for this process (``False``: another worker holds it)."""

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
        """

    async def hold(self, source_task_id: str, audio_id: str) -> None:
        """Confirm (and extend) this process's claim, right before a submit is sent
        or a result reported.

        Raises:
            LostClaim: Another worker holds the pair now, or the claim cannot be confirmed.
        """

    async def learned(self) -> dict[str, list[tuple[float, float]]]:
        """The task durations an earlier run learned, per model."""

    async def keep_learned(self, model: str, observations: list[tuple[float, float]]) -> None:
        """Save what was learned of ``model``'s durations."""

    async def close(self) -> None:
        """Give up this process's claims and disconnect."""


@runtime_checkable
class JournalSource(Protocol):
    """A journal given as an object with options (``vidgo_async.postgres.SharedJournal``)."""

    async def open_batch_journal(self) -> BatchJournal:
        """Connect; ``convert_many`` calls this when the batch starts."""


class SqliteJournal:
    """The SQLite journal behind the async calls; its writes stay synchronous."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.journal = Journal(path)

    async def claim(self, source_task_id: str, audio_id: str) -> Claim:
        """Always this process's: one process per SQLite journal."""
        return True, self.journal.get(source_task_id, audio_id)

    recheck_every = 0.0

    async def recheck(self, keys: list[Key]) -> tuple[list[Key], list[Key]]:
        """Every pair is free: no other process holds any."""
        return keys, []

    async def record(self, source_task_id: str, audio_id: str, entry: Entry) -> None:
        """Write the pair's new row (committed before this returns)."""
        self.journal.record(source_task_id, audio_id, entry)

    async def hold(self, source_task_id: str, audio_id: str) -> None:
        """Nothing to confirm: one process per SQLite journal."""

    async def learned(self) -> dict[str, list[tuple[float, float]]]:
        """The task durations an earlier run learned, per model."""
        return self.journal.learned()

    async def keep_learned(self, model: str, observations: list[tuple[float, float]]) -> None:
        """Save what was learned of ``model``'s durations."""
        self.journal.keep_learned(model, observations)

    async def close(self) -> None:
        """Close the database."""
        self.journal.close()


def is_postgres(journal: object) -> bool:
    """Whether ``journal`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(journal, str) and journal.startswith(("postgresql://", "postgres://"))


async def open_journal(journal: str | os.PathLike[str] | JournalSource) -> BatchJournal:
    """Open the journal ``journal`` names: a SQLite file, or a source of another.

    Raises:
        ConfigurationError: It cannot be used.
    """
    if isinstance(journal, JournalSource):
        return await journal.open_batch_journal()
    return SqliteJournal(journal)
