"""Checks of caller arguments, run before any request is sent."""

from __future__ import annotations

import inspect
import ipaddress
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from ._config import PollPolicy, RetryPolicy, Timeouts, finite_number
from ._models import TaskHandle
from ._timing.deadline import Deadline
from .errors import ConfigurationError

__all__ = [
    "MAX_CALLBACK_URL",
    "MAX_ID",
    "api_key_from",
    "base_url_from",
    "check_callback_url",
    "check_count",
    "check_folder",
    "check_id",
    "check_input",
    "check_options",
    "check_rate",
    "check_timeout",
    "deadline_after",
    "handle_from",
    "is_loopback",
    "wav_input",
]

MAX_ID = 256
MAX_CALLBACK_URL = 2048
DEFAULT_BASE_URL = "https://api.vidgo.ai"
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def check_id(name: str, value: object) -> str:
    """``value`` if it is a usable id (task, audio or model name).

    Raises:
        TypeError: It is not a string.
        ValueError: It is empty, blank, over 256 characters or has control characters.
    """
    if (
        type(value) is str
        and value.isprintable()  # so it has no control character
        and 0 < len(value) <= MAX_ID
        and not value.isspace()
    ):
        return value  # the usual id, checked fast
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty or blank")
    if len(value) > MAX_ID:
        raise ValueError(f"{name} must be at most {MAX_ID} characters, got {len(value)}")
    if _CONTROL.search(value):
        raise ValueError(f"{name} must not contain control characters: {value[:40]!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} must be valid Unicode text: {value[:40]!r}") from None
    return value


def check_callback_url(value: object) -> str | None:
    """``value`` if it is ``None`` or an absolute http(s) URL of at most 2048 characters.

    Raises:
        TypeError: It is not a string.
        ValueError: It is not such a URL.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"callback_url must be a str, got {type(value).__name__}")
    if len(value) > MAX_CALLBACK_URL:
        raise ValueError(f"callback_url must be at most {MAX_CALLBACK_URL} characters")
    if any(ord(char) < 33 for char in value):
        raise ValueError("callback_url must not contain whitespace or control characters")
    try:
        url = URL(value)
    except ValueError as exc:
        raise ValueError(f"callback_url is not a URL: {value[:80]!r}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"callback_url must be an absolute http(s) URL, got {value[:80]!r}")
    return value


def check_timeout(value: object, *, name: str = "timeout") -> float | None:
    """``value`` if it is ``None`` (no deadline) or a finite number of seconds > 0.

    Raises:
        TypeError: It is not a number.
        ValueError: It is not positive and finite.
    """
    return None if value is None else check_rate(name, value)


def check_input(value: object) -> dict[str, Any]:
    """A copy of a submit ``input`` mapping, its ``task_id``/``audio_id`` checked.

    Raises:
        TypeError: It is not a mapping with string keys.
        ValueError: An id in it is unusable.
    """
    if not isinstance(value, Mapping):
        raise TypeError(f"input must be a mapping, got {type(value).__name__}")
    copy = dict(value)
    for key in copy:
        if not isinstance(key, str):
            raise TypeError(f"input keys must be str, got {key!r}")
    for key in ("task_id", "audio_id"):
        if key in copy:
            check_id(f"input[{key!r}]", copy[key])
    try:
        json.dumps(copy, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"input must be JSON-serializable: {exc}") from exc
    return copy


def api_key_from(value: str | None) -> str:
    """The API key given, else ``VIDGO_API_KEY``.

    Raises:
        TypeError: ``value`` is not a string.
        ConfigurationError: No usable key.
    """
    if value is not None and not isinstance(value, str):
        raise TypeError(f"api_key must be a str, got {type(value).__name__}")
    key = os.environ.get("VIDGO_API_KEY") if value is None else value
    if not isinstance(key, str) or not key.strip():
        raise ConfigurationError(
            "no API key: pass api_key=... or set the VIDGO_API_KEY environment variable"
        )
    if any(ord(char) < 33 or ord(char) == 127 for char in key):
        raise ConfigurationError("the API key contains whitespace or control characters")
    return key


def base_url_from(value: str | None) -> URL:
    """The base URL given, else ``VIDGO_BASE_URL``, else the vendor's.

    Raises:
        ConfigurationError: Not an absolute http(s) URL without credentials.
    """
    text = value if value is not None else os.environ.get("VIDGO_BASE_URL") or DEFAULT_BASE_URL
    try:
        url = URL(text)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"base_url is not a URL: {text!r:.80}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigurationError(f"base_url must be an absolute http(s) URL, got {text!r:.80}")
    if url.user or url.password or url.query_string or url.fragment:
        raise ConfigurationError("base_url must not carry credentials, a query or a fragment")
    return url.with_path(url.path.rstrip("/") or "/")


def check_count(name: str, value: object) -> int:
    """``value`` if it is an int >= 1.

    Raises:
        TypeError: It is not an int.
        ValueError: It is below 1.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def check_folder(name: str, value: str | os.PathLike[str] | None) -> Path | None:
    """``value`` as a directory, created if missing, and absolute (a journal keeps the
    paths of the files in it: a re-run from another directory finds them).

    Raises:
        ValueError: It cannot be one (a file is there, or it cannot be created).
    """
    if value is None:
        return None
    folder = Path(value)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file in its place, no permission ...
        reason = exc.strerror or type(exc).__name__
        raise ValueError(f"{name}: {str(folder)!r:.200} is no usable folder ({reason})") from None
    return folder.absolute()


