"""The commands but ``batch``: ``wav``, ``status``, ``download``, ``fake-server``, ``demo``."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

from vidgo_async import ConversionResult, PollPolicy, RetryPolicy, VidgoClient
from vidgo_async.errors import VidgoError

from .batch import BatchOptions, run_batch
from .checks import check_download_dest, check_download_folder, journal_of, shared_journal
from .client import DOWNLOAD_TIMEOUT, download_client, open_client
from .exits import ACCOUNT_REFUSALS, CommandError, Exit, UsageError, account_advice, hint, one_line
from .output import download_json, task_json, task_text, wav_json

__all__ = ["demo", "download", "fake_server", "status", "wav"]


async def wav(args: argparse.Namespace) -> int:
    """Convert one pair through the journal, print its WAV URL, then download it if asked."""
    dest = None
    if args.download:
        dest = check_download_dest(args.download, overwrite=args.overwrite, audio_id=args.audio_id)
    journal = journal_of(args.journal, off=args.no_journal, lease=args.journal_lease)
    async with open_client(args) as client:
        result = await _convert_one(client, args, journal)
        url = result.wav_url
        if result.error is not None or url is None:
            raise _failure(result, journal)
        path = None
        try:
            if not args.json:
                print(url, flush=True)  # paid for: printed before anything else can fail
            if dest is not None:
                path = await client.download(
                    url, dest, overwrite=args.overwrite, timeout=DOWNLOAD_TIMEOUT
                )
        except (VidgoError, OSError, ValueError) as exc:
            raise CommandError(
                f"the WAV is ready but its download failed: {one_line(exc)};"
                f" try it again with: vidgo-async download {url} {dest}"
            ) from None
        finally:
            if args.json:
                print(json.dumps(wav_json(result, path)), flush=True)
    if path is not None and not args.json:
        print(f"saved to {path}")
    return Exit.OK


async def _convert_one(
    client: VidgoClient, args: argparse.Namespace, journal: str | None
) -> ConversionResult:
    """The pair's result, through ``convert_many`` so that the journal is consulted."""
    results = client.convert_many(
        [(args.task_id, args.audio_id)],
        concurrency=1,
        timeout=args.timeout,
        journal=shared_journal(journal, args.journal_lease),
    )
    async with aclosing(results):
        async for result in results:
            return result
    # Only a PostgreSQL journal can hold the pair for another worker.
    raise CommandError("the pair is being converted by another worker sharing the journal")


def _failure(result: ConversionResult, journal: str | None) -> CommandError:
    error = result.error
    if error is None:  # pragma: no cover - convert_many gives a WAV URL or an error
        return CommandError("the conversion finished without a WAV URL")
    if isinstance(error, ACCOUNT_REFUSALS):
        return CommandError(f"{one_line(error)} - {account_advice(error)}", Exit.ACCOUNT)
    if isinstance(error, (TypeError, ValueError)) and not isinstance(error, VidgoError):
        return UsageError(one_line(error))  # a malformed id, refused before any request
    advice = hint(error, result.task_id, journal)
    return CommandError(one_line(error) + (f" - {advice}" if advice else ""))


async def status(args: argparse.Namespace) -> int:
    """Print a task's state."""
    async with open_client(args) as client:
        task = await client.get_task(args.task_id)
    print(json.dumps(task_json(task)) if args.json else task_text(task))
    return Exit.OK


async def download(args: argparse.Namespace) -> int:
    """Download a WAV URL (no API key needed: storage never gets one)."""
    dest = check_download_dest(args.dest, overwrite=args.overwrite, flag="DEST")
    async with download_client(args) as client:
        path = await client.download(args.url, dest, overwrite=args.overwrite, timeout=args.timeout)
    print(json.dumps(download_json(path)) if args.json else f"saved to {path}")
    return Exit.OK


async def fake_server(args: argparse.Namespace) -> int:
    """Serve the fake API until interrupted."""
    from vidgo_async.testing import serve

    try:
        await serve(
            args.port, host=args.host, api_key=args.api_key, callback_proxy=args.callback_proxy
        )
    except OSError as exc:  # the port is taken, or the interface is not this machine's
        raise CommandError(
            f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}):"
            " choose another with --port (or --host)"
        ) from None
    return Exit.OK


async def demo(args: argparse.Namespace) -> int:
    """A real batch against an in-process fake server with injected faults."""
    from vidgo_async.testing import FakeVidgo

    count = args.count
    async with FakeVidgo(
        api_key="demo-key",
        queue_time=0.05,
        run_time=0.3,
        wav_size=64 * 1024,
        conflict_includes_task_id=True,
        seed=7,
    ) as fake:
        fake.set_fault_rates(
            {"server_error": 0.05, "rate_limited": 0.03, "reset_before": 0.01},
            routes=("submit", "detail"),
        )
        if args.with_failures:
            for index in range(0, count, 50):
                fake.fail(_demo_audio(index), "demo: the source track was silent")
        print(
            f"demo: {count} conversions against a fake Vidgo API at {fake.url}"
            " (with injected 5xx, 429 and resets)",
            file=sys.stderr,
        )
        client = VidgoClient(
            "demo-key",
            base_url=fake.url,
            max_polls_per_second=500.0,
            poll=PollPolicy(initial=0.05, factor=1.5, max_interval=0.5),
            retry=RetryPolicy(base_delay=0.01, max_delay=0.2, max_retry_after=0.5),
        )
        pairs = _demo_pairs(count)
        with tempfile.TemporaryDirectory(prefix="vidgo-demo-") as scratch:
            options = BatchOptions(
                json=args.json,
                verbose=args.verbose > 0,
                timeout=60.0,
                download=check_download_folder(args.download) if args.download else Path(scratch),
            )
            async with client:
                return await run_batch(client, options, pairs, count)


async def _demo_pairs(count: int) -> AsyncIterator[tuple[str, str]]:
    for index in range(count):
        yield f"demo-music-{index // 2:04d}", _demo_audio(index)


def _demo_audio(index: int) -> str:
    return f"demo-audio-{index:04d}"
