"""The API's answer envelope: JSON ``{"code", "data", ...}``, read into ``data`` or an error.

Lenient about how errors are worded (``error.message``, ``message`` or
``msg``; a JSON ``code`` that overrides an HTTP 200) and strict about
what a success must carry. Every failure is a :mod:`vidgo_async.errors` type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ._retry import parse_retry_after
from .errors import (
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

__all__ = ["MAX_BODY", "api_error", "envelope_data", "excerpt"]

#: Largest response body read, in bytes; the rest is never buffered.
MAX_BODY = 1024 * 1024
_raw_decode = json.JSONDecoder().raw_decode
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
}


def excerpt(body: bytes | str, limit: int = 160) -> str:
    """A short, single-line, escaped excerpt of a body for error messages."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def envelope_data(status: int, headers: Mapping[str, str], raw: bytes, complete: bool) -> Any:
    if complete:
        try:
            payload, problem = _loads(raw.decode("utf-8")), None
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
        message = _message(payload) if problem is None else _describe_body(raw, problem)
        raise api_error(status, None, message, payload, _retry_after(headers))
    if problem is not None:
        raise InvalidResponseError(
            f"expected a JSON envelope, got {problem}", status=status, excerpt=excerpt(raw)
        )
    if not isinstance(payload, dict):
        raise InvalidResponseError("expected a JSON object", status=status, excerpt=excerpt(raw))
    code = payload.get("code", 200)
    if code != 200 or type(code) is not int:  # the usual answer, checked without a call
        code = _code(code)
        if code is None:
            raise InvalidResponseError(
                "envelope code is not a number", status=status, excerpt=excerpt(raw)
            )
        if code != 200:
            raise api_error(code, code, _message(payload), payload, _retry_after(headers))
    if "data" not in payload:
        raise InvalidResponseError("envelope has no data", status=status, excerpt=excerpt(raw))
    return payload["data"]


def _retry_after(headers: Mapping[str, str]) -> float | None:
    return parse_retry_after(headers.get("Retry-After"), cap=float("inf"))


def _loads(text: str) -> Any:
    """``json.loads(text)``, with fewer steps for the usual body: one JSON document,
    maybe followed by whitespace (anything else, and every error, goes to ``json.loads``).

    Bodies are decoded first: ``json.loads(bytes)`` would sniff their encoding.
    """
    try:
        value, end = _raw_decode(text)
    except ValueError:
        return json.loads(text)  # leading whitespace, or its error
    if end != len(text) and text[end:].strip(" \t\n\r"):  # not just JSON's whitespace
        return json.loads(text)  # its "extra data" error
    return value


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
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _message(payload: Any) -> str:
    if not isinstance(payload, dict):
        return excerpt(json.dumps(payload)) if payload is not None else "no message"
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
    if isinstance(task_id, int) and not isinstance(task_id, bool):
        return str(task_id)  # ids are strings in the docs, integers on some platforms
    return task_id if isinstance(task_id, str) and task_id.strip() else None
