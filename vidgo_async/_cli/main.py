"""The ``vidgo-async`` command line: a thin shell over the public async API."""

from __future__ import annotations

import argparse
import asyncio
import codecs
import io
import json
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, aclosing
from pathlib import Path
from typing import IO, Any

from ._cli_args import Parser, port, positive_int, positive_number
from ._cli_input import BadRow, InputError, read_pairs
from ._cli_progress import make_reporter, print_summary, summary_rows
from ._client import VidgoClient
from ._config import DEFAULT_TIMEOUT, PollPolicy, RetryPolicy
from ._download import DOWNLOAD_TIMEOUT
from ._models import ConversionResult, Task
from .errors import ConfigurationError, VidgoError

__all__ = ["main"]

EXAMPLES = """\
examples:
  vidgo-async demo                                   # a batch against a built-in fake, offline
  vidgo-async wav 5c79xxxxbe8e e231xxxx-8cadc7dc --download track.wav
  vidgo-async batch pairs.csv --journal wav.sqlite --download wavs/ --output results.jsonl
  cat pairs.jsonl | vidgo-async batch - --json
  vidgo-async status task-unified-1757165031-uyujaw3d
  vidgo-async download https://storage.vidgo.ai/x.wav track.wav
  vidgo-async fake-server --port 8080                # the fake API, for local development
  export VIDGO_BASE_URL=http://127.0.0.1:8080 VIDGO_API_KEY=test-key
  vidgo-async batch pairs.csv --max-polls-per-second 500   # against that fake

batch input: CSV with a header naming task_id and audio_id, or JSON lines
({"task_id": ..., "audio_id": ...}). Exit status: 0 if every item succeeded,
1 if some failed, 2 for usage errors. The API key comes from --api-key or
VIDGO_API_KEY.
"""

