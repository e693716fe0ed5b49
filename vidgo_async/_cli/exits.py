"""Exit statuses of the CLI, and failures as one clear line in the CLI's own words.

The library names its Python arguments in messages (``pass overwrite=True``);
here, at the CLI boundary, they become flags (``pass --overwrite``).
"""

from __future__ import annotations

import enum
import re
import signal

from vidgo_async.errors import (
    AlreadyConvertedError,
    AuthenticationError,
    InsufficientCreditsError,
    PermissionDeniedError,
    SubmitOutcomeUnknownError,
    TaskTimeoutError,
)

__all__ = [
    "ACCOUNT_REFUSALS",
    "CommandError",
    "Exit",
    "Interrupted",
    "UsageError",
    "account_advice",
    "flags",
    "hint",
    "one_line",
]


class Exit(enum.IntEnum):
    """The exit statuses, as ``--help`` documents them."""

    OK = 0  # every item succeeded
    FAILED = 1  # some item failed
    USAGE = 2  # bad arguments or input, found before any request
    ACCOUNT = 3  # the API refused the account (401, 402, 403): nothing more was tried
    INTERRUPTED = 130  # Ctrl-C; SIGTERM 143, SIGHUP 129 (128 + the signal number)


#: Refusals of the whole account: no other pair can succeed until the user acts.
ACCOUNT_REFUSALS = (AuthenticationError, InsufficientCreditsError, PermissionDeniedError)


class CommandError(Exception):
    """A command ends with this one-line message and exit status."""

    def __init__(self, message: str, code: int = Exit.FAILED) -> None:
        super().__init__(message)
        self.code = code


class UsageError(CommandError):
    """Something checked before any request is wrong: exit status 2."""

    def __init__(self, message: str) -> None:
        super().__init__(message, Exit.USAGE)


class Interrupted(Exception):
    """A signal stopped the command (exit status 128 + its number)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.code = 128 + signum


# Python argument names in library messages, and the flags the CLI user knows them by.
_FLAGS = {
    "api_key": "--api-key",
    "base_url": "--base-url",
    "overwrite": "--overwrite",
    "timeout": "--timeout",
    "concurrency": "--concurrency",
    "journal": "--journal",
    "download_to": "--download",
    "max_polls_per_second": "--max-polls-per-second",
    "max_submits_per_second": "--max-submits-per-second",
}
# A name with an underscore is code wherever it stands; a plain word only with ``=value``.
_PYTHON_ARGUMENT = re.compile(
    r"\b(?:(?P<code>" + "|".join(name for name in _FLAGS if "_" in name) + r")\b(?:=[^\s,;)]+)?"
    r"|(?P<word>" + "|".join(_FLAGS) + r")=[^\s,;)]+)"
)


def flags(text: str) -> str:
    """``text`` with Python arguments (``overwrite=True``) named as flags (``--overwrite``)."""
    return _PYTHON_ARGUMENT.sub(lambda match: _FLAGS[match["code"] or match["word"]], text)


def one_line(exc: BaseException) -> str:
    """``ErrorType: message`` on one line, in the CLI's words."""
    text = " ".join(str(exc).split())
    return flags(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def account_advice(exc: BaseException) -> str:
    """What the user can do about an account-level refusal."""
    if isinstance(exc, AuthenticationError):
        return "the API key was refused: check --api-key or VIDGO_API_KEY"
    if isinstance(exc, InsufficientCreditsError):
        return "the account is out of credits: top it up"
    return "the account may not do this: check its permissions"


def hint(exc: BaseException, task_id: str | None, journal: str | None) -> str:
    """Advice to append to a failure's line ('' when there is none)."""
    if isinstance(exc, AlreadyConvertedError):
        where = f"the journal {journal} has no record of it" if journal else "no journal was kept"
        return (
            f"this track was converted before and {where}; its WAV URL is on that conversion"
            " task: find the task id (earlier output, the Vidgo dashboard) and run"
            " `vidgo-async status TASK_ID`"
        )
    if isinstance(exc, TaskTimeoutError):
        if journal:
            return f"the task still runs: re-run the same command to wait on (journal {journal})"
        return f"the task still runs: `vidgo-async status {task_id or 'TASK_ID'}` shows it"
    if isinstance(exc, SubmitOutcomeUnknownError):
        if journal:
            return f"re-run the same command: the journal {journal} never submits it blindly again"
        return "the track may have been converted: check it before submitting again"
    return ""
