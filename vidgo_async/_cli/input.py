"""Reading batch input for the CLI: CSV with a header, or JSON lines.

Bad rows are reported with their line numbers and skipped; good rows go on.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from typing import IO

import attrs

from ._validate import check_id

__all__ = ["BadRow", "InputError", "read_pairs"]

# Bytes that were not UTF-8, as the input's "surrogateescape" decoding keeps them.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


class InputError(ValueError):
    """The input as a whole is unusable (no header, missing columns)."""


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
    rest = _chain(first, stream)
    if first.lstrip().startswith("{"):
        yield from _jsonl(rest, skipped)
    else:
        yield from _csv(rest, skipped, name)


def _chain(first: str, stream: IO[str]) -> Iterator[str]:
    yield first
    yield from stream


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
    header = [column.strip().lower() for column in next(reader)]
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
        task_id = check_id("task_id", _text(row.get("task_id")))
        audio_id = check_id("audio_id", _text(row.get("audio_id")))
    except (TypeError, ValueError) as exc:
        return BadRow(number, str(exc))
    return task_id, audio_id


def _text(value: object) -> object:
    return value.strip() if isinstance(value, str) else value
