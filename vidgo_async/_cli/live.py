"""The live progress bar of ``vidgo-async batch`` on a terminal (extra ``cli``: rich).

Two lines: the bar with its rate and times, then the batch's counts, rows done
out of all first. On one line they need about 110 columns, and rich cut them to
fit an 80-column terminal: the count read ``14/…``.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import IO, Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .progress import Reporter, Tally

__all__ = ["LiveReporter"]

# Columns the bar's line needs besides the bar: its label, the rate, two times, the
# spaces between, and room for the ^C a terminal echoes (a full line wraps then, and
# leaves a stale copy above).
_BESIDE_THE_BAR = 45


class _TwoLines(Progress):
    """rich's progress display with each task's counts on a line of their own below it."""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield from super().get_renderables()
        for task in self.tasks:
            counts = Text.from_markup(task.fields["counts"], overflow="ellipsis")
            counts.no_wrap = True
            yield counts


class LiveReporter(Reporter):
    """A live progress bar with counts, rate and ETA, redrawn ten times a second."""

    def __init__(self, tally: Tally, stream: IO[str], *, stdout_is_terminal: bool) -> None:
        super().__init__(tally, stream)
        # Lines printed above the bar (ours, and stdout's on the same terminal) are not
        # broken by newlines at its width: the terminal wraps them, and a URL copied whole.
        self._console = Console(file=stream, soft_wrap=True)
        self._bar = _TwoLines(
            TextColumn("[bold]converting"),
            BarColumn(bar_width=max(10, min(30, self._console.width - _BESIDE_THE_BAR))),
            TextColumn("{task.fields[rate]}/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._console,
            refresh_per_second=10,
            # Results printed on stdout go above the bar when stdout is a terminal
            # (this one, as a rule); redirected (`--json > results.jsonl`) or closed,
            # they go to the file, or nowhere.
            redirect_stdout=stdout_is_terminal,
        )
        self._task = self._bar.add_task("batch", total=tally.total, **self._fields())

    def _fields(self) -> dict[str, Any]:
        tally = self.tally
        failed = f"[red]{tally.failed} failed[/red]" if tally.failed else "0 failed"
        skipped = f", {tally.skipped} skipped" if tally.skipped else ""
        total = "?" if tally.total is None else tally.total
        done = f"{tally.rows}/{total} rows"
        counts = f"{done}: {tally.ok} ok, {failed}{skipped}, {tally.in_flight} in flight"
        return {"counts": counts, "rate": f"{tally.rate():.1f}"}

    def __enter__(self) -> Reporter:
        self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.changed()
        self._bar.stop()  # draws the last counts and ends the bar's lines, interrupted or not

    def line(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False)

    def _report(self, text: str | None) -> None:
        self.changed()
        if text:
            # Printing a line redraws the bar as last rendered: render it with this count first.
            self._bar.refresh()
            self.line(text)

    def changed(self) -> None:
        # Every change reaches the bar at once; the refresh thread draws it 10 times a second.
        self._bar.update(self._task, completed=self.tally.rows, **self._fields())
