"""``convert_many``: thousands of conversions, streamed, bounded, resumable.

The arguments are checked here, before any request; the work is done by
``_workers.Run`` (see there); results are handed out here, with progress.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from ._intake import END, Pairs
from ._journal import Journal
from ._models import ConversionResult
from ._validate import check_count, check_folder, check_timeout
from ._workers import Download, Failure, Run

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["BatchProgress", "Pairs", "run_batch", "start_batch"]


@attrs.frozen(kw_only=True)
class BatchProgress:
    """Counts of a running batch, passed to ``on_progress`` after each result.

    Attributes:
        read: Input pairs read so far.
        done: Results delivered so far.
        succeeded: Results that are ``ok``.
        failed: Results that are not.
        in_flight: Distinct pairs being submitted, waited on or downloaded.
        input_done: Whether the whole input has been read.
    """

    read: int
    done: int
    succeeded: int
    failed: int
    in_flight: int
    input_done: bool


def start_batch(
    engine: Engine,
    download: Download,
    pairs: Pairs,
    *,
    concurrency: object,
    max_waiting: object,
    timeout: object,
    journal: str | os.PathLike[str] | None,
    download_to: str | os.PathLike[str] | None,
    on_progress: Callable[[BatchProgress], object] | None,
) -> AsyncGenerator[ConversionResult, None]:
    """Check the arguments of ``convert_many`` (before any request), then run it."""
    return run_batch(
        engine,
        download,
        pairs,
        concurrency=check_count("concurrency", concurrency),
        max_waiting=check_count("max_waiting", max_waiting),
        timeout=check_timeout(timeout),
        journal=journal,
        download_to=check_folder(download_to),
        on_progress=on_progress,
    )


async def run_batch(
    engine: Engine,
    download: Download,
    pairs: Pairs,
    *,
    concurrency: int,
    max_waiting: int,
    timeout: float | None,
    journal: str | os.PathLike[str] | None,
    download_to: Path | None,
    on_progress: Callable[[BatchProgress], object] | None,
) -> AsyncGenerator[ConversionResult, None]:
    """The engine behind :meth:`VidgoClient.convert_many` (arguments already checked)."""
    book = Journal(journal) if journal is not None else None  # opened on first iteration
    run = Run(
        engine,
        download,
        pairs,
        concurrency=concurrency,
        max_waiting=max_waiting,
        timeout=timeout,
        journal=book,
        download_to=download_to,
    )
    supervisor = asyncio.create_task(run.supervise())
    done = succeeded = 0
    try:
        while True:
            item = await run.queue.get()
            if type(item) is not ConversionResult:  # the usual item, checked in one step
                if item is END:
                    return
                assert isinstance(item, Failure)
                raise item.error
            if on_progress is not None:
                done += 1
                succeeded += item.ok
                on_progress(
                    BatchProgress(
                        read=run.intake.read,
                        done=done,
                        succeeded=succeeded,
                        failed=done - succeeded,
                        in_flight=len(run.extra),
                        input_done=run.intake.done,
                    )
                )
            yield item
    finally:
        await run.close(supervisor)
        if book is not None:
            book.close()
