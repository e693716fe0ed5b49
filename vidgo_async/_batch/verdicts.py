"""What a journal row says of a pair: the task to wait on, the error an earlier run
recorded (rebuilt as its own type), and the state a failed submit leaves the pair in."""

from __future__ import annotations

from .._models import WAV_MODEL, TaskHandle, is_url
from .._timing.classify import refuses_the_pair
from ..errors import (
    APIError,
    ClientClosedError,
    ConfigurationError,
    ConflictError,
    SubmitOutcomeUnknownError,
    TaskFailedError,
    UnusableTaskIdError,
    VidgoError,
)
from .journal import Entry, State

__all__ = [
    "journalled_error",
    "kept_task",
    "kept_url",
    "state_after_failed_submit",
    "task_to_wait_on",
]


def _subclasses(kind: type[APIError]) -> list[type[APIError]]:
    return [kind, *(sub for child in kind.__subclasses__() for sub in _subclasses(child))]


# The API errors a journal row may name, by class name (RateLimitError, ServerError ...).
_API_ERRORS = {kind.__name__: kind for kind in _subclasses(APIError)}


#: How a row names the error of a task the server said failed.
_TASK_FAILED = TaskFailedError.__name__


def task_to_wait_on(entry: Entry) -> str | None:
    """The task a run waits on for the pair: the row's task, unless it finished (the row
    has its URL) or the server said it failed. Besides an accepted row's, that is the
    task a worker's submit created after it lost the pair: it keeps the id in the row,
    which the worker that took the pair over may have settled unknown, or failed by a
    409 that named no task, and a finished task whose row keeps no URL (edited by hand)."""
    task_id = kept_task(entry)
    if task_id is None or (entry.state is State.FINISHED and kept_url(entry)):
        return None
    if entry.state is State.FAILED and entry.error_type == _TASK_FAILED:
        return None
    return task_id


def kept_task(entry: Entry) -> str | None:
    """The task id a row keeps (a blank one, as an edit by hand may leave, is none)."""
    return entry.task_id if entry.task_id and not entry.task_id.isspace() else None


def kept_url(entry: Entry) -> str | None:
    """The WAV URL a row keeps (blanks, or other text an edit by hand may leave, are none)."""
    return entry.wav_url if is_url(entry.wav_url) else None


def journalled_error(entry: Entry, source_task_id: str, audio_id: str) -> VidgoError:
    """The error an earlier run recorded for a pair, rebuilt as its own type (for a
    finished row that keeps neither URL nor task: that it is of no use)."""
    if entry.state is State.FINISHED:
        return ConfigurationError(
            "the journal's row says the pair finished, but keeps neither its WAV URL nor"
            " its task's id: nothing was sent for it (delete the row to convert it again)"
        )
    message = entry.error or "failed in an earlier run"
    handle = TaskHandle(
        task_id=entry.task_id or "unknown", source_task_id=source_task_id, audio_id=audio_id
    )
    kind = entry.error_type
    if entry.state is State.UNKNOWN or kind == "SubmitOutcomeUnknownError":
        input = {"task_id": source_task_id, "audio_id": audio_id}
        return SubmitOutcomeUnknownError(message, model=WAV_MODEL, input=input)
    if kind == _TASK_FAILED:
        return TaskFailedError(
            f"task {handle.task_id} failed: {entry.error or 'no reason given'}",
            handle=handle,
            task=None,
            error_message=entry.error,
        )
    api_error = _API_ERRORS.get(kind or "")
    if api_error is not None and entry.error_status:
        return api_error(message, status=entry.error_status)
    return VidgoError(f"{kind}: {message}" if kind else message)


def state_after_failed_submit(exc: VidgoError) -> State:
    """What a failed submit leaves: ``Submitter.submit`` raises a plain error only when
    no attempt can have been accepted, so only a 409 (the track was converted) is
    final; the other answers about the pair itself (400, 404, 422) settle it for this
    run, and a later one submits it again; account trouble (401, 402, 403), rate
    limits and outages leave the pair to be submitted by a re-run. A submit that may
    have been accepted (in this run, or in the interrupted run it resumes) is
    ``UNKNOWN`` for good only once the 409 rule ran and its 409 named no task; ended
    any other way (a deadline, a stop, the account refused, an outage, a journal
    unable to confirm the claim), it is left ``SUBMITTING``, for a re-run to settle by
    the rule. So is a client closed during a request (closed before anything was
    sent, it is unsent). A task accepted under an id that cannot be used is
    ``UNKNOWN``: never resubmitted."""
    if isinstance(exc, SubmitOutcomeUnknownError):
        return State.UNKNOWN if isinstance(exc.answer, ConflictError) else State.SUBMITTING
    if isinstance(exc, ClientClosedError):
        return State.SUBMITTING if exc.sent else State.UNSENT
    if isinstance(exc, UnusableTaskIdError):
        return State.UNKNOWN
    if refuses_the_pair(exc):
        return State.FAILED if isinstance(exc, ConflictError) else State.REJECTED
    return State.UNSENT
