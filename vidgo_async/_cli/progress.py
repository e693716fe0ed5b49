"""Batch progress for the CLI: plain lines, or a live bar on a terminal (`live.py`, with rich).

Both show the same :class:`Tally`, updated before any line about a result
is printed, so the counts on screen always agree with the lines above them.
"""

from __future__ import annotations

import time
from collections import Counter
from types import TracebackType
from typing import IO

import attrs

from vidgo_async import ConversionResult

from .exits import one_line

__all__ = ["Reporter", "Tally", "print_summary"]


@attrs.define
class Tally:
    """A batch's counts as the CLI shows them.

    Attributes:
        total: Input rows (bad ones included), when known in advance.
        outcomes: Results by outcome: ``"ok"`` or the error's type name.
        skipped: Input rows that were not a pair (reported, never sent).
        sent: Pairs handed to ``convert_many`` (each gets one result).
    """

    total: int | None
    outcomes: Counter[str] = attrs.Factory(Counter)
    skipped: int = 0
    sent: int = 0
    started: float = attrs.Factory(time.monotonic)

    @property
    def results(self) -> int:
        """Results received."""
        return sum(self.outcomes.values())

    @property
    def ok(self) -> int:
        """Results that succeeded."""
        return self.outcomes["ok"]

    @property
    def failed(self) -> int:
        """Results that did not."""
        return self.results - self.ok

    @property
    def rows(self) -> int:
        """Input rows dealt with: results and skipped rows."""
        return self.results + self.skipped

    @property
    def in_flight(self) -> int:
        """Pairs handed over without a result yet (skipped rows never are)."""
        return self.sent - self.results

    @property
    def left(self) -> int | None:
        """Input rows without a result yet, when the total is known."""
        return None if self.total is None else max(0, self.total - self.rows)

    def rate(self) -> float:
        """Results a second so far."""
        return self.results / max(time.monotonic() - self.started, 1e-9)

    def add(self, result: ConversionResult) -> None:
        """Count one result."""
        self.outcomes["ok" if result.ok else type(result.error).__name__] += 1

    def status(self) -> str:
        """All counts on one line."""
        total = "?" if self.total is None else self.total
        return (
            f"{self.rows}/{total} rows: {self.ok} ok, {self.failed} failed,"
            f" {self.skipped} skipped, {self.in_flight} in flight, {self.rate():.1f}/s"
        )


class Reporter:
    """Plain lines on ``stream``: each failure, and the counts every few seconds."""

    def __init__(self, tally: Tally, stream: IO[str], *, every: float = 2.0) -> None:
        self.tally = tally
        self.stream = stream
        self.every = every
        self._last = time.monotonic()
        self._shown = True  # whether the last counts printed are the current ones

    def __enter__(self) -> Reporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._shown:
            self.line(self.tally.status())

    def line(self, text: str) -> None:
        """Print one line (above the live bar, if any)."""
        print(text, file=self.stream, flush=True)

    def sent(self) -> None:
        """Count a pair handed to ``convert_many``."""
        self.tally.sent += 1
        self.changed()

    def skipped(self, line: int, reason: str) -> None:
        """Count and report an input row that is not a pair."""
        self.tally.skipped += 1
        self._report(f"line {line}: skipped: {reason}")

    def result(self, result: ConversionResult, *, show: str | None = None) -> None:
        """Count one result; print ``show``, or the failure if it is one."""
        self.tally.add(result)
        if show is None and result.error is not None:
            show = f"failed {result.source_task_id} {result.audio_id}: {one_line(result.error)}"
        self._report(show)

    def _report(self, text: str | None) -> None:
        if text:
            self.line(text)
        self.changed()

    def changed(self) -> None:
        """The counts changed: print them when due (every few seconds, and at the end)."""
        self._shown = False
        now = time.monotonic()
        if now - self._last >= self.every or self.tally.left == 0:
            self._last = now
            self._shown = True
            self.line(self.tally.status())


def print_summary(rows: list[tuple[str, str]], stream: IO[str]) -> None:
    """The summary as a table (rich on a terminal, aligned text otherwise)."""
    if stream.isatty():
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            pass
        else:
            table = Table(title="vidgo-async batch")
            table.add_column("outcome")
            table.add_column("count", justify="right")
            for label, value in rows:
                table.add_row(label, value)
            Console(file=stream).print(table)
            return
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}", file=stream)
