"""Checks of caller arguments, run before any request is sent."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from yarl import URL

__all__ = ["MAX_ID", "check_callback_url", "check_id", "check_input", "check_timeout"]

MAX_ID = 256
MAX_CALLBACK_URL = 2048


def check_id(name: str, value: object) -> str:
    """``value`` if it is a usable id (task, audio or model name).

    Raises:
        TypeError: It is not a string.
        ValueError: It is empty, blank, over 256 characters or has control characters.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must not be empty or blank")
    if len(value) > MAX_ID:
        raise ValueError(f"{name} must be at most {MAX_ID} characters, got {len(value)}")
    if any(ord(char) < 32 or 127 <= ord(char) < 160 for char in value):
        raise ValueError(f"{name} must not contain control characters: {value[:40]!r}")
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
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds or None, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


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
    except (TypeError, ValueError) as exc:
        raise TypeError(f"input must be JSON-serializable: {exc}") from exc
    return copy