def is_loopback(url: URL) -> bool:
    """Whether ``url`` points at this machine (the fake server in tests)."""
    host = url.host or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def wav_input(task_id: object, audio_id: object) -> dict[str, Any]:
    """The ``input`` of a WAV conversion, both ids checked."""
    return {"task_id": check_id("task_id", task_id), "audio_id": check_id("audio_id", audio_id)}


def handle_from(task_id: object) -> TaskHandle:
    """A handle for a task id or handle argument."""
    if isinstance(task_id, TaskHandle):
        check_id("handle.task_id", task_id.task_id)
        return task_id
    return TaskHandle(task_id=check_id("task_id", task_id))


def deadline_after(timeout: object) -> Deadline:
    """The deadline ``timeout`` seconds from now (``None``: never)."""
    return Deadline.after(check_timeout(timeout))


def check_rate(name: str, value: object) -> float:
    """``value`` if it is a finite number > 0.

    Raises:
        TypeError: It is not a number.
        ValueError: It is not finite and positive.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not (finite_number(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r:.40}")
    return float(value)


def _is_async(value: object) -> bool:
    """Whether calling ``value`` makes a coroutine: an ``async def``, or an object whose
    ``__call__`` is one."""
    return inspect.iscoroutinefunction(value) or inspect.iscoroutinefunction(type(value).__call__)


def check_options(**options: object) -> None:
    """Policy, session and callback arguments are of the right kinds (``session``
    may be None; ``on_event`` and ``on_progress`` are None or plain callables).

    Raises:
        TypeError: One is not.
    """
    kinds: dict[str, type] = {
        "retry": RetryPolicy,
        "poll": PollPolicy,
        "timeouts": Timeouts,
        "session": aiohttp.ClientSession,
    }
    for name, value in options.items():
        if name in ("on_event", "on_progress"):
            if value is not None and not callable(value):
                raise TypeError(f"{name} must be callable, got {type(value).__name__}")
            if value is not None and _is_async(value):  # its coroutines would never run
                raise TypeError(f"{name} must be a plain function: it is called, never awaited")
        elif not (value is None and name == "session") and not isinstance(value, kinds[name]):
            expected = kinds[name].__name__
            raise TypeError(f"{name} must be a {expected}, got {type(value).__name__}")
