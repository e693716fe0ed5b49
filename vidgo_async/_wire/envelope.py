"""The API's answer envelope: JSON ``{"code", "data", ...}``, read into ``data`` or an error.

Lenient about how errors are worded (``error.message``, ``message`` or
``msg``; a JSON ``code`` that overrides an HTTP 200) and strict about
what a success must carry. Every failure is a :mod:`vidgo_async.errors` type.
"""

from __future__ import annotations

import email.utils
import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ..errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InsufficientCreditsError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
)
from .convert import server_id

__all__ = [
    "MAX_BODY",
    "REDACTED",
    "api_error",
    "envelope_data",
    "excerpt",
    "parse_retry_after",
    "redact",
]

#: Largest response body read, in bytes; the rest is never buffered.
MAX_BODY = 1024 * 1024
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
}


#: What stands in for a secret in any text we repeat.
REDACTED = "[redacted]"


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` replaced."""
    return text.replace(secret, REDACTED) if secret and secret in text else text


def excerpt(body: bytes | str, limit: int = 160) -> str:
    """A short, single-line, escaped excerpt of a body for error messages."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def envelope_data(status: int, headers: Mapping[str, str], raw: bytes, complete: bool) -> Any:
    if complete:
        try:
            payload, problem = json.loads(raw.decode("utf-8")), None
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            payload, problem = _not_utf8_json(raw)
    else:
        payload, problem = None, f"a body over {MAX_BODY} bytes"
    if 300 <= status < 400:
        # The API documents no redirect; following one would carry the key elsewhere.
        where = headers.get("Location", "nowhere")
        raise InvalidResponseError(
            f"unexpected redirect to {excerpt(where, 80)}", status=status, excerpt=excerpt(raw)
        )
    if not 200 <= status < 300:
        message = _message(payload, raw) if problem is None else _describe_body(raw, problem)
        raise api_error(status, None, message, payload, _retry_after(headers))
    if problem is not None:
        raise InvalidResponseError(
            f"expected a JSON envelope, got {problem}", status=status, excerpt=excerpt(raw)
        )
    if not isinstance(payload, dict):
        raise InvalidResponseError("expected a JSON object", status=status, excerpt=excerpt(raw))
    code = _code(payload.get("code", 200))
    if code is None:
        raise InvalidResponseError(
            "envelope code is not a number", status=status, excerpt=excerpt(raw)
        )
    if code != 200:
        raise api_error(code, code, _message(payload, raw), payload, _retry_after(headers))
    if "data" not in payload:
        raise InvalidResponseError("envelope has no data", status=status, excerpt=excerpt(raw))
    return payload["data"]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    return parse_retry_after(headers.get("Retry-After"), cap=float("inf"))


def _not_utf8_json(raw: bytes) -> tuple[Any, str | None]:
    """A body that is not UTF-8 JSON: maybe UTF-16 or UTF-32 JSON, else what it is."""
    if not raw.strip():
        return None, "an empty body"
    try:
        return json.loads(raw), None  # UTF-16 or UTF-32, which JSON allows
    except (ValueError, RecursionError):
        head = raw.lstrip()[:15].lower()
        return None, "HTML" if head.startswith((b"<!doctype", b"<html")) else "a non-JSON body"


def _describe_body(raw: bytes, problem: str) -> str:
    return f"{problem}: {excerpt(raw)}" if raw.strip() else problem


def _code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = value.strip() if isinstance(value, str) else ""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def _message(payload: Any, raw: bytes) -> str:
    if not isinstance(payload, dict):
        return excerpt(raw) if payload is not None else "no message"
    error = payload.get("error")
    candidates = [error.get("message") if isinstance(error, dict) else error]
    candidates += [payload.get("message"), payload.get("msg")]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return excerpt(candidate, 300)
    return "no message"


def api_error(
    status: int, code: int | None, message: str, payload: Any, retry_after: float | None
) -> APIError:
    """The :class:`APIError` subclass for ``status`` (an HTTP status or a JSON code)."""
    if status == 429:
        return RateLimitError(message, status=status, code=code, retry_after=retry_after)
    if 500 <= status < 600:
        return ServerError(message, status=status, code=code, retry_after=retry_after)
    if status == 409:
        return ConflictError(message, status=status, code=code, task_id=_conflict_task(payload))
    return _BY_STATUS.get(status, APIError)(message, status=status, code=code)


def _conflict_task(payload: Any) -> str | None:
    data = payload.get("data") if isinstance(payload, dict) else None
    task_id = data.get("task_id") if isinstance(data, dict) else None
    try:
        return None if task_id is None else server_id(task_id)
    except InvalidResponseError:
        return None


def parse_retry_after(value: str | None, *, cap: float, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for, capped; ``None`` if unusable.

    Accepts delta-seconds (``"120"``, ``"1.5"``) and HTTP dates. Negative
    values and past dates mean "now" (0); junk, NaN and infinities are
    ignored (``None``), so the caller's own backoff applies.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds: float | None
    try:
        seconds = float(text)
    except ValueError:
        seconds = _seconds_until_http_date(text, now)
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)


def _seconds_until_http_date(text: str, now: float | None) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    reference = datetime.now(timezone.utc).timestamp() if now is None else now
    return when.timestamp() - reference
