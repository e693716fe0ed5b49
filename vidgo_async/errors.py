"""The errors vidgo-async raises: one tree, rooted at :class:`VidgoError`.

::

    VidgoError
    ├── ConfigurationError(VidgoError, ValueError)    no API key, bad base URL or journal
    ├── ClientClosedError                             the client was closed; waits end
    ├── TransportError                                no usable reply
    │   └── RequestTimeoutError(TransportError, TimeoutError)
    ├── APIError(status, code, message)               the server said no
    │   ├── BadRequestError              400, 422
    │   ├── AuthenticationError          401
    │   ├── InsufficientCreditsError     402, or 429 saying the credits ran out
    │   ├── PermissionDeniedError        403
    │   ├── NotFoundError                404
    │   ├── ConflictError                409
    │   │   └── AlreadyConvertedError    409 on a convert-to-wav submit
    │   ├── RateLimitError               429, 430, 405 "call frequency too high"
    │   └── ServerError                  5xx, 455 "maintenance"
    ├── InvalidResponseError                          a 2xx that is not the documented JSON
    │   └── UnusableTaskIdError                       it names a task by an id we cannot send back
    ├── InvalidCallbackError(VidgoError, ValueError)  a callback body too large or malformed
    ├── SubmitOutcomeUnknownError                     a submit may or may not have been accepted
    └── TaskError(handle, task)
        ├── TaskFailedError                           status "failed"; error_message
        └── TaskTimeoutError(TaskError, TimeoutError) the deadline passed; the task still runs

No aiohttp exception ever reaches a user: the HTTP layer translates them here,
chaining the original as ``__cause__`` only when it carries no request headers.
Messages never contain the API key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._models import Task, TaskHandle

__all__ = [
    "APIError",
    "AlreadyConvertedError",
    "AuthenticationError",
    "BadRequestError",
    "ClientClosedError",
    "ConfigurationError",
    "ConflictError",
    "InsufficientCreditsError",
    "InvalidCallbackError",
    "InvalidResponseError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "SubmitOutcomeUnknownError",
    "TaskError",
    "TaskFailedError",
    "TaskTimeoutError",
    "TransportError",
    "UnusableTaskIdError",
    "VidgoError",
]


class VidgoError(Exception):
    """Base of every error raised by vidgo-async.

    Attributes:
        handle: The task a wait was on, when the error ended the wait (a
            :class:`TaskError`, or any error ending ``convert_to_wav``,
            ``wait``, ``await_task`` or ``watch`` once there was a task): wait
            on it again with ``await_task(handle)``. None otherwise.
    """

    handle: TaskHandle | None = None


class ConfigurationError(VidgoError, ValueError):
    """The client cannot be built as configured (no API key, bad base URL, unusable journal)."""


class ClientClosedError(VidgoError):
    """The client was closed: no request is sent after ``aclose()``, and pending waits end.

    Attributes:
        sent: ``True`` only when it ended a request under way, which may have
            reached the server; ``False`` when nothing was sent.
    """

    def __init__(self, message: str, *, sent: bool = False) -> None:
        super().__init__(message)
        self.sent = sent


class TransportError(VidgoError):
    """No usable reply: the connection failed, was reset, or timed out.

    Attributes:
        sent: ``False`` only when the request provably never reached the
            server (the connection could not be opened), so that even a
            non-idempotent request may be repeated safely.
    """

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class RequestTimeoutError(TransportError, TimeoutError):
    """One HTTP request took longer than its timeout."""


class APIError(VidgoError):
    """The server answered with an error status or an error ``code``.

    Attributes:
        status: The HTTP status, or the JSON ``code`` when an HTTP 200
            carried an error code.
        code: The JSON ``code`` of the envelope, when there was one.
        message: The server's message (``error.message``, ``message`` or
            ``msg``), or a short excerpt of a non-JSON body.
    """

    def __init__(self, message: str, *, status: int, code: int | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.code = code
        self.message = message


class BadRequestError(APIError):
    """400 or 422: the request was malformed or rejected as invalid."""


class AuthenticationError(APIError):
    """401: the API key is missing or wrong."""


class InsufficientCreditsError(APIError):
    """402 (or a 429 that says so): the account has no credits left for this task."""


class PermissionDeniedError(APIError):
    """403: the task belongs to another user."""


class NotFoundError(APIError):
    """404: the task id does not exist."""


class ConflictError(APIError):
    """409: the request conflicts with an earlier one.

    Attributes:
        task_id: The existing task's id, when the answer named one.
    """

    def __init__(
        self, message: str, *, status: int, code: int | None = None, task_id: str | None = None
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.task_id = task_id


class AlreadyConvertedError(ConflictError):
    """409 on a first, clean ``convert-to-wav`` submit: the track was converted before."""


class RateLimitError(APIError):
    """429: too many requests (also sister platforms' 430, and 405 "call frequency too high").

    Attributes:
        retry_after: Seconds the server asked us to wait, when it said.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 429,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class ServerError(APIError):
    """5xx: the server or a proxy in front of it failed (also a sister platform's 455,
    "maintenance").

    Attributes:
        retry_after: Seconds the server asked us to wait, when it said.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.retry_after = retry_after


class InvalidResponseError(VidgoError):
    """An answer that is not the documented one: a 2xx that is not the documented JSON
    (or names another task), a redirect, a download that is not a WAV file.

    Attributes:
        status: The HTTP status of the answer.
        excerpt: A short, escaped excerpt of the body.
    """

    def __init__(self, message: str, *, status: int = 200, excerpt: str = "") -> None:
        super().__init__(f"{message} (HTTP {status}, body {excerpt!r})" if excerpt else message)
        self.status = status
        self.excerpt = excerpt


class UnusableTaskIdError(InvalidResponseError):
    """The answer names a task by an id that cannot be sent back unchanged (a lone
    surrogate): the task exists, but no status read can name it."""


class InvalidCallbackError(VidgoError, ValueError):
    """A callback body that is too large or not a task description.

    Attributes:
        status: The HTTP status a receiver answers with: 413 (too large) or 400.
    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class SubmitOutcomeUnknownError(VidgoError):
    """A submit may or may not have been accepted by the server.

    Raised when an attempt failed after the request was sent (a timeout, a
    reset, a 5xx) and no later attempt settled the question - typically a
    retry that met 409, meaning an earlier attempt was probably accepted.
    Submitting again is unsafe; look the task up instead.

    Attributes:
        model: The model that was submitted.
        input: The input that was submitted.
        answer: The last answer, when one came after the ambiguous attempt
            (a 409 without a task id, a 402, a 400 ...): it settles nothing,
            since an earlier attempt may have been accepted.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str,
        input: dict[str, str],
        answer: VidgoError | None = None,
    ) -> None:
        super().__init__(message)
        self.model = model
        self.input = input
        self.answer = answer


class TaskError(VidgoError):
    """A task did not end as hoped.

    Attributes:
        handle: Enough to resume waiting on the task elsewhere.
        task: The last snapshot of the task, if one was read.
    """

    handle: TaskHandle

    def __init__(self, message: str, *, handle: TaskHandle, task: Task | None = None) -> None:
        super().__init__(message)
        self.handle = handle
        self.task = task


class TaskFailedError(TaskError):
    """The task ended with status ``failed``.

    Attributes:
        error_message: The server's explanation, if it gave one.
    """

    def __init__(
        self, message: str, *, handle: TaskHandle, task: Task | None, error_message: str | None
    ) -> None:
        super().__init__(message, handle=handle, task=task)
        self.error_message = error_message


class TaskTimeoutError(TaskError, TimeoutError):
    """The wait's deadline passed; the task keeps running on the server."""
