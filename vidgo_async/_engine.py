"""What the client does, behind its checked and documented face.

``VidgoClient`` validates arguments and documents the API; the engine
submits (adding callback URLs), waits (racing callbacks against polls) and
is what a batch drives.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Coroutine
from typing import Any

from ._callbacks import Registry, Slot, with_callback
from ._calls import Accepted, Calls
from ._config import PollPolicy
from ._models import WAV_MODEL, Task, TaskHandle
from ._waiter import Poller, changes, task_id_of, wait_until_done
from .errors import ConflictError

__all__ = ["Engine"]


class Engine:
    """Submits and waits for one client.

    Args:
        calls: The client's API calls.
        callbacks: The callback registry, when the client has a receiver.
        poll: The client's poll policy.
    """

    def __init__(self, calls: Calls, callbacks: Registry | None, poll: PollPolicy) -> None:
        self.calls = calls
        self.callbacks = callbacks
        self.poll = poll
        self.closed = False

    def live(self) -> Calls:
        """The calls, unless the client is closed."""
        if self.closed:
            raise RuntimeError("this VidgoClient is closed")
        return self.calls

    async def submit(self, model: str, input: dict[str, Any], callback_url: str | None) -> Task:
        """A bare submit (``max_attempts`` at most); with a receiver, a callback URL added."""
        calls = self.live()
        accepted = await with_callback(
            self.callbacks, callback_url, lambda url: calls.submit(model, input, url, None)
        )
        return accepted.task()

    async def submit_for_wait(
        self,
        input: dict[str, Any],
        callback_url: str | None,
        deadline: float | None,
        *,
        resumed: bool = False,
    ) -> str:
        """Submit a WAV conversion about to be waited on, retrying until ``deadline``;
        the task's id.

        A 409 that names a task gives that task, to be waited on instead;
        ``resumed`` says an earlier run may have submitted it.
        """
        calls, registry = self.live(), self.callbacks
        # Inline rather than through with_callback(): a batch runs this thousands of times.
        slot = None
        if registry is not None and callback_url is None:
            slot = registry.issue()
            callback_url = registry.url_for(slot.token)
        try:
            accepted = await calls.submit(WAV_MODEL, input, callback_url, deadline, resumed=resumed)
        except ConflictError as exc:
            if exc.task_id is None:
                _discard(registry, slot)
                raise
            accepted = Accepted(exc.task_id, None)
        except BaseException:
            _discard(registry, slot)
            raise
        if registry is not None and slot is not None:
            registry.bind(slot, accepted)
        return accepted.task_id

    def poller(
        self,
        handle: TaskHandle | tuple[str, str, str],
        deadline: float | None,
        policy: PollPolicy | None = None,
        *,
        first_delay: float | None = None,
        started: float | None = None,
    ) -> Poller:
        """The poll loop of one wait; ``started``: when we submitted the task."""
        policy = policy or self.poll
        return Poller(
            self.live(),
            handle,
            deadline=deadline,
            policy=policy,
            first_delay=policy.initial if first_delay is None else first_delay,
            pacer=self.callbacks.pacer(task_id_of(handle), policy) if self.callbacks else None,
            started=started,
        )

    def wait(
        self,
        handle: TaskHandle,
        deadline: float | None,
        policy: PollPolicy | None = None,
        *,
        first_delay: float | None = None,
        wav: bool = False,
        started: float | None = None,
    ) -> Coroutine[Any, Any, Task]:
        """The finished task (see ``wait_until_done``)."""
        # A plain function returning the coroutine: one frame less per pending wait.
        poller = self.poller(handle, deadline, policy, first_delay=first_delay, started=started)
        return wait_until_done(poller, wav=wav)

    async def await_wav(
        self, handle: TaskHandle, deadline: float | None, started: float | None = None
    ) -> str:
        """The WAV URL of a task once it finished."""
        url = (await self.wait(handle, deadline, wav=True, started=started)).wav_url
        assert url is not None
        return url

    def watch(
        self, handle: TaskHandle, deadline: float | None, policy: PollPolicy | None
    ) -> AsyncGenerator[Task, None]:
        """Snapshots on every change, ending on a terminal one."""
        poller = Poller(
            self.live(), handle, deadline=deadline, policy=policy or self.poll, first_delay=0.0
        )
        return changes(poller)


def _discard(registry: Registry | None, slot: Slot | None) -> None:
    if registry is not None and slot is not None:
        registry.discard(slot)
