"""The API's answer envelope: JSON ``{"code", "data", ...}``, read into ``data`` or an error.

Lenient about how errors are worded (``error.message``, ``message`` or
``msg``; a JSON ``code`` that overrides an HTTP 200) and strict about
what a success must carry. Every failure is a :mod:`vidgo_async.errors` type.
The API key is redacted from what is read (``redaction.py``) before any of it
can be repeated.
"""

from __future__ import annotations

import email.utils
import json
import math
import re
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
from .redaction import REDACTED, may_hold, redact, redact_json

__all__ = [
    "MAX_BODY",
    "api_error",
    "envelope_data",
    "excerpt",
    "parse_retry_after",
]

#: Largest response body read, in bytes; the rest is never buffered.
MAX_BODY = 1024 * 1024
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: BadRequestError,
}


def excerpt(body: bytes | str, limit: int = 160) -> str:
    """A short, single-line, escaped excerpt of a body for error messages."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def envelope_data(
    status: int, headers: Mapping[str, str], raw: bytes, complete: bool, *, secret: str
) -> Any:
    """The envelope's ``data``, ``secret`` redacted from its strings (see :func:`redact_json`).

    Raises:
        APIError: An error status, or an error ``code`` in an HTTP 200.
        InvalidResponseError: A redirect, or a 2xx that is not the documented JSON.
    """
    if complete:
        payload, problem = _parse(raw, secret)
    else:
        payload, problem = None, f"a body over {MAX_BODY} bytes"
    if 300 <= status < 400:
        # The API documents no redirect; following one would carry the key elsewhere.
        where = redact(headers.get("Location", "nowhere"), secret)
        raise InvalidResponseError(
            f"unexpected redirect to {excerpt(where, 80)} (check base_url)",
            status=status,
            excerpt=_shown(raw, secret),
        )
    if not 200 <= status < 300:
        message = _error_message(payload, problem, raw, secret)
        raise _vendor_error(status, None, message, payload, _retry_after(headers))
    if problem is not None:
        raise InvalidResponseError(
            f"expected a JSON envelope, got {problem}",
            status=status,
            excerpt=_shown(raw, secret),
        )
    if not isinstance(payload, dict):
        raise InvalidResponseError(
            "expected a JSON object", status=status, excerpt=_shown(raw, secret)
        )
    code = _code(payload.get("code", 200))
    if code is None:
        raise InvalidResponseError(
            "envelope code is not a number", status=status, excerpt=_shown(raw, secret)
        )
    if not 200 <= code < 300:  # read like the HTTP status
        raise _vendor_error(code, code, _message(payload), payload, _retry_after(headers))
    if "data" not in payload:
        # Not even an object without its envelope is read as the data: a gateway's
        # {"status": "error", ...} would fail a paid task, and a submit answered with a
        # request id or an echo of the input would be taken as accepted.
        raise InvalidResponseError(
            "envelope has no data", status=status, excerpt=_shown(raw, secret)
        )
    return payload["data"]


def _parse(raw: bytes, secret: str) -> tuple[Any, str | None]:
    """The JSON payload of ``raw``, ``secret`` redacted from it, or what ``raw`` is instead."""
    try:
        text = raw.decode("utf-8")
        payload = json.loads(text)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        payload, problem = _not_utf8_json(raw)
        return redact_json(payload, secret), problem
    # Every poll comes here: walk only when a string may hold the key. The check
    # is on the decoded text, where a parsed string is a literal part of it
    # unless written with an escape, so no escaped form can slip past it.
    return (redact_json(payload, secret) if may_hold(text, secret) else payload), None


def _shown(raw: bytes, secret: str) -> str:
    """An excerpt of ``raw`` as text (in the encoding JSON detection finds), redacted
    before it is cut, so that no part of the key is left at the cut. The key's bytes
    go first, in each encoding the body may be in: a guess that decodes them as
    something else (ASCII read as UTF-16) would show them escaped, but whole."""
    if secret:
        for codec in ("utf-8", "utf-16-le", "utf-16-be"):
            raw = raw.replace(secret.encode(codec), REDACTED.encode(codec))
    return excerpt(redact(raw.decode(json.detect_encoding(raw), "replace"), secret))


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


def _error_message(payload: Any, problem: str | None, raw: bytes, secret: str) -> str:
    """The message of an error answer: the JSON one, else an excerpt of the body."""
    if problem is not None:
        return f"{problem}: {_shown(raw, secret)}" if raw.strip() else problem
    if isinstance(payload, dict):
        return _message(payload)
    return "no message" if payload is None else _shown(raw, secret)


def _code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):  # 200.0: the same JSON number, as some encoders write it
        return int(value) if value.is_integer() and abs(value) < 1e9 else None
    text = value.strip() if isinstance(value, str) else ""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None


def _message(payload: dict[str, Any]) -> str:
    """The message of a JSON error envelope (already redacted), cut and escaped."""
    said = _said(payload)
    return "no message" if said is None else excerpt(said, 300)


def _said(payload: Any) -> str | None:
    """The text of a JSON error envelope's message, as sent (already redacted)."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    candidates = [error.get("message") if isinstance(error, dict) else error]
    candidates += [payload.get("message"), payload.get("msg")]
    for candidate in candidates:
        if isinstance(candidate, str) and candidate.strip():
            return candidate
    return None


