"""A download on disk: the ``.part`` file it grows in, the version of the file and
where it came from kept beside it (``<dest>.part.version``, for a later resume: its
``If-Range``, and no resume from another file's head), and the checks of its
RIFF/WAVE header."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import InvalidResponseError
from .envelope import excerpt

try:
    import fcntl
except ImportError:  # Windows: two downloads into one file are not kept apart
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "Overrun",
    "PartFile",
    "drop_lone_version",
    "forget_part",
    "keep_version",
    "owned",
    "part_of",
    "part_size",
    "resumable",
    "resume_offset",
    "usable_version",
]

logger = logging.getLogger("vidgo_async")

#: Bytes of the header checked: ``RIFF`` (or ``RF64``), the size, ``WAVE``.
HEAD = 12
#: Largest file downloaded when no RIFF size bounds it (RF64, or a size left open).
MAX_SIZE = 16 * 1024**3
#: Bytes a file may hold past its RIFF size: tags appended after the RIFF chunk (ID3v1,
#: an ID3v2 with its cover art) and a pad byte left out of the size are common.
TRAILER = 1024 * 1024
#: RIFF sizes from which on one promises nothing: streaming writers leave all ones
#: there, and SoX writing to a pipe its largest data chunk (0x7FFFF000) plus its header
#: (0 promises nothing either). A file this large still has its Content-Length checked.
_OPEN_SIZE = 0x7FFFF000


class Overrun(InvalidResponseError):
    """A body longer than its own length, its RIFF size or the cap allow: the server's
    framing, which asking again would only send again (up to the cap each time)."""


def part_of(target: Path) -> Path:
    """The ``.part`` file beside ``target`` that a download (or a copy) of it grows in."""
    return target.with_name(target.name + ".part")


@contextlib.contextmanager
def owned(part: Path) -> Iterator[None]:
    """Hold ``<part>.lock`` (an exclusive ``flock``) while one download writes ``part``,
    so that two downloads into one file, in this process or another, never write into
    the same ``.part``; the lock file is removed as the download ends.

    Raises:
        FileExistsError: Another download is writing the file.
    """
    lock = part.with_name(part.name + ".lock")
    fd = None if fcntl is None else _lock(lock)
    try:
        yield
    finally:
        if fd is not None:
            lock.unlink(missing_ok=True)  # while held: a later opener makes a new one
            os.close(fd)


def _lock(lock: Path) -> int | None:
    """The descriptor of ``lock`` under an exclusive ``flock``, taken at once or never
    (None: the file system has no ``flock``)."""
    while True:
        # Not through a symlink planted in a shared folder: it would create its target.
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            target = lock.with_name(lock.name.removesuffix(".part.lock"))
            message = "another download is writing this file"
            raise FileExistsError(errno.EEXIST, message, str(target)) from None
        except OSError as exc:
            os.close(fd)
            lock.unlink(missing_ok=True)  # held by none: no file to leave behind
            logger.debug("cannot lock %s (%s): downloads into it not kept apart", lock, exc)
            return None
        try:  # not one its holder removed after we opened it
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def is_wav(head: bytes) -> bool:
    """Whether ``head`` starts a RIFF/WAVE (or RF64/WAVE) file."""
    return len(head) >= HEAD and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE"


def declared_size(head: bytes) -> int | None:
    """The file size a RIFF header declares, if it declares one."""
    if len(head) < 8 or head[:4] != b"RIFF":
        return None
    declared = int.from_bytes(head[4:8], "little")
    return None if declared == 0 or declared >= _OPEN_SIZE else declared + 8


class PartFile:
    """The ``.part`` file opened at ``start``; closed on exit unless committed.

    It never grows past ``total`` (the answer's file size, when known), the
    size its RIFF header declares (plus a :data:`TRAILER`), or :data:`MAX_SIZE`.
    """

    def __init__(self, path: Path, start: int, total: int | None = None) -> None:
        self._path = path
        # Blocking writes of one chunk to the page cache are brief; fsync runs in a thread.
        self._file = open(path, "r+b" if start else "wb")  # noqa: SIM115 - closed in __exit__/commit
        # A resumed file's header is on disk (resume_offset keeps none shorter).
        self._head = self._file.read(HEAD) if start else b""
        self._file.seek(start)
        self._file.truncate()
        self._committed = False
        self._total = total
        self.size = start

    def __enter__(self) -> PartFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._committed:
            self._file.close()

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``; check the header once its 12 bytes are in.

        Raises:
            InvalidResponseError: Not a WAV (an :class:`Overrun`: more bytes than
                the answer's total, its RIFF header or :data:`MAX_SIZE` allow): the
                chunk is not written, the rest not read, and the file removed.
        """
        if self.size < HEAD:
            self._head += chunk[: HEAD - self.size]
            if len(self._head) == HEAD:
                self._require_wav()
        size = self.size + len(chunk)
        limit = self._limit()
        if size > limit:
            # What an answer breaking its own bounds sent so far is no file to resume.
            self._discard()
            bounds = "its length, its RIFF size or the cap"
            raise Overrun(f"the body runs past {limit} bytes ({bounds})")
        self._file.write(chunk)
        self.size = size

    def _limit(self) -> int:
        """The most bytes the file may hold."""
        riff = declared_size(self._head)
        riff = None if riff is None else riff + TRAILER
        return min(size for size in (self._total, riff, MAX_SIZE) if size is not None)

    def riff_problem(self) -> str | None:
        """How the file falls short of its RIFF header's size, if it does. A longer one
        passes (see :data:`TRAILER`); RF64 files and the sizes streaming writers leave
        open declare nothing usable, nor does a header too short to read."""
        declared = declared_size(self._head)
        if declared is None or declared <= self.size:
            return None
        return f"the RIFF header declares {declared} bytes, got {self.size}"

    async def commit(self, target: Path) -> None:
        """fsync, close and rename to ``target`` in a thread, which then owns the file."""
        if self.size < HEAD:
            self._require_wav()  # the whole file is shorter than a header
        self._committed = True
        await asyncio.to_thread(self._commit, target)

    def _commit(self, target: Path) -> None:
        with self._file:
            self._file.flush()
            os.fsync(self._file.fileno())
        os.replace(self._path, target)
        if hasattr(os, "O_DIRECTORY"):
            fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _discard(self) -> None:
        self._file.close()
        self._path.unlink(missing_ok=True)

    def _require_wav(self) -> None:
        if not is_wav(self._head):
            self._discard()
            raise InvalidResponseError("not a WAV file", status=200, excerpt=excerpt(self._head))


def part_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def resume_offset(part: Path) -> int:
    """Bytes of ``part`` worth keeping: all of it, unless too short or not a WAV."""
    size = part_size(part)
    if size < HEAD:
        return 0
    with part.open("rb") as file:
        return size if is_wav(file.read(HEAD)) else 0


def usable_version(value: str) -> str | None:
    """``value`` if it can go in an ``If-Range`` header (printable ASCII, at most 200
    characters), else None."""
    ok = value and value.isascii() and value.isprintable() and len(value) <= 200
    return value if ok else None


def resumable(part: Path, source: str) -> tuple[int, str | None, int | None]:
    """The bytes of the head of the file at ``source`` (a URL without its query) that
    ``part`` holds, and that file's version and size; a head of another file, or of one
    nobody recorded, is removed: ``(0, None, None)``."""
    size = part_size(part)
    if size:
        version, kept, total = _read_kept(part)
        if kept == source:
            return size, version, total
        forget_part(part)
    return 0, None, None


def _read_kept(part: Path) -> tuple[str | None, str | None, int | None]:
    """The version of the file ``part`` holds the head of, where it came from (its URL
    without the query) and its size, as an earlier call kept them; None where unknown."""
    try:
        kept = _version_file(part).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None, None, None
    version, source, total = [*kept.split("\n"), "", ""][:3]
    size = total.strip()
    known = size.isascii() and size.isdigit() and len(size) < 20  # else damaged: unknown
    return usable_version(version.strip()), source.strip() or None, int(size) if known else None


def keep_version(part: Path, version: str | None, source: str, total: int | None) -> None:
    """Keep ``version`` (None: none known), ``source`` and the file's size ``total``
    (None: unknown) beside ``part`` for a later call."""
    path = _version_file(part)
    try:
        known = "" if total is None else str(total)
        path.write_text(f"{version or ''}\n{source}\n{known}", encoding="utf-8", errors="replace")
    except OSError as exc:  # a resume then cannot tell a changed file: it restarts on one
        logger.debug("cannot keep the version of %s: %s", path.name, exc)


def forget_part(part: Path) -> None:
    """Remove ``part`` and the version kept beside it."""
    part.unlink(missing_ok=True)
    _version_file(part).unlink(missing_ok=True)


def drop_lone_version(part: Path) -> None:
    """Remove the version kept beside ``part`` once the part itself is gone (committed,
    or discarded as no WAV)."""
    if not part.exists():
        _version_file(part).unlink(missing_ok=True)


def _version_file(part: Path) -> Path:
    return part.with_name(part.name + ".version")
