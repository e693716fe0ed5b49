"""Reading batch input for the CLI: CSV with a header, or JSON lines.

Bad rows are reported with their line numbers and skipped; good rows go on.
The input is read by a thread of its own (:class:`Input`): a pipe may keep
its reader waiting for its writer's next line indefinitely, and the event loop goes on
meanwhile, converting the pairs read before and acting on a signal at once.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import itertools
import json
import os
import queue
import re
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import attrs

from .exits import UsageError

__all__ = ["BadRow", "Input", "check_input", "count_rows", "open_input", "read_pairs"]

# Bytes that were not UTF-8, as the input's "surrogateescape" decoding keeps them.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


class InputError(UsageError):
    """The input as a whole is unusable (unreadable, no header, missing columns): exit 2."""


@attrs.frozen
class BadRow:
    """A row that could not be read as a pair."""

    line: int
    reason: str


def read_pairs(stream: IO[str], name: str) -> Iterator[tuple[str, str] | BadRow]:
    """Each row of ``stream`` as a ``(task_id, audio_id)`` pair or a :class:`BadRow`.

    The format is sniffed from the first non-blank line: ``{`` starts JSON
    lines, anything else is CSV whose header names ``task_id`` and
    ``audio_id`` (other columns are ignored).

    Raises:
        InputError: No header, or the header lacks a column.
    """
    first = ""
    skipped = 0
    for line in stream:
        skipped += 1
        if line.strip():
            first = line
            break
    if not first:
        return
    rest = itertools.chain([first], stream)
    if first.lstrip().startswith("{"):
        yield from _jsonl(rest, skipped)
    else:
        yield from _csv(rest, skipped, name)


def _jsonl(lines: Iterator[str], line_no: int) -> Iterator[tuple[str, str] | BadRow]:
    for number, line in enumerate(lines, start=line_no):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            yield BadRow(number, f"not JSON: {exc}")
            continue
        if not isinstance(row, dict):
            yield BadRow(number, "not a JSON object")
            continue
        yield _pair(row, number)


def _csv(lines: Iterator[str], line_no: int, name: str) -> Iterator[tuple[str, str] | BadRow]:
    reader = csv.reader(lines, strict=True)
    try:
        header = [column.strip().lower() for column in next(reader)]
    except csv.Error as exc:
        raise InputError(f"{name}: the CSV header is not valid CSV: {exc}") from None
    missing = [column for column in ("task_id", "audio_id") if column not in header]
    if missing:
        raise InputError(
            f"{name}: the CSV header must name task_id and audio_id (missing {', '.join(missing)};"
            f" got {', '.join(header) or 'nothing'})"
        )
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield BadRow(line_no + reader.line_num - 1, f"not valid CSV: {exc}")
            continue
        number = line_no + reader.line_num - 1
        if not row:
            continue  # an empty line
        if len(row) != len(header):
            yield BadRow(number, f"expected {len(header)} columns, got {len(row)}")
            continue
        yield _pair(dict(zip(header, row, strict=True)), number)


def _pair(row: dict[str, object], number: int) -> tuple[str, str] | BadRow:
    if any(isinstance(value, str) and _UNDECODABLE.search(value) for value in row.values()):
        return BadRow(number, "not valid UTF-8")
    try:
        return _id("task_id", row.get("task_id")), _id("audio_id", row.get("audio_id"))
    except ValueError as exc:
        return BadRow(number, str(exc))


def _id(name: str, value: object) -> str:
    """A plausible id; ``convert_many`` checks the rest (length ...) as a per-pair error."""
    if not isinstance(value, str):
        what = "missing" if value is None else f"not text ({type(value).__name__})"
        raise ValueError(f"{name} is {what}")
    value = value.strip()
    if not value:
        raise ValueError(f"{name} is empty")
    if not value.isprintable():
        raise ValueError(f"{name} contains control characters: {value[:40]!r}")
    return value


def open_input(name: str) -> IO[str]:
    """The batch input file (``-``: a copy of standard input's descriptor), open; an
    unreadable one is a usage error (exit 2). Bytes that are not UTF-8 become per-line
    reports, not the end of the batch."""
    what = "standard input" if name == "-" else name
    if name == "-" and sys.stdin is None:  # closed (`<&-`)
        raise InputError("cannot read standard input: it is closed")
    try:
        file: int | str = os.dup(sys.stdin.fileno()) if name == "-" else name
        return open(file, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except (OSError, ValueError) as exc:  # ValueError: a standard input with no descriptor
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise InputError(f"cannot read {what}: {reason}") from None


def check_input(name: str) -> None:
    """Raises InputError (a usage error, before any request) if the input file cannot be
    read. (Standard input and a named pipe are not tried: opening a pipe waits for its writer.)"""
    if name != "-" and not Path(name).is_fifo():
        open_input(name).close()


class Input:
    """:func:`read_pairs` of the input ``name``, opened and read by a daemon thread, one
    row at a time as they are asked for (iterate it once). Left, or ended (:meth:`end`),
    while the thread waits on a pipe, it leaves the thread blocked, to end with the
    process. (One path for every input: a regular file would not need the thread, whose
    ~30 us a row are nothing next to the row's conversion.)

    Raises (when iterated):
        InputError: The input cannot be opened, or has no usable header.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._ended = False
        self._wanted: asyncio.Future[Any] | None = None  # the row being read

    def end(self) -> None:
        """Read no more rows, nor wait for the one being read (a pipe may hold it for ever)."""
        self._ended = True
        if self._wanted is not None and not self._wanted.done():
            self._wanted.set_result(_END)

    async def __aiter__(self) -> AsyncIterator[tuple[str, str] | BadRow]:
        loop = asyncio.get_running_loop()
        asked: queue.SimpleQueue[asyncio.Future[Any] | None] = queue.SimpleQueue()
        threading.Thread(
            target=_read, args=(self.name, asked, loop), name="vidgo-async input", daemon=True
        ).start()
        try:
            while not self._ended:
                self._wanted = wanted = loop.create_future()
                asked.put(wanted)
                row = await wanted
                if row is _END:
                    return
                yield row
        finally:
            asked.put(None)


def _read(
    name: str,
    asked: queue.SimpleQueue[asyncio.Future[Any] | None],
    loop: asyncio.AbstractEventLoop,
) -> None:
    """The input thread: a row of ``name`` for each future ``asked`` for, until None."""
    rows: Iterator[tuple[str, str] | BadRow] | None = None
    try:
        while (wanted := asked.get()) is not None:
            try:
                rows = rows or _rows(name)
                row: object = next(rows, _END)
            except Exception as exc:
                loop.call_soon_threadsafe(_settle, wanted, None, exc)
                return
            loop.call_soon_threadsafe(_settle, wanted, row, None)
            if row is _END:
                return
    except RuntimeError:  # the loop is closed: nobody is asking any more
        return


_END = object()


def _rows(name: str) -> Iterator[tuple[str, str] | BadRow]:
    with open_input(name) as stream:
        yield from read_pairs(stream, name)


def _settle(future: asyncio.Future[Any], row: object, error: Exception | None) -> None:
    if future.done():  # its asker was cancelled
        return
    if error is None:
        future.set_result(row)
    else:
        future.set_exception(error)


def count_rows(path: Path) -> int | None:
    """Data rows of ``path`` (non-blank lines, less a CSV header), for the progress total;
    None unless it is a regular file (a pipe can be read only once)."""
    lines, first = 0, b""
    try:
        if not path.is_file():
            return None
        with path.open("rb") as stream:
            for line in stream:
                if line.strip():
                    first = first or line.removeprefix(codecs.BOM_UTF8).lstrip()[:1]
                    lines += 1
    except OSError:
        return None
    return max(0, lines - (0 if first == b"{" else 1))
