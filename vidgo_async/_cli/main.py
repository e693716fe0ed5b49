"""``main``: run a command; signals, logging, and every failure as one line and an exit status."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sqlite3
import sys
from collections.abc import Sequence

from vidgo_async.errors import ConfigurationError, VidgoError

from .args import build_parser
from .exits import (
    ACCOUNT_REFUSALS,
    CommandError,
    Exit,
    Interrupted,
    account_advice,
    flags,
    one_line,
)

__all__ = ["main"]

logger = logging.getLogger("vidgo_async")

# Signals that stop a command the way Ctrl-C does: cleanly, the journal intact.
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; the exit status."""
    if sys.stderr is None:  # closed (`2>&-`): what the command says there goes nowhere
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the process's, for its life
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return int(asyncio.run(_run(args)))
    except Interrupted as exc:
        _error(f"interrupted by {exc}")
        return exc.code
    except KeyboardInterrupt:  # a Ctrl-C before or after the loop's handlers
        _error("interrupted")
        return Exit.INTERRUPTED
    except CommandError as exc:
        _error(f"error: {exc}")
        return exc.code
    except ACCOUNT_REFUSALS as exc:
        _error(f"error: {one_line(exc)} - {account_advice(exc)}")
        return Exit.ACCOUNT
    except ConfigurationError as exc:
        _error(f"error: {flags(str(exc))}")
        return Exit.USAGE
    except BrokenPipeError:  # stdout closed early (`| head`): the batch stopped cleanly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        _error("stopped: the output was closed early")
        return Exit.FAILED
    except sqlite3.Error as exc:  # checked before the start; this is trouble on the way
        _error(f"error: the journal failed: {one_line(exc)}")
        return Exit.FAILED
    except (VidgoError, OSError) as exc:
        _error(f"error: {one_line(exc)}")
        return Exit.FAILED
    except (ValueError, TypeError) as exc:  # the SDK refused an argument before any request
        _error(f"error: {one_line(exc)}")
        return Exit.USAGE
    except Exception as exc:  # a bug: still one line; -vv logs the traceback
        logger.debug("unexpected error", exc_info=True)
        _error(f"internal error: {one_line(exc)} (please report it; -vv shows the traceback)")
        return Exit.FAILED


async def _run(args: argparse.Namespace) -> int:
    """Run the command; SIGINT, SIGTERM and SIGHUP cancel it (raising :class:`Interrupted`)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    caught: list[int] = []

    def stop(signum: int) -> None:
        # Once: the batch is stopping, and its submits in flight are answered (each
        # within its request timeout); a second or third signal must not cut it short.
        if not caught:
            task.cancel()
        caught.append(signum)

    installed = []
    for signum in _STOP_SIGNALS:
        try:
            loop.add_signal_handler(signum, stop, signum)
        except (NotImplementedError, RuntimeError, ValueError):  # Windows, not main thread
            continue
        installed.append(signum)
    try:
        return int(await args.handler(args))
    except asyncio.CancelledError:
        if not caught:
            raise
        raise Interrupted(caught[0]) from None
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _configure_logging(verbosity: int) -> None:
    """The SDK's warnings on stderr (persistent failures, lost callbacks); ``-v``: its
    INFO records too; ``-vv``: DEBUG. (An application may configure logging; the
    library never does.)"""
    handler = _StderrHandler()
    if verbosity <= 0:
        handler.setFormatter(logging.Formatter("vidgo-async: %(levelname)s: %(message)s"))
        level = logging.WARNING
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        level = logging.INFO if verbosity == 1 else logging.DEBUG
    logger.addHandler(handler)
    logger.setLevel(level)


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at the time, so that records go above
    the live progress bar (rich redirects ``sys.stderr`` while it shows)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:
            self.handleError(record)


def _error(text: str) -> None:
    try:
        print(f"vidgo-async: {text}", file=sys.stderr, flush=True)
    except OSError:  # stderr is gone too (`2>&1 | head`): nowhere to say it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stderr.fileno())
