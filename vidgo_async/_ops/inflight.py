"""What a client's submits leave behind their callers: the attempts still on the wire,
and the tasks the submits created.

An attempt that may already be on the wire is not cancelled with its caller: its
answer is read in the background (:meth:`InFlight.answered`), told to the submit
limiter as any answer is, and the task it names logged and remembered. A submit of
a track first lets the attempts on the wire for it be answered
(:meth:`InFlight.settle`): their answer names the task a 409 does not. The client's
close lets them all be answered (:meth:`InFlight.stop`). The latest ``REMEMBERED``
tasks created are kept: a later submit of a track adopts its task when a 409 names
none (the caller of the first gave up: a cancel, a batch left early), and a wait
knows when its task was submitted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

import attrs

from .._events import EventHook, emit
from .._lifecycle import cancel_after_grace
from .._timing.classify import Failure, classify
from .._timing.deadline import Deadline
from .._timing.limits import Limiter, Slot, heard
from .._wire.convert import conflict_task, parse_accepted
from ..errors import ConflictError, VidgoError

__all__ = ["REMEMBERED", "InFlight", "Track"]

logger = logging.getLogger("vidgo_async")

#: WAV conversions a client remembers (track -> task): ~1 MB.
REMEMBERED = 10_000

Track = tuple[str, str]  # a WAV conversion's input: (parent task id, audio id)


@attrs.define(eq=False)
class InFlight:
    """A client's attempts on the wire, and the tasks its submits created."""

    limiter: Limiter  # the submits' own: an answer read in the background is told to it
    max_retry_after: float
    hook: EventHook | None
    # The WAV conversions the submits created, the latest REMEMBERED.
    converted: dict[Track, str] = attrs.field(init=False, factory=dict)
    # The tasks they created (of any model) -> when (time.monotonic()), the latest
    # REMEMBERED: a wait on one knows when it was submitted.
    submitted: dict[str, float] = attrs.field(init=False, factory=dict)
    # The attempts on the wire (but a batch's) -> their track (None: not a WAV conversion).
    sending: dict[asyncio.Task[Any], Track | None] = attrs.field(init=False, factory=dict)

    def send(self, post: Awaitable[Any], track: Track | None) -> asyncio.Task[Any]:
        """``post`` in a task of its own, kept while it is on the wire."""
        request = asyncio.ensure_future(post)
        self.sending[request] = track
        request.add_done_callback(self.sending.pop)
        return request

    async def settle(self, track: Track | None, deadline: Deadline | None) -> None:
        """Let this track's attempts on the wire (another caller's, or one that gave up)
        be answered (until the deadline): their answer names the task a 409 does not."""
        if track is None:
            return
        if pending := [request for request, of in self.sending.items() if of == track]:
            await asyncio.wait(pending, timeout=None if deadline is None else deadline.remaining())

    def answered(
        self,
        body: dict[str, Any],
        track: Track | None,
        slot: Slot | None,
        request: asyncio.Task[Any],
    ) -> None:
        """The answer of an attempt whose caller gave up (or that the client's close cut
        short): told to the limiter as any answer is (a 429 holds the other submits
        back), and the task it names (a 409's too) logged, remembered and told to the
        hook; one that may have been accepted is logged."""
        what = f"a {body['model']} submit for {body['input']!r:.200}"
        if request.cancelled():  # the client closed first
            if slot is not None:
                slot.release()
            logger.warning("%s may have been accepted: no answer before the close", what)
            return
        heard(self.limiter, request.exception(), self.max_retry_after)
        if slot is not None:
            slot.release()
        what += " was cancelled in flight"
        try:
            task_id, _ = parse_accepted(
                request.result(), parent=None if track is None else track[0]
            )
        except ConflictError as exc:  # converted already: by this call's unclear attempt?
            named = conflict_task(exc, body)
            if named is None:
                logger.warning("%s; the server says it was converted already: %s", what, exc)
                return
            task_id = named
        except VidgoError as exc:
            if classify(exc) is Failure.AMBIGUOUS:
                logger.warning("%s and may have been accepted: %s", what, exc)
            return
        self.remember(track, task_id)
        emit(self.hook, "submit", task_id=task_id)
        later = "" if track is None else "; a later submit of the track waits on it"
        logger.warning("%s; the server accepted it as task %s%s", what, task_id, later)

    def remember(self, track: Track | None, task_id: str) -> None:
        """Keep ``task_id`` as created now (and as ``track``'s conversion)."""
        _keep_latest(self.submitted, task_id, time.monotonic())
        if track is not None:
            _keep_latest(self.converted, track, task_id)

    async def stop(self, grace: float) -> None:
        """The client closes: the attempts on the wire are answered first (``grace``
        seconds at most; a caller still waiting then gets the task, its wait a
        ClientClosedError naming it)."""
        await cancel_after_grace(self.sending, grace)


def _keep_latest(memory: dict[Any, Any], key: Any, value: Any) -> None:
    """Remember ``key`` as the latest of ``memory``, which keeps the latest REMEMBERED."""
    memory.pop(key, None)  # the latest goes last
    memory[key] = value
    if len(memory) > REMEMBERED:
        del memory[next(iter(memory))]
