"""``vidgo-async batch``: many pairs through ``convert_many``, journalled by default.

Each result is written as it comes: every paid WAV URL on stdout (a text line,
or every result as JSON with ``--json``), every result to ``--output``. An
account-level refusal of a submit (401, 402, 403) stops the input: no other
pair can succeed until the user acts. The pairs already under way end first,
so that the tasks paid for are waited on and printed; the journal leaves the
rest for a re-run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import ExitStack, aclosing
from pathlib import Path
from typing import IO

import attrs

from vidgo_async import DEFAULT_TIMEOUT, ConversionResult, SubmitOutcomeUnknownError, VidgoClient

from .checks import check_download_folder, journal_label, journal_of, open_output, shared_journal
from .client import open_client
from .exits import ACCOUNT_REFUSALS, Exit, account_advice, one_line
from .input import BadRow, Input, check_input, count_rows
from .output import result_json
from .progress import Reporter, Tally, print_summary

__all__ = ["BatchOptions", "batch", "run_batch"]


@attrs.frozen(kw_only=True)
class BatchOptions:
    """How a batch runs and reports (from the flags, or set by ``demo``)."""

    concurrency: int = 32
    timeout: float | None = DEFAULT_TIMEOUT
    journal: str | None = None
    journal_lease: float | None = None
    download: Path | None = None
    output: IO[str] | None = None
    json: bool = False
    # Each success as a text line on stdout (without --json): `batch`, not `demo`.
    text: bool = False
    verbose: bool = False


async def batch(args: argparse.Namespace) -> int:
    """Check every flag and the input, then run the batch."""
    journal = journal_of(args.journal, off=args.no_journal, lease=args.journal_lease)
    # The client first: it checks the key before any file is created.
    async with open_client(args) as client:
        with ExitStack() as stack:
            check_input(args.file)
            total = None if args.file == "-" else count_rows(Path(args.file))
            options = BatchOptions(
                concurrency=args.concurrency,
                timeout=args.timeout,
                journal=journal,
                journal_lease=args.journal_lease,
                download=check_download_folder(args.download) if args.download else None,
                output=(
                    stack.enter_context(
                        open_output(args.output, besides={"input": args.file, "journal": journal})
                    )
                    if args.output
                    else None
                ),
                json=args.json,
                text=not args.json,
                verbose=args.verbose > 0,
            )
            return await run_batch(client, options, Input(args.file), total)


async def run_batch(
    client: VidgoClient,
    options: BatchOptions,
    rows: AsyncIterable[tuple[str, str] | BadRow],
    total: int | None,
) -> int:
    """Convert ``rows``, reporting progress, results and a summary; the exit status.

    Raises:
        asyncio.CancelledError: Interrupted (the summary is printed first).
    """
    tally = Tally(total)
    try:
        with _reporter(tally) as reporter:
            refusal = await _convert(client, options, rows, reporter)
    except asyncio.CancelledError:
        print_summary(_summary(tally, options, stopped="interrupted"), sys.stderr)
        if options.journal:
            print(
                f"journal: {journal_label(options.journal)} (re-run the command to resume)",
                file=sys.stderr,
            )
        elif tally.in_flight:
            print(
                "no journal was kept: the tasks paid for and not finished are named above"
                " (`vidgo-async status ID` gives a finished one's WAV URL)",
                file=sys.stderr,
            )
        raise
    stopped = None if refusal is None else "stopped"
    print_summary(_summary(tally, options, stopped=stopped), sys.stderr)
    if options.journal and tally.rows:
        print(
            f"journal: {journal_label(options.journal)} (a re-run converts nothing twice)",
            file=sys.stderr,
        )
    if refusal is not None:
        # Not converted: the rows never read, and those that failed (the refused among them).
        if tally.left is None:
            left = f"the rest of the input and {tally.failed} row(s) that failed"
        else:
            left = f"{tally.left + tally.failed} row(s)"
        print(
            f"vidgo-async: stopped: {one_line(refusal)} - {account_advice(refusal)};"
            f" {left} not converted{_rerun(options.journal)}",
            file=sys.stderr,
        )
        return Exit.ACCOUNT
    if not tally.rows:
        what = "no results (see above)" if tally.sent else "no pairs in the input"
        print(f"vidgo-async: {what}", file=sys.stderr)
        return Exit.OK
    return Exit.OK if tally.ok == tally.rows else Exit.FAILED


async def _convert(
    client: VidgoClient,
    options: BatchOptions,
    rows: AsyncIterable[tuple[str, str] | BadRow],
    reporter: Reporter,
) -> Exception | None:
    """Run the batch to its end; the account-level refusal that stopped its input, if any."""
    refusal: Exception | None = None

    async def pairs() -> AsyncIterator[tuple[str, str]]:
        async for row in rows:
            if refusal is not None:
                return
            if isinstance(row, BadRow):
                reporter.skipped(row.line, row.reason)
            else:
                reporter.sent()
                yield row

    results = client.convert_many(
        pairs(),
        concurrency=options.concurrency,
        timeout=options.timeout,
        journal=shared_journal(options.journal, options.journal_lease),
        download_to=options.download,
    )
    async with aclosing(results):  # leaving the loop stops every submit and wait at once
        async for result in results:
            _write(result, options)
            if (refused := _account_refusal(result)) is not None:
                refusal = refusal or refused
                if isinstance(rows, Input):  # not waiting for a quiet pipe's next line
                    rows.end()
                if result.error is refused:
                    reporter.result(result, show="")  # the stop message says it, once
                    continue
            listed = options.verbose and not (options.text or options.json)  # else on stdout
            show = f"ok {result.audio_id} -> {result.wav_url}" if listed else None
            reporter.result(result, show=show if result.ok else None)
    return refusal


def _reporter(tally: Tally) -> Reporter:
    """A live bar when stderr is a terminal and rich is installed, else plain lines."""
    if sys.stderr.isatty():
        try:
            from .live import LiveReporter
        except ImportError:
            pass
        else:
            stdout_is_terminal = sys.stdout is not None and sys.stdout.isatty()
            return LiveReporter(tally, sys.stderr, stdout_is_terminal=stdout_is_terminal)
    return Reporter(tally, sys.stderr)


def _account_refusal(result: ConversionResult) -> Exception | None:
    """The refusal of the account (401, 402, 403) that ended the result's submit, if any:
    its error, or the last answer of a submit that may have been accepted. (A result
    with a task is past its submit: a 403 on a wait or a download refuses no account.)"""
    if result.task_id is not None:
        return None
    error = result.error
    if isinstance(error, SubmitOutcomeUnknownError):
        error = error.answer
    return error if isinstance(error, ACCOUNT_REFUSALS) else None


def _write(result: ConversionResult, options: BatchOptions) -> None:
    """The result on ``--output`` (first: stdout may be closed, as by ``| head``), then
    on stdout: as JSON, or as a line of tab-separated fields (ids may hold spaces, never
    a tab) if its WAV URL is known: paid for, saved (``ok``) or not (``unsaved``)."""
    line = json.dumps(result_json(result))
    if options.output is not None:
        options.output.write(line + "\n")  # line-buffered: on disk at once
    if options.json:
        print(line, flush=True)
    elif options.text and result.wav_url is not None:
        fields = ["ok" if result.ok else "unsaved", result.source_task_id, result.audio_id]
        fields += [result.wav_url, *([] if result.path is None else [str(result.path)])]
        print("\t".join(fields), flush=True)


def _summary(tally: Tally, options: BatchOptions, *, stopped: str | None) -> list[tuple[str, str]]:
    rows = [("results", str(tally.results)), ("succeeded", str(tally.ok))]
    failed = sorted((name, n) for name, n in tally.outcomes.items() if name != "ok")
    rows += [(f"failed: {name}", str(n)) for name, n in failed]
    if tally.skipped:
        rows.append(("skipped input rows", str(tally.skipped)))
    if not stopped and tally.in_flight:  # only a PostgreSQL journal leaves pairs to others
        rows.append(("reported by another worker (see above)", str(tally.in_flight)))
    if stopped:
        left = "the rest" if tally.left is None else str(tally.left)
        unfinished = "left for a re-run" if options.journal else "not finished"
        rows.append((f"{stopped}: {unfinished}", left))
    return rows


def _rerun(journal: str | None) -> str:
    if journal is None:
        return " (no journal was kept: re-run only the pairs whose WAV URL was not printed)"
    return f"; re-run the same command to go on (journal {journal_label(journal)})"