_SECONDS = positive_number("seconds")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; the exit status."""
    args = _parser().parse_args(argv)
    try:
        return int(asyncio.run(args.handler(args)))
    except KeyboardInterrupt:
        print("vidgo-async: interrupted", file=sys.stderr)
        return 130
    except (ConfigurationError, InputError) as exc:
        print(f"vidgo-async: error: {exc}", file=sys.stderr)
        return 2
    except (VidgoError, OSError, ValueError, TypeError) as exc:
        print(f"vidgo-async: error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="vidgo-async",
        description="Convert Vidgo music tracks to WAV, one or thousands at a time.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = Parser(add_help=False)
    common.add_argument("--api-key", help="API key (default: $VIDGO_API_KEY)")
    common.add_argument("--base-url", help="API base URL (default: $VIDGO_BASE_URL or vendor's)")
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    common.add_argument(
        "--max-polls-per-second",
        type=positive_number("requests a second"),
        default=10.0,
        metavar="N",
        help="cap on status requests per second (default 10; raise it for the fake server)",
    )

    wav = commands.add_parser("wav", parents=[common], help="convert one track to WAV")
    wav.add_argument("task_id")
    wav.add_argument("audio_id")
    wav.add_argument("--timeout", type=_SECONDS, default=DEFAULT_TIMEOUT, help="seconds to wait")
    wav.add_argument("--download", metavar="PATH", help="also download the WAV to PATH")
    wav.set_defaults(handler=_wav)

    batch = commands.add_parser("batch", parents=[common], help="convert many tracks")
    batch.add_argument("file", help="CSV or JSONL of task_id,audio_id; - for stdin")
    _batch_options(batch)
    batch.set_defaults(handler=_batch)

    status = commands.add_parser("status", parents=[common], help="show a task")
    status.add_argument("task_id")
    status.set_defaults(handler=_status)

    download = commands.add_parser("download", parents=[common], help="download a WAV URL")
    download.add_argument("url")
    download.add_argument("dest")
    download.add_argument("--overwrite", action="store_true")
    download.add_argument(
        "--timeout",
        type=_SECONDS,
        default=DOWNLOAD_TIMEOUT,
        help="seconds for the whole download, retries included (default %(default)g)",
    )
    download.set_defaults(handler=_download)

    fake = commands.add_parser("fake-server", help="serve the fake API for local development")
    fake.add_argument("--port", type=port, default=8080)
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--api-key", default="test-key")
    fake.set_defaults(handler=_fake_server)

    demo = commands.add_parser("demo", help="a real batch against an in-process fake, offline")
    demo.add_argument("--count", type=positive_int, default=200, help="conversions (default 200)")
    demo.add_argument("--download", metavar="DIR", help="keep the WAVs in DIR")
    demo.add_argument("--with-failures", action="store_true", help="make a few tasks fail")
    demo.add_argument("--json", action="store_true", help="print results as JSON lines")
    demo.set_defaults(handler=_demo)
    return parser


def _batch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--concurrency", type=positive_int, default=32, help="submits in flight")
    parser.add_argument("--journal", metavar="PATH", help="SQLite journal; re-run to resume")
    parser.add_argument("--download", metavar="DIR", help="download the WAVs into DIR")
    parser.add_argument("--output", metavar="PATH", help="write results as JSON lines")
    parser.add_argument("--timeout", type=_SECONDS, default=DEFAULT_TIMEOUT, help="per pair")


def _client(args: argparse.Namespace, **kwargs: Any) -> VidgoClient:
    rate = args.max_polls_per_second
    return VidgoClient(args.api_key, base_url=args.base_url, max_polls_per_second=rate, **kwargs)


async def _wav(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        url = await client.convert_to_wav(args.task_id, args.audio_id, timeout=args.timeout)
        path = await client.download(url, args.download) if args.download else None
    if args.json:
        print(json.dumps({"wav_url": url, "path": str(path) if path else None}))
    else:
        print(url if path is None else f"{url}\nsaved to {path}")
    return 0


async def _status(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        task = await client.get_task(args.task_id)
    print(json.dumps(_task_json(task)) if args.json else _task_text(task))
    return 0


async def _download(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        path = await client.download(
            args.url, args.dest, overwrite=args.overwrite, timeout=args.timeout
        )
    print(json.dumps({"path": str(path)}) if args.json else f"saved to {path}")
    return 0


async def _fake_server(args: argparse.Namespace) -> int:
    from .testing import serve

    await serve(args.port, host=args.host, api_key=args.api_key)
    return 0


async def _batch(args: argparse.Namespace) -> int:
    source: IO[str]
    with ExitStack() as stack:
        if args.file == "-":
            # Bytes that are not UTF-8 become per-line reports, not the end of the batch.
            source = io.TextIOWrapper(
                sys.stdin.buffer, encoding="utf-8-sig", errors="surrogateescape", newline=""
            )
            total = None
        else:
            source = stack.enter_context(_open_input(args.file))
            total = _count_rows(Path(args.file))
        async with _client(args) as client:
            return await run_batch(client, args, read_pairs(source, args.file), total)


async def _demo(args: argparse.Namespace) -> int:
    from .testing import FakeVidgo

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
        pairs = ((f"demo-music-{i // 2:04d}", _demo_audio(i)) for i in range(count))
        with tempfile.TemporaryDirectory(prefix="vidgo-demo-") as scratch:
            options = argparse.Namespace(
                json=args.json,
                concurrency=32,
                journal=None,
                output=None,
                download=args.download or scratch,
                timeout=60.0,
                verbose=True,
            )
            async with client:
                return await run_batch(client, options, pairs, count)


def _demo_audio(index: int) -> str:
    return f"demo-audio-{index:04d}"


async def run_batch(
    client: VidgoClient,
    args: argparse.Namespace,
    rows: Iterator[tuple[str, str] | BadRow],
    total: int | None,
) -> int:
    """Convert ``rows``, reporting progress, results and a summary; the exit status."""
    counts: Counter[str] = Counter()
    verbose = getattr(args, "verbose", False)
    with ExitStack() as stack:
        output = stack.enter_context(open(args.output, "w")) if args.output else None  # noqa: ASYNC230
        reporter = stack.enter_context(make_reporter(total))

        def good_rows() -> Iterator[tuple[str, str]]:
            for row in rows:
                if isinstance(row, BadRow):
                    counts["bad input row"] += 1
                    reporter.line(f"line {row.line}: skipped: {row.reason}")
                else:
                    yield row

        results = client.convert_many(
            good_rows(),
            concurrency=args.concurrency,
            timeout=args.timeout,
            journal=args.journal,
            download_to=args.download,
        )
        async with aclosing(results):
            done = succeeded = 0
            async for result in results:
                done += 1
                succeeded += result.ok
                counts["ok" if result.ok else type(result.error).__name__] += 1
                record = _result_json(result)
                if output is not None:
                    output.write(json.dumps(record) + "\n")
                if args.json:
                    print(json.dumps(record), flush=True)
                elif verbose and result.ok:
                    reporter.line(f"ok {result.audio_id} -> {result.wav_url}")
                reporter.update(_progress(done, succeeded, total), result)
    print_summary(summary_rows(counts), sys.stderr)
    if not counts:
        reporter_line = "vidgo-async: no pairs in the input"
        print(reporter_line, file=sys.stderr)
        return 0
    return 0 if set(counts) == {"ok"} else 1


def _progress(done: int, succeeded: int, total: int | None) -> Any:
    from ._batch import BatchProgress

    return BatchProgress(
        read=total or done,
        done=done,
        succeeded=succeeded,
        failed=done - succeeded,
        in_flight=max(0, (total or done) - done),
        input_done=total is not None,
    )


def _open_input(name: str) -> IO[str]:
    """The batch input file, open; an unreadable one is a usage error (exit 2)."""
    try:
        # The caller closes it. A local file opened once: not worth a thread.
        return open(name, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except OSError as exc:
        raise InputError(f"cannot read {name}: {exc.strerror or type(exc).__name__}") from None


def _count_rows(path: Path) -> int | None:
    """Data rows of ``path`` (non-blank lines, less a CSV header), for the progress total."""
    lines, first = 0, b""
    try:
        with path.open("rb") as stream:
            for line in stream:
                if line.strip():
                    first = first or line.removeprefix(codecs.BOM_UTF8).lstrip()[:1]
                    lines += 1
    except OSError:
        return None
    return max(0, lines - (0 if first == b"{" else 1))


def _result_json(result: ConversionResult) -> dict[str, Any]:
    return {
        "task_id": result.source_task_id,
        "audio_id": result.audio_id,
        "conversion_task_id": result.task_id,
        "ok": result.ok,
        "wav_url": result.wav_url,
        "path": os.fspath(result.path) if result.path else None,
        "error": None if result.error is None else _one_line(result.error),
        "error_type": None if result.error is None else type(result.error).__name__,
    }


def _task_json(task: Task) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "status": task.status.value,
        "progress": task.progress,
        "wav_url": task.wav_url,
        "error_message": task.error_message,
        "created_time": task.created_time.isoformat() if task.created_time else None,
    }


def _task_text(task: Task) -> str:
    parts = [f"{task.task_id}: {task.status.value}"]
    if task.progress is not None:
        parts.append(f"{task.progress:g}%")
    if task.wav_url:
        parts.append(task.wav_url)
    if task.error_message:
        parts.append(f"error: {task.error_message}")
    return " ".join(parts)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"
