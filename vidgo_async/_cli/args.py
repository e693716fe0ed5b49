"""The command line's syntax: the parser, its help, and argument types.

Bad values are usage errors (one line, exit status 2).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

from vidgo_async import DEFAULT_TIMEOUT, __version__

from . import batch, commands
from .checks import DEFAULT_JOURNAL, is_dsn
from .client import DOWNLOAD_TIMEOUT

__all__ = ["build_parser", "port"]

_EXAMPLES = """\
examples:
  vidgo-async demo                                   # a batch against a built-in fake, offline
  vidgo-async wav 5c79xxxxbe8e e231xxxx-8cadc7dc --download track.wav
  vidgo-async batch pairs.csv --download wavs/ --output results.jsonl
  cat pairs.jsonl | vidgo-async batch - --json
  vidgo-async status task-unified-1757165031-uyujaw3d
  vidgo-async download https://storage.vidgo.ai/x.wav track.wav
  vidgo-async fake-server --port 8080                # the fake API, for local development
  export VIDGO_BASE_URL=http://127.0.0.1:8080 VIDGO_API_KEY=test-key
  vidgo-async batch pairs.csv --max-polls-per-second 500   # against that fake
  vidgo-async batch pairs.csv --journal postgresql://app@db/app \
      --shared-quota postgresql://app@db/app          # on each host: one batch, one quota
"""

_INPUT = """\
batch input: CSV with a header naming task_id and audio_id, or JSON lines
({"task_id": ..., "audio_id": ...}); rows that are not a pair are reported and skipped.
"""

_JOURNAL = f"""\
journal: `wav` and `batch` record every submit in ./{DEFAULT_JOURNAL} (in the
directory they run from; --journal PATH for another, --no-journal for none).
Re-running a command there never converts a track twice: it prints the known
WAV URL, waits on tasks already submitted and submits only the rest.
With --journal postgresql://... (extra `postgres`), workers on several hosts
share one batch: each pair is claimed by one worker under a lease (30 s,
--journal-lease), converted once and reported by that worker only.
"""

_EXITS = """\
exit status:
  0    every item succeeded
  1    some item failed (a batch: each failure is printed; the others succeeded),
       or a batch skipped input rows that were not a pair
  2    usage error: bad flags or input, found before any request
  3    the API refused the account (401 key, 402 credits, 403 permission);
       a batch reads no more input, lets the pairs under way end (the tasks
       paid for are printed) and leaves the rest to a re-run
  130  interrupted by Ctrl-C (143 SIGTERM, 129 SIGHUP): in-flight work stops,
       the journal keeps every submitted task (without one, the tasks paid
       for and not finished are named); re-run to resume
