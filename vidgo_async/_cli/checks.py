"""Checks made before the first request: a paid conversion must never be wasted on
a destination, journal or output file that was unusable from the start.

Each failure is a :class:`UsageError` (one line, exit status 2) naming the flag.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

from vidgo_async import wav_file_name

from .exits import UsageError

if TYPE_CHECKING:  # the postgres extra: imported where a command needs it
    from vidgo_async.postgres import SharedJournal

__all__ = [
    "DEFAULT_JOURNAL",
    "check_download_dest",
    "check_download_folder",
    "check_journal",
    "is_dsn",
    "journal_label",
    "journal_of",
    "open_output",
    "shared_journal",
]

#: The journal ``wav`` and ``batch`` keep unless told otherwise: in the current
#: directory, visible, so that re-running a command there resumes it.
DEFAULT_JOURNAL = "vidgo-journal.sqlite"

_SQLITE_MAGIC = b"SQLite format 3\x00"


def check_download_dest(
    dest: str, *, overwrite: bool, audio_id: str | None = None, flag: str = "--download"
) -> Path:
    """Where a download will write, checked.

    ``dest`` is a file in an existing folder, or an existing folder: the file
    is then ``<audio_id>.wav`` in it, or (without ``audio_id``) named by the
    downloader after the URL. It must not exist unless ``overwrite``.
    """
    path = Path(dest)
    if path.is_dir():
        if audio_id is None:
            _check_writable(path, flag)
            return path
        path = path / wav_file_name(audio_id)
        if path.is_dir():
            raise UsageError(f"{flag}: {path} is a folder")
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"{flag}: the folder {folder} does not exist")
    if path.exists() and not overwrite:
        raise UsageError(f"{flag}: {path} exists (pass --overwrite to replace it)")
    _check_writable(folder, flag)
    return path


def check_download_folder(folder: str) -> Path:
    """The folder ``batch --download DIR`` writes into, created if missing."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"--download: {path} is not a folder") from None
    except OSError as exc:
        raise UsageError(f"--download: cannot create {path}: {_reason(exc)}") from None
    _check_writable(path, "--download")
    return path


def journal_of(journal: str | None, *, off: bool, lease: float | None) -> str | None:
    """The journal to keep (``--journal``, else the default), checked; ``None`` if ``off``.

    ``lease`` (``--journal-lease``) is for a ``postgresql://`` journal only.
    """
    if lease is not None:
        if off or not is_dsn(journal or ""):
            raise UsageError("--journal-lease: only with a postgresql:// --journal")
        shared_journal(journal, lease)  # its checks, before any request
    return None if off else check_journal(journal or DEFAULT_JOURNAL)


def shared_journal(journal: str | None, lease: float | None) -> str | SharedJournal | None:
    """What ``convert_many`` gets as its journal: with ``--journal-lease``, a
    ``SharedJournal`` with that lease; else ``journal`` itself."""
    if journal is None or lease is None:
        return journal
    try:
        # Late binding: only a PostgreSQL journal with options needs the postgres extra.
        from vidgo_async.postgres import SharedJournal

        return SharedJournal(journal, lease_seconds=lease)
    except (ImportError, ValueError) as exc:
        raise UsageError(f"--journal-lease: {exc}") from None


def is_dsn(text: str) -> bool:
    """Whether ``text`` is a PostgreSQL connection string (``convert_many`` takes it)."""
    return text.startswith(("postgresql://", "postgres://"))


def check_journal(journal: str) -> str:
    """``journal`` if SQLite can keep the batch's journal there.

    It is a new file in an existing, writable folder, or an existing SQLite
    database (an empty file is one) that can be written. A ``postgresql://``
    DSN (a journal shared by several workers) is checked when the batch starts.
    """
    if "://" in journal:
        return journal  # a connection string: convert_many judges it (without quoting it)
    path = Path(journal)
    if path.is_dir():
        raise UsageError(f"--journal: {path} is a folder; give a file path (or --no-journal)")
    if not path.parent.is_dir():
        raise UsageError(f"--journal: the folder {path.parent} does not exist")
    if path.exists():
        try:
            with path.open("rb") as stream:
                head = stream.read(len(_SQLITE_MAGIC))
        except OSError as exc:
            raise UsageError(f"--journal: cannot read {path}: {_reason(exc)}") from None
        if head and head != _SQLITE_MAGIC:
            raise UsageError(
                f"--journal: {path} is not a SQLite journal; give another path (or --no-journal)"
            )
        if not os.access(path, os.W_OK):
            raise UsageError(f"--journal: {path} is not writable")
    # SQLite keeps -wal and -shm files beside the database.
    _check_writable(path.parent, "--journal")
    return journal


def open_output(name: str, *, besides: Mapping[str, str | None]) -> IO[str]:
    """``--output PATH`` open for writing, line-buffered: each result is on disk at once;
    refused when it names one of the files ``besides`` (the input, the journal), which
    opening it would empty."""
    for what, other in besides.items():
        if other is not None and other != "-" and not is_dsn(other) and _same_file(name, other):
            raise UsageError(f"--output: {name} is the {what}: writing it would empty it")
    try:
        # A local file opened once, before the batch starts: not worth a thread.
        return open(name, "w", encoding="utf-8", buffering=1)
    except OSError as exc:
        raise UsageError(f"--output: cannot write {name}: {_reason(exc)}") from None


def _same_file(one: str, other: str) -> bool:
    """Whether ``one`` names the regular file ``other`` is (or will be): a terminal or
    a pipe (/dev/stdin and /dev/stdout on a terminal) is nothing to empty."""
    path = Path(other)
    if path.exists() and not path.is_file():
        return False
    try:
        return os.path.samefile(one, other)
    except OSError:  # one does not exist yet
        return Path(one).resolve() == path.resolve()


def _check_writable(folder: Path, flag: str) -> None:
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: cannot write in the folder {folder}")


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def journal_label(journal: str) -> str:
    """``journal`` as printed: a DSN's password hidden (``user:PASSWORD@``, or in its
    query: ``password=``, ``sslpassword=``)."""
    if not re.match(r"postgres(?:ql)?://", journal):
        return journal
    hidden = re.sub(r"^(postgres(?:ql)?://[^:@/]*):[^@/]*@", r"\1:***@", journal)
    return re.sub(r"([?&](?:ssl)?password=)[^&]*", r"\1***", hidden, flags=re.IGNORECASE)