def _vendor_error(
    status: int, code: int | None, message: str, payload: Any, retry_after: float | None
) -> APIError:
    """:func:`api_error`, read as sister platforms of the API need (docs/vidgo-api.md:
    "read the message as well as the status"): a 429 may say the credits ran out;
    430, and 405 saying so, are "call frequency too high"; 455 is "maintenance"."""
    said = _said(payload) or message  # as sent: the message is escaped past ASCII
    said = _URL.sub(" ", said)  # a docs link (".../rate-limits") says nothing of this answer
    too_frequent = _TOO_FREQUENT.search(said) is not None
    if status == 429 and not too_frequent and _out_of_credits(said):
        return InsufficientCreditsError(message, status=status, code=code)
    if status == 430 or (status == 405 and too_frequent):
        return RateLimitError(message, status=status, code=code, retry_after=retry_after)
    if status == 455:
        return ServerError(message, status=status, code=code, retry_after=retry_after)
    return api_error(status, code, message, payload, retry_after)


def api_error(
    status: int,
    code: int | None,
    message: str,
    payload: Any,
    retry_after: float | None,
) -> APIError:
    """The :class:`APIError` subclass for ``status`` (an HTTP status or a JSON code)."""
    if status == 429:
        return RateLimitError(message, status=status, code=code, retry_after=retry_after)
    if 500 <= status < 600:
        return ServerError(message, status=status, code=code, retry_after=retry_after)
    if status == 409:
        return ConflictError(message, status=status, code=code, task_id=_conflict_task(payload))
    return _BY_STATUS.get(status, APIError)(message, status=status, code=code)


# Wording about asking too often, and about running short of credits (not a mention
# of them, as "... consumes credits"); English, and the Chinese of sister platforms.
_URL = re.compile(r"https?://\S+")
_TOO_FREQUENT = re.compile(
    r"frequen|too many|rate.?limit|throttl|too fast|too quickly|slow down|burst|concurren"
    r"|\brequests? per\b|(?<![a-z])(?:qps|rpm|tpm)(?![a-z])|频繁|并发|令牌桶|限流",
    re.IGNORECASE,
)
# Words of a rate: between "insufficient" and "credits" they make a rate's credits.
_RATE_WORDS = r"(?:limit|per|minute|hour|second|day|window|request|quer|call|rpm|tpm)\b"
_NO_CREDITS = re.compile(
    r"(?:\binsufficient|(?:\bnot|n't)(?: have)? enough|\bout of|\bran out|\brun out|\bno)[\W_]+"
    rf"(?:(?!{_RATE_WORDS})\w+[\W_]+){{0,2}}(?:credit|balance|fund)s?\b"
    r"|\binsufficient[\W_]+quota\b|\bexceeded your (?:current )?quota\b"
    r"|\brecharge\b|\btop[\s-]?up\b|\bsufficient funds\b|\badd (?:more )?funds\b"
    r"|\b(?:purchase|buy) (?:more )?credits\b|\bused (?:up )?all (?:of )?your credits\b"
    r"|\b(?:0|zero) credits\b|\bbalance (?:is )?(?:0|zero)\b|\bpayment required\b"
    r"|\b(?:spend|spending|credit) limit\b"
    r"|\boverdue\b|\barrearage\b|\baccount (?:is |has been )?suspended\b"
    r"|余额不足|余额不够|余额为\s*0|积分不足|额度不足|点数不足|次数不足|算力不足"
    r"|已用完|已用尽|已耗尽|欠费|充值|套餐已到期",
    re.IGNORECASE,
)
# A time window, or a retry soon: whatever ran short comes back by itself.
_SOON = re.compile(
    r"\b(?:per|this|each|every|a|the)\s+(?:second|sec|minute|min|hour|window|interval)\b"
    r"|\b(?:try again|retry)\s+(?:in|after|shortly|soon)\b|\bwait\s+\d"
    r"|\bresets?\s+in\s+\d+\s*(?:ms\b|s\b|sec|min)|regenerat|稍后",
    re.IGNORECASE,
)
# Weaker words for it, which a rate limit may use too: the credits named first
# ("credits exhausted"; no word of a rate between, as "balance query limit exhausted"),
# points (rate limits are counted in them), a quota used up, billing.
_SHORT = r"(?:insufficient|not enough|exhausted|depleted|used up|ran out|run out)"
_MAYBE_CREDITS = re.compile(
    rf"\b(?:credit|balance|fund|point)s?(?:[\W_]+(?!{_RATE_WORDS})\w+){{0,2}}?[\W_]+"
    rf"(?:(?:is|are)[\W_]+)?{_SHORT}"
    rf"|(?:\binsufficient|(?:\bnot|n't)(?: have)? enough|\bno)[\W_]+(?:\w+[\W_]+)?points?\b"
    r"|\bquota (?:is |has been )?(?:exhausted|used up)\b|\bbilling\b",
    re.IGNORECASE,
)


def _out_of_credits(said: str) -> bool:
    """Whether a 429 that asks for no slower pace says the credits ran out: in plain
    words ("insufficient credits", "please top up", 余额不足), whatever else it says
    ("try again later"); or in weaker ones ("credits exhausted", "insufficient points"),
    unless it names a time window or a retry soon (a token bucket's "credits exhausted
    for this second")."""
    if _NO_CREDITS.search(said):
        return True
    return _SOON.search(said) is None and _MAYBE_CREDITS.search(said) is not None


def _conflict_task(payload: Any) -> str | None:
    """The task a 409 names: under ``data`` (as a submit's answer), else at the top
    level or under ``error`` (the error body is undocumented)."""
    if not isinstance(payload, dict):
        return None
    for where in (payload.get("data"), payload, payload.get("error")):
        task_id = where.get("task_id") if isinstance(where, dict) else None
        if task_id is not None:
            try:
                return server_id(task_id)
            except InvalidResponseError:
                return None
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