"""

_ENVIRONMENT = """\
environment:
  VIDGO_API_KEY    the API key, when --api-key is not given
  VIDGO_BASE_URL   the API origin, when --base-url is not given (default https://api.vidgo.ai)
"""


def _epilog(*parts: str) -> str:
    return "\n".join(parts)


def build_parser() -> argparse.ArgumentParser:
    """The ``vidgo-async`` parser; each command's handler is its ``handler`` default."""
    parser = Parser(
        prog="vidgo-async",
        description="Convert Vidgo music tracks to WAV, one or thousands at a time.",
        epilog=_epilog(_EXAMPLES, _INPUT, _JOURNAL, _EXITS, _ENVIRONMENT),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _verbose(parser, default=0)
    commands_ = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    wav = commands_.add_parser(
        "wav",
        parents=[_api()],
        help="convert one track to WAV",
        description="Convert one track to WAV and print its URL (then download it, if asked).",
        epilog=_epilog(_JOURNAL, _EXITS, _ENVIRONMENT),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    wav.add_argument("task_id")
    wav.add_argument("audio_id")
    _timeout(wav, "to wait at most (default %(default)g)")
    wav.add_argument(
        "--download", metavar="DEST", help="also download the WAV (a file, or a folder)"
    )
    _overwrite(wav)
    _journal(wav)
    wav.set_defaults(handler=commands.wav)

    batch_ = commands_.add_parser(
        "batch",
        parents=[_api()],
        help="convert many tracks",
        description=(
            "Convert many tracks. Each paid WAV URL is printed on stdout as it comes, one\n"
            "line of tab-separated fields: ok (unsaved: its download failed), task_id,\n"
            "audio_id, the URL and, with --download, the file (--json: each result as a\n"
            "JSON object). A progress bar and a summary go to stderr."
        ),
        epilog=_epilog(_INPUT, _JOURNAL, _EXITS, _ENVIRONMENT),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    batch_.add_argument("file", help="CSV or JSONL of task_id,audio_id; - for stdin")
    batch_.add_argument(
        "--concurrency",
        type=positive_int,
        default=32,
        metavar="N",
        help="requests in flight at most: submits, status reads, downloads (default %(default)d)",
    )
    batch_.add_argument(
        "--download",
        metavar="DIR",
        help="download the WAVs into DIR, as AUDIO_ID.wav (a file of that name is replaced)",
    )
    batch_.add_argument("--output", metavar="PATH", help="write each result as a JSON line")
    _timeout(batch_, "to wait at most for each pair (default %(default)g)")
    _journal(batch_)
    batch_.set_defaults(handler=batch.batch)

    status = commands_.add_parser(
        "status",
        parents=[_api(submits=False)],
        help="show a task",
        description="Show a task's status and, once it finished, its WAV URL.",
    )
    status.add_argument("task_id")
    status.set_defaults(handler=commands.status)

    download = commands_.add_parser(
        "download", parents=[_output()], help="download a WAV URL (no API key needed)"
    )
    download.add_argument("url")
    download.add_argument("dest", help="a file, or a folder (named after the URL)")
    _overwrite(download)
    _timeout(download, "for all of it, retries included (default %(default)g)", DOWNLOAD_TIMEOUT)
    download.add_argument("--base-url", help=argparse.SUPPRESS)  # allows loopback storage
    download.set_defaults(handler=commands.download)

    fake = commands_.add_parser("fake-server", help="serve the fake API for local development")
    fake.add_argument("--port", type=port, default=8080, help="port to listen on (default 8080)")
    fake.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)"
    )
    fake.add_argument("--api-key", default="test-key", help="the key it accepts (default test-key)")
    fake.add_argument(
        "--callback-proxy",
        type=origin,
        metavar="ORIGIN",
        help="deliver every callback to ORIGIN (e.g. http://127.0.0.1:8081), its path and"
        " query kept, as the reverse proxy in front of a receiver whose public URL is a"
        " public name would",
    )
    _verbose(fake)
    fake.set_defaults(handler=commands.fake_server)

    demo = commands_.add_parser(
        "demo", parents=[_output()], help="a real batch against an in-process fake, offline"
    )
    demo.add_argument("--count", type=positive_int, default=200, help="conversions (default 200)")
    demo.add_argument(
        "--download",
        metavar="DIR",
        help="keep the WAVs in DIR (else they go to a temporary folder, removed at the end)",
    )
    demo.add_argument("--with-failures", action="store_true", help="make a few tasks fail")
    demo.set_defaults(handler=commands.demo)
    return parser


def _api(*, submits: bool = True) -> Parser:
    """Flags of the commands that call the API. Without ``submits`` (``status``), the
    submits' cap is still taken, for scripts passing one set of flags to every command,
    but not listed."""
    common = _output()
    common.add_argument(
        "--api-key",
        help="API key (default: $VIDGO_API_KEY, which is safer: a key on the command "
        "line shows in the process list and the shell's history)",
    )
    common.add_argument(
        "--base-url", help="API origin (default: $VIDGO_BASE_URL, else https://api.vidgo.ai)"
    )
    common.add_argument(
        "--max-polls-per-second",
        type=positive_number("requests a second"),
        default=10.0,
        metavar="N",
        help="cap on status requests per second (default 10; raise it for the fake server)",
    )
    common.add_argument(
        "--max-submits-per-second",
        type=positive_number("requests a second"),
        metavar="N",
        help=(
            "cap on submits per second, for a plan that limits them (default: none; a"
            " 429 pauses them)"
            if submits
            else argparse.SUPPRESS
        ),
    )
    caps = "--max-polls-per-second" + (" (and --max-submits-per-second)" if submits else "")
    common.add_argument(
        "--shared-quota",
        type=_dsn,
        metavar="DSN",
        help=f"share {caps} with every process using this postgresql:// database and"
        " namespace (extra `postgres`): the cap of them all together",
    )
    common.add_argument(
        "--quota-namespace",
        metavar="NAME",
        help="what the --shared-quota sharers have in common (default: derived from the API"
        " key, so that the processes using one key share its quota)",
    )
    return common


def _output() -> Parser:
    common = Parser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON instead of text")
    _verbose(common)
    return common


def _verbose(parser: argparse.ArgumentParser, default: object = argparse.SUPPRESS) -> None:
    # Given before or after the command; after it, it wins (SUPPRESS keeps the first).
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default,
        help="log the SDK's work to stderr (-v: INFO, -vv: DEBUG); the demo without --json also"
        " lists each success",
    )


def _timeout(parser: argparse.ArgumentParser, help: str, default: float = DEFAULT_TIMEOUT) -> None:
    parser.add_argument(
        "--timeout", type=_SECONDS, default=default, metavar="SECONDS", help=f"seconds {help}"
    )


def _overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")


def _journal(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--journal",
        metavar="PATH",
        help=f"SQLite journal of every submit (default ./{DEFAULT_JOURNAL}); re-run to resume;"
        " a postgresql:// DSN: a journal shared by workers on several hosts",
    )
    group.add_argument("--no-journal", action="store_true", help="keep no journal")
    parser.add_argument(
        "--journal-lease",
        type=_SECONDS,
        metavar="SECONDS",
        help="with a postgresql:// --journal: how long a worker's claim on a pair outlives"
        " its last renewal (default 30): a dead worker's pairs are taken over that late",
    )


class Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit status 2 (the subcommands inherit it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    value = _whole(text, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_number(what: str) -> Callable[[str], float]:
    """A type for finite numbers > 0, naming ``what`` they are in its errors."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(f"must be a positive number of {what}, got {text!r}")
        return value

    return parse


_SECONDS = positive_number("seconds")


def _dsn(text: str) -> str:
    if not is_dsn(text):
        raise argparse.ArgumentTypeError(
            "expected a postgresql:// connection string (yours is not repeated here,"
            " as it may hold a password)"
        )
    return text


def port(text: str) -> int:
    """A TCP port number (0 picks a free one)."""
    value = _whole(text, "a port number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be within 0-65535, got {value}")
    return value


def origin(text: str) -> str:
    """An http(s) origin: scheme, host and port, no path."""
    scheme, _, rest = text.partition("://")
    if scheme not in ("http", "https") or not rest or "/" in rest.rstrip("/"):
        raise argparse.ArgumentTypeError(
            f"expected an origin such as http://127.0.0.1:8081, got {text!r}"
        )
    return text


def _whole(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
