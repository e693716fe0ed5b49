"""When a batch checks a task it just submitted: learnt from its own first checks."""

from __future__ import annotations

__all__ = ["FirstCheck"]


class FirstCheck:
    """Whether a batch's tasks are done as soon as they are submitted.

    The poll policy's ``initial`` pause suits tasks that run for a while. A
    batch finds out whether its tasks are instead done at once: its first
    task is checked right after the submit (the probe). If that task is
    already done, so is each next one, for as long as they keep being done
    at once; the first one found still going sends the batch back to the
    policy's first pause for good. Finding out costs one request per batch,
    none per task.
    """

    __slots__ = ("_probing", "instant")

    def __init__(self, *, learning: bool = True) -> None:
        """``learning``: whether to probe at all (else: the policy's pause always)."""
        self.instant: bool | None = None if learning else False  # None: not known yet
        self._probing = False

    def check_at_once(self) -> bool:
        """Whether the task just submitted is checked right away (maybe as the probe)."""
        if self.instant is None and not self._probing:
            self._probing = True
            return True
        return self.instant is True

    def learn(self, done: bool | None) -> bool:
        """Note what a check made at once found: done, still going, or ``None``
        if it could not be made. True when the batch just learnt its tasks are instant."""
        self._probing = False
        if done is None or self.instant is False:
            return False
        learnt = done and self.instant is None
        self.instant = done
        return learnt
