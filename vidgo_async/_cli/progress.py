"""Batch progress for the CLI: a live bar on a terminal (with rich), plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from types import TracebackType
from typing import IO

from ._batch import BatchProgress
from ._models import ConversionResult

__all__ = ["Reporter", "make_reporter", "print_summary", "summary_rows"]


class Reporter:
    """Plain lines on ``stream``: each failure, and a status line every few seconds."""

    def __init__(self, stream: IO[str], total: int | None, *, every: float = 2.0) -> None:
        self.stream = stream
        self.total = total
        self.every = every
        self.started = time.monotonic()
        self._last = 0.0

    def __enter__(self) -> Reporter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def line(self, text: str) -> None:
        """Print one line above any live display."""
        print(text, file=self.stream, flush=True)

    def failed(self, result: ConversionResult) -> None:
        """Report one failed pair."""
        self.line(f"failed {result.source_task_id} {result.audio_id}: {result.error}")

    def elapsed(self) -> float:
        """Seconds since the batch started (never zero)."""
        return max(time.monotonic() - self.started, 1e-9)

    def update(self, progress: BatchProgress, result: ConversionResult) -> None:
        """Note one more result."""
        if not result.ok:
            self.failed(result)
        now = time.monotonic()
        if now - self._last >= self.every or (progress.input_done and not progress.in_flight):
            self._last = now
            self.line(self.status(progress))

    def status(self, progress: BatchProgress) -> str:
        """``done/total ok failed rate`` as one line."""
        elapsed = self.elapsed()
        total = self.total if self.total is not None else "?"
        return (
            f"{progress.done}/{total} done, {progress.succeeded} ok, {progress.failed} failed,"
            f" {progress.in_flight} in flight, {progress.done / elapsed:.1f}/s"
        )


class _RichReporter(Reporter):
    """A live progress bar with counts, rate and ETA."""

    def __init__(self, stream: IO[str], total: int | None) -> None:
        super().__init__(stream, total)
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._console = Console(file=stream)
        self._bar = Progress(
            TextColumn("[bold]converting"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[ok]} ok, [red]{task.fields[failed]} failed[/red]"),
            TextColumn("{task.fields[rate]}/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._console,
        )
        self._task = self._bar.add_task("batch", total=total, ok=0, failed=0, rate="0.0")

    def __enter__(self) -> Reporter:
        self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.stop()

    def line(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False)

    def update(self, progress: BatchProgress, result: ConversionResult) -> None:
        if not result.ok:
            self.failed(result)
        elapsed = self.elapsed()
        self._bar.update(
            self._task,
            completed=progress.done,
            ok=progress.succeeded,
            failed=progress.failed,
            rate=f"{progress.done / elapsed:.1f}",
        )


def make_reporter(total: int | None, stream: IO[str] | None = None) -> Reporter:
    """A live bar when ``stream`` is a terminal and rich is installed, else plain lines."""
    stream = stream or sys.stderr
    if stream.isatty():
        try:
            return _RichReporter(stream, total)
        except ImportError:
            pass
    return Reporter(stream, total)


def summary_rows(counts: Mapping[str, int]) -> list[tuple[str, str]]:
    """The end-of-batch summary as ``(label, value)`` rows, from outcome counts."""
    total = sum(counts.values())
    rows = [("results", str(total)), ("succeeded", str(counts.get("ok", 0)))]
    rows += [(f"failed: {name}", str(n)) for name, n in sorted(counts.items()) if name != "ok"]
    return rows


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
