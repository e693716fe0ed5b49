"""The one classification table: what a failed request may have done on the server.

============  =====================================  ==========================================
failure       meaning                                answers
============  =====================================  ==========================================
unsent        the server never saw it                connection refused, DNS failure
refused       seen, provably not processed           429, 430 and 405 "call frequency too
                                                     high" (RateLimitError), a sister's
                                                     455 "maintenance", 501, 503; 307
                                                     "repeat it at this other URI"
ambiguous     it may have been processed             timeouts and resets after sending, every
                                                     other 5xx, a 2xx that is not the JSON
                                                     documented (or names another task), a
                                                     status or envelope code neither 2xx,
                                                     4xx nor 5xx
final         a definitive answer                    400, 401, 402 (and a 429 saying the
                                                     credits ran out), 403, 404, 409, 410,
                                                     422, every other 4xx; a permanent
                                                     redirect (301, 308); a submit's answer
                                                     naming its task by an unusable id (a
                                                     read's names another task: ambiguous);
                                                     a closed client
============  =====================================  ==========================================

Reads (polls, GETs, downloads) retry every failure but a final one (a wait also
ends after three answers in a row about another task: ``_ops.wait``). Submits
retry unsent and refused failures freely, and ambiguous ones under the
submit rule (``_ops.submit``). Every caller asks :func:`classify`; how long
a server's ``Retry-After`` stretches a pause is :func:`stretch`.
"""

from __future__ import annotations

import enum

from ..errors import (
    APIError,
    AuthenticationError,
    InsufficientCreditsError,
    InvalidResponseError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TaskFailedError,
    TransportError,
    UnusableTaskIdError,
)

__all__ = [
    "Failure",
    "classify",
    "ends_the_task",
    "refuses_the_account",
    "refuses_the_pair",
    "retryable",
    "stretch",
    "unreachable",
]

# Statuses that prove the server did not process the request (besides RateLimitError's).
_REFUSED = frozenset({455, 501, 503})
# The API documents no redirect, and none is followed (the key would go with it). One that
# says the API moved for good (an old path) is final; a 307 asks for the request to be
# repeated elsewhere, so it was not processed; a 302 or 303 may answer a POST that was
# (post/redirect/get). (A redirect from an http:// base URL to https is a
# ConfigurationError: the transport's.)
_MOVED = frozenset({301, 308})
_NOT_PROCESSED = frozenset({307})
# Final answers about the account, not about one task or pair.
_ACCOUNT = (AuthenticationError, InsufficientCreditsError, PermissionDeniedError)
# Final answers about the pair submitted: submitting it again cannot help.
_PAIR = frozenset({400, 404, 409, 422})


class Failure(enum.Enum):
    """What a failed request may have done on the server."""

    UNSENT = "unsent"
    REFUSED = "refused"
    AMBIGUOUS = "ambiguous"
    FINAL = "final"


def classify(exc: BaseException) -> Failure:
    """The row of the table ``exc`` falls in."""
    if isinstance(exc, TransportError):
        return Failure.AMBIGUOUS if exc.sent else Failure.UNSENT
    if isinstance(exc, APIError):
        if isinstance(exc, RateLimitError) or exc.status in _REFUSED:
            return Failure.REFUSED
        return Failure.FINAL if 400 <= exc.status < 500 else Failure.AMBIGUOUS
    if isinstance(exc, InvalidResponseError):
        if exc.status in _MOVED:
            return Failure.FINAL
        if exc.status in _NOT_PROCESSED:
            return Failure.REFUSED
        # An unusable id was still an answer: the task exists, asking again cannot help.
        return Failure.FINAL if isinstance(exc, UnusableTaskIdError) else Failure.AMBIGUOUS
    return Failure.FINAL


def unreachable(exc: BaseException, *, answered: bool, attempt: int, max_attempts: int) -> bool:
    """Whether to stop trying an API that never answered this client: ``exc`` is
    unsent on the ``max_attempts``-th attempt (a wrong URL or a network down, not
    worth a whole deadline)."""
    return not answered and attempt >= max_attempts and classify(exc) is Failure.UNSENT


def retryable(exc: BaseException) -> bool:
    """Whether a read that failed with ``exc`` is worth another attempt."""
    return classify(exc) is not Failure.FINAL


def refuses_the_account(exc: BaseException) -> bool:
    """Whether ``exc`` refuses the account (401, no credits, 403): no further submit can succeed."""
    return isinstance(exc, _ACCOUNT)


def refuses_the_pair(exc: BaseException) -> bool:
    """Whether a submit's ``exc`` refuses the pair itself (400, 404, 409, 422)."""
    return isinstance(exc, APIError) and exc.status in _PAIR


def ends_the_task(exc: BaseException) -> bool:
    """Whether after ``exc`` waiting on the same task again is pointless: the server said
    it failed. No error answer to a read is taken for that: a 404 may come before a
    task just created is shown, a 403 from a proxy in front, and a task paid for and
    given up on could not be submitted again (the API converts a track once)."""
    return isinstance(exc, TaskFailedError)


def stretch(delay: float, exc: BaseException, cap: float) -> float:
    """``delay``, lengthened to the ``Retry-After`` that came with ``exc`` (at most ``cap``)."""
    retry_after = exc.retry_after if isinstance(exc, (RateLimitError, ServerError)) else None
    return delay if retry_after is None else max(delay, min(retry_after, cap))
