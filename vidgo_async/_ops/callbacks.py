"""The machinery behind :class:`~vidgo_async.webhooks.CallbackReceiver`, free of HTTP.

A :class:`Registry` hands out one :class:`Slot` per submit: an unguessable
token that goes into the callback URL before the submit is sent, bound to
the task id once the submit answers. A callback may come first (fast
tasks): the task id it names is kept and checked at binding.

A callback is only a *hint*. It wakes the waits on its task (through their
:class:`CallbackPacer`), which then make one status read that decides. A
slot honours no further hint until that read has answered: a hint it
confirms resolves the wait (later repeats find no slot), a hint it refutes
re-arms the slot. The API's read may lag its callback (by how much, nobody
says), so for one ``callback_interval`` after a refuted hint the wait polls on
the blind schedule from its start (``initial``, growing by ``factor`` up to
``max_interval``), as without callbacks; a confirming read that fails is
retried on the wait's own pauses. So repeats and replays cost nothing, and even
a forged callback carrying a stolen token costs at most one ``callback_interval``
of polling without callbacks (9 reads with the default policy).

While the receiver is *reliable*, waits on tasks that carry a callback URL
poll only every ``PollPolicy.callback_interval`` (the safety net). Each such
task ends as a *hit* (its callback came before any poll saw it finished)
or a *miss* (a poll saw it finished first). When the latest ``_RUN``
outcomes are all misses, or misses outnumber hits in the recent window
(callbacks are being dropped, the public URL is wrong, a proxy is down),
waits go back to the normal poll schedule until hits return: after callbacks
stop, the waits already napping and the next tasks up to ``_RUN`` of them
cost at most one safety-net interval of latency each, the later ones none.

Tokens are ``{instance}{nonce}.{mac}``: ``instance`` names the registry that
issued it, ``mac`` is an HMAC of the rest under the registry's secret. With a
:class:`Relay` (several processes sharing a secret, see
``vidgo_async.postgres.CallbackRelay``), a registry that receives a callback
for another registry's token checks the HMAC without any state of the wait,
and forwards the hint to that registry, in whichever process it lives; it
arrives there as any other callback, still a hint.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import random
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

from .._config import PollPolicy
from .._lifecycle import Lifecycle, settle
from .._models import Task, TaskStatus
from .._timing.deadline import Deadline
from .._timing.planning import blind_steps

__all__ = ["TOKEN_LENGTH", "CallbackPacer", "Registry", "Relay", "Slot", "new_instance"]

logger = logging.getLogger("vidgo_async")

_WINDOW = 20  # recent hit/miss outcomes the reliability verdict is based on
_RUN = 3  # ... and this many misses in a row: callbacks stopped, however many came before
_MAX_EARLY = 4  # task ids remembered from callbacks that beat the submit answer
_NOT_TERMINAL = frozenset({TaskStatus.NOT_STARTED, TaskStatus.RUNNING})
_INSTANCE = 8  # hex characters of a token's instance
_KEY = 24  # ... and of its whole key: the instance, then a random nonce of 64 bits
_MAC = 24  # characters of a token's HMAC (urlsafe base64 of SHA-256: 144 bits)
#: Characters of a token: its key, ".", its MAC.
TOKEN_LENGTH = _KEY + 1 + _MAC


def new_instance() -> str:
    """A fresh instance name: what the tokens of one registry (or relay) start with."""
    return secrets.token_hex(_INSTANCE // 2)


@runtime_checkable
class Relay(Protocol):
    """Carries callback hints between the registries of several processes."""

    @property
    def secret(self) -> bytes:
        """The key of every token's HMAC, the same in every process."""
        ...

    @property
    def instance(self) -> str:
        """This process's address: the first characters of the tokens it issues."""
        ...

    def check_open(self) -> None:
        """Raise unless hints can be received now (before a token goes out)."""

    def attach(self, registry: Registry) -> None:
        """Deliver the hints forwarded to :attr:`instance` to ``registry``
        (held weakly: a registry no longer used is forgotten)."""

    def forward(self, instance: str, token: str, task: Task) -> None:
        """Send a hint to the registries of ``instance`` (no I/O here: queued)."""


class Slot:
    """One submit's callback token and what the receiver learned about its task."""

    __slots__ = (
        "armed",
        "early",
        "expires",
        "generation",
        "key",
        "missed",
        "pacers",
        "secret",
        "task_id",
        "trusted",
        "waiters",
    )

    def __init__(self, key: str, secret: str, expires: float) -> None:
        self.key = key
        self.secret = secret
        self.expires = expires
        self.task_id: str | None = None
        self.trusted = True  # False: the task may not carry this slot's URL
        self.early: list[str] = []
        self.generation = 0  # hints honoured
        self.armed = True  # False while a honoured hint awaits its confirming read
        self.missed = False  # a hint came while a confirming read was in flight
        self.pacers = 0  # waits on its task (two waits may share a task)
        self.waiters: set[asyncio.Future[None]] = set()

    @property
    def token(self) -> str:
        """The URL path segment: a public lookup key and the secret."""
        return f"{self.key}.{self.secret}"

    def wake(self) -> None:
        self.armed = False
        self.generation += 1
        for waiter in self.waiters:
            settle(waiter)


