"""Submits: the one unsafe request, repeated only where that cannot convert a track twice.

The rule (DESIGN, "Submits are not idempotent"): unsent and refused attempts
may be repeated; so may ambiguous ones of a WAV conversion, since the server
refuses a second conversion of one track - but once any attempt was
ambiguous, only an acceptance or a 409 naming the task settles the outcome.
Any other later answer raises :class:`SubmitOutcomeUnknownError` carrying it.
Other models have no such rule: their ambiguous attempt is not repeated (a
repeat could create, and bill, a second task) and raises it at once.

A paid task is never lost to the caller's cancel or the client's close: an
attempt that may already be on the wire is not cancelled with its caller, and
what it leaves behind is :class:`~.inflight.InFlight`'s (its answer read in the
background, the task it names logged and remembered). So a 409 that names no
task (the track was converted by this client, whose caller then gave up: a
cancel, a batch left early) still settles a later submit of the track with its
task, and a submit of a track first lets the attempts in flight for it answer.

This loop stays ours rather than backoff's: what a failure means depends on
the attempts before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping
from typing import Any

import attrs

from .._config import RetryPolicy
from .._events import EventHook, emit, operation, retrying
from .._lifecycle import Lifecycle
from .._models import WAV_MODEL, Task, TaskStatus
from .._timing.budget import RetryBudget
from .._timing.classify import Failure, classify, unreachable
from .._timing.deadline import Deadline
from .._timing.limits import Limiter, holding
from .._timing.schedules import retry_pauses
from .._wire.convert import conflict_task, parse_accepted, parse_task
from .._wire.transport import Transport
from ..errors import (
    AlreadyConvertedError,
    ClientClosedError,
    ConflictError,
    RequestTimeoutError,
    SubmitOutcomeUnknownError,
    TransportError,
    VidgoError,
)
from .callbacks import Registry
from .inflight import InFlight, Track

__all__ = ["Accepted", "Submitter"]

logger = logging.getLogger("vidgo_async")

SUBMIT_PATH = "/api/generate/submit"

#: Seconds past its request timeout that a submit in flight gets to be answered (and
#: journalled) when the client closes or its batch stops.
_ANSWERED = 2.0


@attrs.frozen
class Accepted:
    """The task a submit settled on, and the answer's task object (``None`` when a
    409 named a task an earlier attempt, or an earlier submit of this client, created)."""

    task_id: str
    answer: Mapping[str, Any] | None

    def task(self) -> Task:
        """The task as the answer described it; ``UNKNOWN`` when it sent no status."""
        if self.answer is None or "status" not in self.answer:
            return Task(task_id=self.task_id, status=TaskStatus.UNKNOWN)
        return parse_task(self.answer, task_id=self.task_id)


@attrs.define(eq=False)  # in the lifecycle's set: its stop() lets the attempts on the wire end
class Submitter:
    """Submits tasks, each with a fresh callback URL when the client has a receiver.

    Every attempt takes a slot under ``limiter`` first (``max_submits_per_second``,
    a shared quota's cap, or none: :class:`Uncapped`), and a 429 on one slows them all.
    """

    transport: Transport
    retry: RetryPolicy
    budget: RetryBudget
    lifecycle: Lifecycle
    limiter: Limiter
    callbacks: Registry | None
    hook: EventHook | None
    inflight: InFlight  # its attempts on the wire, and the tasks it created

    def __attrs_post_init__(self) -> None:
        self.lifecycle.started(self)

    @property
    def grace(self) -> float:
        """Seconds a submit on the wire may still take: a stop lets it end by its answer
        or its own timeout, never cut it short (its task may be paid for)."""
        return self.transport.timeouts.total + _ANSWERED

    async def submit(
        self,
        model: str,
        input: dict[str, Any],
        *,
        callback_url: str | None,
        deadline: Deadline | None,
        adopt: bool = False,
        resumed: bool = False,
        shield: bool = True,
        gate: contextlib.AbstractAsyncContextManager[Any] | None = None,
    ) -> Accepted:
        """Submit a task; see the module docstring for when an attempt is repeated.

        Args:
            deadline: ``None``: at most ``max_attempts`` attempts within the
                retry budget; else attempts go on until it passes.
            adopt: A 409 that names a task gives that task (a wait carries on
                with it) instead of :class:`AlreadyConvertedError`.
            resumed: An earlier submit of the same input (another run's) may
                have been accepted.
            shield: A cancel of the caller leaves an attempt that may be on the
                wire to be answered in the background (its task remembered and
                logged); a batch, which lets its submits end before it stops,
                saves the task this costs.
            gate: Entered by each attempt once its slot is granted, right before it
                goes out, and held until its answer: a batch takes a request permit
                there (a submit waiting out a pause holds none) and confirms that it
                may still send. What its entry raises ends the submit.

        Raises:
            AlreadyConvertedError: 409 on a clean first attempt of a WAV conversion.
            ConflictError: 409 on a clean first attempt of another model.
            SubmitOutcomeUnknownError: An attempt may have been accepted and
                no later answer settled it.
            VidgoError: The last failure, when no attempt can have been accepted.
        """
        registry, callback = self.callbacks, None
        if registry is not None and callback_url is None:
            callback = registry.issue()
        try:
            if registry is not None and callback is not None:
                callback_url = registry.url_for(callback.token)
            body: dict[str, Any] = {"model": model, "input": input}
            if callback_url is not None:
                body["callback_url"] = callback_url
            call = _Call(body, _track(body), deadline, adopt, resumed, shield, gate)
            with operation(self.hook, "submit", model=model, **call.ids()) as scope:
                accepted = await self._settle(call)
                scope.note(task_id=accepted.task_id)
        except BaseException:
            if registry is not None and callback is not None:
                registry.discard(callback)
            raise
        if registry is not None and callback is not None:
            registry.bind(callback, accepted.task_id, trusted=accepted.answer is not None)
        return accepted

    async def _settle(self, call: _Call) -> Accepted:
        body, track, deadline = call.body, call.track, call.deadline
        ambiguous: VidgoError | None = None
        if call.resumed:
            ambiguous = TransportError("an earlier run was interrupted during this submit")
        await self.inflight.settle(track, deadline)
        pauses = retry_pauses(self.retry)
        attempt = 0
        previous: VidgoError | None = None  # the failure of the attempt before
        while True:
            attempt += 1
            try:
                task_id, answer = await self._attempt(call)
            except ConflictError as exc:
                emit(self.hook, "submit", attempt=attempt, error=type(exc).__name__)
                await self.inflight.settle(track, deadline)  # another call's may name it
                known = None if track is None else self.inflight.converted.get(track)
                return _after_conflict(exc, body, ambiguous, known, adopt=call.adopt)
            except VidgoError as exc:
                failure = classify(exc)
                if failure is Failure.AMBIGUOUS:
                    ambiguous = exc
                if failure is not Failure.FINAL:
                    self.budget.record_failure()
                delay = pauses.send(exc)
                self._end_if_last(
                    call,
                    exc,
                    failure=failure,
                    attempt=attempt,
                    delay=delay,
                    ambiguous=ambiguous,
                    previous=previous,
                )
                previous = exc
                retrying(self.hook, "a submit", exc, attempt=attempt, delay=delay, path=SUBMIT_PATH)
                try:
                    await self.lifecycle.sleep(delay)
                except ClientClosedError as closed:  # no later attempt will settle it
                    if ambiguous is not None:
                        raise _unknown(body, ambiguous, closed) from closed
                    raise
            else:
                self.budget.record_success()
                logger.debug("submitted %s: task %s", body["model"], task_id)
                emit(self.hook, "submit", task_id=task_id, attempt=attempt)
                self.inflight.remember(track, task_id)
                return Accepted(task_id, answer)

    def _end_if_last(
        self,
        call: _Call,
        exc: VidgoError,
        *,
        failure: Failure,
        attempt: int,
        delay: float,
        ambiguous: VidgoError | None,
        previous: VidgoError | None,
    ) -> None:
        """Raise what ends the submit when ``exc`` (the ``attempt``-th failure, after
        ``previous``) allows no attempt after a pause of ``delay``: a final answer, an
        ambiguous attempt of a model without the 409 rule, the deadline or the attempts
        used up, or an API that never answered. Once an attempt was ``ambiguous``, that
        is :class:`SubmitOutcomeUnknownError`."""
        never_answered = unreachable(
            exc,
            answered=self.transport.answered,
            attempt=attempt,
            max_attempts=self.retry.max_attempts,
        )
        stop = (
            failure is Failure.FINAL
            # Only the 409 rule of a WAV conversion makes a repeat safe.
            or (ambiguous is not None and call.body["model"] != WAV_MODEL)
            or self._gives_up(attempt, call.deadline, delay)
        )
        if not (stop or never_answered):
            return
        emit(self.hook, "submit", attempt=attempt, error=type(exc).__name__)
        if ambiguous is not None:
            answer_error = None if ambiguous is exc else exc
            raise _unknown(call.body, ambiguous, answer_error) from exc
        if never_answered:
            raise TransportError(
                f"cannot reach the API at {self.transport.base_url} ({exc}); nothing was submitted",
                sent=False,
            ) from exc
        if previous is not None and _too_late(exc):  # the last answer says more
            raise previous from None
        raise exc

    async def _attempt(self, call: _Call) -> tuple[str, Mapping[str, Any]]:
        """One attempt's task id and answer, read under its slot and gate (an answer
        naming no task fails the attempt there). Once past them it may be on the wire:
        shielded, a cancel of the caller then leaves it to end in the background. It has
        what is left of the deadline once it may go, none if nothing is left."""
        deadline = call.deadline or Deadline.after(None)
        cap = self.retry.max_retry_after
        hold = holding(self.limiter, deadline.remaining(), "a submit slot", cap)
        async with hold as slot, call.gate or contextlib.nullcontext():
            if deadline.expired():
                raise RequestTimeoutError("deadline reached before the submit went out", sent=False)
            post = self.transport.request(
                "POST", SUBMIT_PATH, body=call.body, timeout=deadline.remaining(), slot=slot
            )
            if not call.shield:
                return parse_accepted(await post, parent=call.parent)
            request = self.inflight.send(post, call.track)
            try:
                return parse_accepted(await asyncio.shield(request), parent=call.parent)
            except asyncio.CancelledError:  # the answer is read all the same
                slot = hold.hand_over()  # held until then
                answered = functools.partial(self.inflight.answered, call.body, call.track, slot)
                request.add_done_callback(answered)
                if request.cancelled():  # not our caller's cancel (shielded from it): the close's
                    raise ClientClosedError(
                        "the client closed before the submit was answered;"
                        " it may have been accepted",
                        sent=True,
                    ) from None
                raise

    async def stop(self) -> None:
        """The client closes: the attempts on the wire are answered first (:attr:`grace`;
        a caller still waiting then gets the task, its wait a ClientClosedError naming it)."""
        await self.inflight.stop(self.grace)

    def _gives_up(self, attempt: int, deadline: Deadline | None, delay: float) -> bool:
        if deadline is None:
            return attempt >= self.retry.max_attempts or not self.budget.allows_retry()
        # With a deadline: stop when the next attempt could only start at or past it.
        left = deadline.remaining()
        return left is not None and left <= delay


@attrs.frozen
class _Call:
    """One submit: its body, its track (a WAV conversion's) and the options of
    :meth:`Submitter.submit` its attempts follow."""

    body: dict[str, Any]
    track: Track | None
    deadline: Deadline | None
    adopt: bool
    resumed: bool
    shield: bool
    gate: contextlib.AbstractAsyncContextManager[Any] | None

    @property
    def parent(self) -> str | None:
        """The music task a WAV conversion converts a track of."""
        return None if self.track is None else self.track[0]

    def ids(self) -> dict[str, str]:
        """The track's ids, for the hook."""
        if self.track is None:
            return {}
        return {"source_task_id": self.track[0], "audio_id": self.track[1]}


def _track(body: Mapping[str, Any]) -> Track | None:
    """The track a WAV conversion's body names."""
    source, audio = body["input"].get("task_id"), body["input"].get("audio_id")
    if body["model"] != WAV_MODEL or not isinstance(source, str) or not isinstance(audio, str):
        return None
    return source, audio


def _after_conflict(
    exc: ConflictError,
    body: dict[str, Any],
    ambiguous: VidgoError | None,
    known: str | None,
    *,
    adopt: bool,
) -> Accepted:
    exc.task_id = conflict_task(exc, body) or known  # known: this client's own submit's
    if exc.task_id is not None and (adopt or ambiguous is not None):
        # The server named the task: ours from an earlier, unanswered attempt, or
        # (adopt) the one that converted this track before.
        return Accepted(exc.task_id, None)
    if ambiguous is not None:
        raise _unknown(body, ambiguous, exc) from exc
    if body["model"] != WAV_MODEL:
        raise exc
    # The server says what happened; say what the user can do about it.
    named = f" (conversion task {exc.task_id})" if exc.task_id else ""
    raise AlreadyConvertedError(
        f"{exc.message} - this track was converted before{named}: a batch journal answers"
        " a repeat of the same pair (task_id, audio_id) with its URL; else wait on the"
        " conversion task's id if you kept it",
        status=exc.status,
        code=exc.code,
        task_id=exc.task_id,
    ) from exc


def _unknown(
    body: dict[str, Any], cause: VidgoError, answer: VidgoError | None
) -> SubmitOutcomeUnknownError:
    model, input = body["model"], body["input"]
    later = "" if answer is None else f"; a later attempt got {type(answer).__name__}: {answer}"
    return SubmitOutcomeUnknownError(
        f"{model} submit for {input!r:.200} may have been accepted: an attempt failed after "
        f"it was sent ({type(cause).__name__}: {cause}){later}; "
        "do not resubmit blindly, look the task up instead",
        model=model,
        input=input,
        answer=answer,
    )


def _too_late(exc: VidgoError) -> bool:
    """Whether ``exc`` only says that the deadline came before the attempt could go."""
    return isinstance(exc, RequestTimeoutError) and not exc.sent