class Registry:
    """Slots by token and by task id, plus the hit/miss record of the receiver."""

    def __init__(
        self,
        *,
        url_for: Callable[[str], str],
        ttl: float,
        max_slots: int,
        relay: Relay | None = None,
    ) -> None:
        self.url_for = url_for  # token -> callback URL
        self._ttl = ttl
        self._max = max_slots
        self._relay = relay
        if relay is None:
            self.instance = new_instance()
            self._secret = secrets.token_bytes(32)
        else:
            self.instance = relay.instance
            self._secret = relay.secret
            relay.attach(self)
        self._slots: OrderedDict[str, Slot] = OrderedDict()  # by key, oldest first
        self._by_task: dict[str, Slot] = {}
        self._outcomes: deque[bool] = deque(maxlen=_WINDOW)
        self.napping: set[asyncio.Future[None]] = set()  # naps stretched to the safety net
        self._decoy = secrets.token_urlsafe(_MAC)[:_MAC]

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def reliable(self) -> bool:
        """Whether recent callbacks arrived more often than not, and not the latest
        ``_RUN`` tasks all finished without one."""
        outcomes = self._outcomes
        if len(outcomes) >= _RUN and not any(outcomes[-k] for k in range(1, _RUN + 1)):
            return False
        return not self._mostly_lost()

    def _mostly_lost(self) -> bool:
        return self._outcomes.count(False) * 2 > len(self._outcomes)

    def issue(self) -> Slot:
        """A fresh slot whose token goes into a submit's callback URL."""
        if self._relay is not None:
            self._relay.check_open()
        self._purge()
        key = self.instance + secrets.token_hex((_KEY - _INSTANCE) // 2)
        while key in self._slots:
            key = self.instance + secrets.token_hex((_KEY - _INSTANCE) // 2)
        slot = Slot(key, self._mac(key), time.monotonic() + self._ttl)
        self._slots[slot.key] = slot
        return slot

    def bind(self, slot: Slot, task_id: str, *, trusted: bool) -> None:
        """Tie ``slot`` to the task its submit created, or named in a 409 (not
        ``trusted``: an earlier submit created it, maybe with another URL)."""
        if slot.key not in self._slots:
            return
        slot.task_id = task_id
        slot.trusted = trusted
        if task_id in slot.early:
            self._record(hit=True)
            slot.wake()
        elif len(slot.early) == _MAX_EARLY:  # full: the task's own may have been turned away
            slot.wake()  # its confirming read tells, at the cost of one read
        slot.early.clear()
        self._by_task[task_id] = slot

    def release(self, slot: Slot) -> None:
        """A wait on ``slot``'s task ended: forget the slot once no other wait uses it."""
        slot.pacers -= 1
        if slot.pacers <= 0:
            self.discard(slot)

    def can_wake(self, slot: Slot) -> bool:
        """Whether ``slot`` can still be woken by a callback."""
        return self._slots.get(slot.key) is slot

    def discard(self, slot: Slot) -> None:
        """Forget ``slot``: its submit failed, or its task was seen terminal."""
        self._slots.pop(slot.key, None)
        if slot.task_id is not None and self._by_task.get(slot.task_id) is slot:
            del self._by_task[slot.task_id]

    def find(self, token: str) -> Slot | None:
        """The live slot ``token`` names, comparing its secret in constant time."""
        key, _, secret = token.partition(".")
        slot = self._slots.get(key)
        expected = slot.secret if slot is not None else self._decoy
        if not secret.isascii():  # tokens we issue are: no lone surrogate reaches encode()
            return None
        if not hmac.compare_digest(secret.encode(), expected.encode()) or slot is None:
            return None
        return slot

    def hint(self, token: str, task: Task) -> str:
        """Apply a well-formed callback; returns what it did (for the log)."""
        slot = self.find(token)
        if slot is None:
            return self._forward(token, task)
        if task.status in _NOT_TERMINAL:
            return "not terminal"
        if not slot.armed:
            # The confirming read in flight may predate what this hint reports:
            # if that read refutes the first hint, this one earns a read of its own.
            slot.missed = True
            return "duplicate"
        if slot.task_id is None:  # it beat the submit answer
            if task.task_id not in slot.early and len(slot.early) < _MAX_EARLY:
                slot.early.append(task.task_id)
            return "early"
        if not hmac.compare_digest(task.task_id.encode(), slot.task_id.encode()):
            return "other task"
        if slot.trusted:
            self._record(hit=True)
        slot.wake()
        return "hint"

    def pacer(self, task_id: str, policy: PollPolicy, lifecycle: Lifecycle) -> CallbackPacer | None:
        """A pacer for one wait on ``task_id``; None if no callback is expected for it."""
        slot = self._by_task.get(task_id)
        if slot is None:
            return None
        return CallbackPacer(self, slot, policy, lifecycle)

    def saw_terminal(self, slot: Slot) -> None:
        """A poll found the task of ``slot`` terminal: the wait resolves."""
        if slot.generation == 0 and slot.trusted:
            self._record(hit=False)
            logger.debug("task %s finished without a callback", slot.task_id)
        self.discard(slot)

    def _mac(self, key: str) -> str:
        digest = hmac.new(self._secret, key.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode()[:_MAC]

    def _forward(self, token: str, task: Task) -> str:
        """Hand a token of another registry to the relay, if its HMAC holds."""
        key, _, secret = token.partition(".")
        instance = key[:_INSTANCE]
        if self._relay is None or instance == self.instance or len(key) != _KEY:
            return "unknown token"
        if task.status in _NOT_TERMINAL:
            return "not terminal"
        if not (key.isascii() and secret.isascii()):
            return "unknown token"
        if not hmac.compare_digest(secret.encode(), self._mac(key).encode()):
            return "unknown token"
        self._relay.forward(instance, token, task)
        return "forwarded"

    def _record(self, *, hit: bool) -> None:
        was_reliable, was_lost = self.reliable, self._mostly_lost()
        self._outcomes.append(hit)
        if was_reliable and not self.reliable:  # waits sleeping on the safety net poll now
            for waiter in self.napping:
                settle(waiter)
        if not was_lost and self._mostly_lost():  # not for a run of a few: a lossy path
            logger.warning(
                "callbacks are not arriving (most recent tasks finished without one): waits"
                " poll as usual. Check that the receiver's public_url reaches it from the"
                " internet (reverse proxy or tunnel up, https, its path forwarded)"
            )

    def _purge(self) -> None:
        now = time.monotonic()
        while self._slots:
            oldest = next(iter(self._slots.values()))
            if oldest.expires > now and len(self._slots) < self._max:
                break
            self.discard(oldest)


class CallbackPacer:
    """Paces one wait on a task that carries a callback URL (see the module docstring)."""

    def __init__(
        self, registry: Registry, slot: Slot, policy: PollPolicy, lifecycle: Lifecycle
    ) -> None:
        self._registry = registry
        self._slot = slot
        self._policy = policy
        self._lifecycle = lifecycle
        self._seen = 0
        self._terminal = False
        self._stretched = False
        self._holding = False  # between open() and close(): the slot counts this wait
        self._hinted = False  # a hint was taken, and no read has answered since
        self._blind_until = 0.0  # after a refuted hint: no safety net until then
        self._rechecks: Iterator[float] = iter(())  # the blind schedule, from a refutation
        self._answered = True  # whether the read before this pause answered

    def delay(self, scheduled: float, deadline: Deadline) -> float:
        """The wait before the next poll, given the normal schedule's ``scheduled``
        (after a failed read: its retry pause)."""
        self._stretched = False
        answered, self._answered = self._answered, False  # observe() says the next did
        slot = self._slot
        registry = self._registry
        if time.monotonic() < self._blind_until:  # the API's read may lag the callback
            step = next(self._rechecks)
            return step if answered else max(step, scheduled)  # a failure's pause holds
        if (
            self._terminal
            or self._hinted  # its confirming read failed: retried as any read is
            or not slot.trusted
            or not registry.reliable
            or not registry.can_wake(slot)
        ):
            return scheduled
        self._stretched = True
        interval = self._policy.callback_interval
        interval *= 1 - self._policy.jitter * random.random()
        left = deadline.remaining()
        if left is not None and interval > left / 2:
            # Keep a poll inside the deadline even if every callback is lost.
            interval = left / 2
        return max(scheduled, interval)

    async def nap(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less if a callback hint arrives; whether one did."""
        slot = self._slot
        if slot.generation > self._seen:
            self._seen = slot.generation
            self._hinted = True
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        slot.waiters.add(waiter)
        napping = self._registry.napping
        if self._stretched:
            napping.add(waiter)
        try:
            await self._lifecycle.sleep(seconds, wake=waiter)
        finally:
            slot.waiters.discard(waiter)
            napping.discard(waiter)
        hinted = slot.generation > self._seen
        self._seen = slot.generation
        self._hinted = self._hinted or hinted
        return hinted

    def observe(self, task: Task) -> None:
        """Note a poll's answer: a terminal one resolves the slot, another re-arms it."""
        self._answered = True
        slot = self._slot
        if not task.is_terminal:
            if self._hinted:  # refuted, or not yet true where the API reads: read again
                self._blind_until = time.monotonic() + self._policy.callback_interval
                self._rechecks = blind_steps(self._policy)
            self._hinted = False
            if self._seen == slot.generation:
                slot.armed = True  # any hint so far has been refuted
                if slot.missed:  # but one came during the read: read again
                    slot.missed = False
                    slot.wake()
        elif not self._terminal:
            self._terminal = True
            self._registry.saw_terminal(self._slot)

    def open(self) -> None:
        """The wait starts: its slot is kept until it ends (a wait built and never run,
        as an un-iterated ``watch``, keeps nothing)."""
        if not self._holding:
            self._holding = True
            self._slot.pacers += 1

    def close(self) -> None:
        """The wait ended (done, failed, timed out or cancelled): release its token,
        unless another wait on the task still uses it."""
        if self._holding:
            self._holding = False
            self._registry.release(self._slot)
