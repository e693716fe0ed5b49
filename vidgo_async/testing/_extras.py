"""The task-shaping part of :class:`~vidgo_async.testing.FakeVidgo`: seeded and
media tasks, per-audio timing, and the quirks of an eventually consistent API
(files that lag the status, tasks invisible just after their submit, integer
task ids, other status words).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal

from ._delivery import CallbackDelivery
from ._state import MEDIA_KINDS, FakeTask, SeededAnswer, TaskBook, now_iso


def check_lag(name: str, value: float) -> float:
    """``value`` if it is a usable number of seconds, else :class:`ValueError`."""
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


class TaskShaping:
    """Mixin of :class:`FakeVidgo` over its :class:`TaskBook` (``self._book``)."""

    _book: TaskBook
    _delivery: CallbackDelivery

    # -- quirks -----------------------------------------------------------------------------

    @property
    def files_lag(self) -> float:
        """Seconds a conversion reports ``finished`` with ``files: []`` before its
        ``wav_url`` appears (settable; applies to tasks accepted afterwards)."""
        return self._book.quirks.files_lag

    @files_lag.setter
    def files_lag(self, value: float) -> None:
        self._book.quirks.files_lag = check_lag("files_lag", value)

    @property
    def visibility_lag(self) -> float:
        """Seconds after a submit is accepted during which the detail and status
        routes answer 404 ``Task not found`` for the new task, as an eventually
        consistent API would (settable; applies to tasks accepted afterwards)."""
        return self._book.quirks.visibility_lag

    @visibility_lag.setter
    def visibility_lag(self, value: float) -> None:
        self._book.quirks.visibility_lag = check_lag("visibility_lag", value)

    @property
    def integer_task_ids(self) -> bool:
        """Whether new task ids are decimal digits sent as JSON integers (settable).

        Submit answers, detail and status answers, 409 bodies and callbacks then
        carry ``"task_id": 1234567890``; the detail route takes ``?task_id=`` as
        the decimal string; :attr:`tasks` is keyed by that string; ``wav_url``
        stays a string. Set it before submitting: existing ids keep their shape.
        """
        return self._book.quirks.integer_task_ids

    @integer_task_ids.setter
    def integer_task_ids(self, value: bool) -> None:
        self._book.quirks.integer_task_ids = bool(value)

    @property
    def status_aliases(self) -> Mapping[str, str]:
        """Life-cycle status -> the text answered in its place, such as
        ``{"finished": "succeeded"}`` (settable; a read-only view). Applies to
        every answer and callback of non-seeded tasks from now on."""
        return MappingProxyType(self._book.quirks.status_aliases)

    @status_aliases.setter
    def status_aliases(self, value: Mapping[str, str]) -> None:
        self._book.quirks.status_aliases = dict(value)

    # -- per-audio settings -----------------------------------------------------------------

    def set_duration(
        self,
        audio_id: str,
        *,
        queue_time: float | None = None,
        run_time: float | None = None,
        files_lag: float | None = None,
    ) -> None:
        """Override how long the tasks of ``audio_id`` queue, run, and report
        ``finished`` without files (None: the fake's default), past and future.

        The callbacks of accepted tasks move to their new end."""
        if files_lag is not None:
            check_lag("files_lag", files_lag)
        self._delivery.retimed(self._book.set_duration(audio_id, queue_time, run_time, files_lag))

    # -- tasks ------------------------------------------------------------------------------

    def seed_task(
        self,
        task_id: str | None = None,
        *,
        status: str = "finished",
        files: list[dict[str, Any]] | None = None,
        progress: int | None = None,
        error_message: str | None = None,
        created_time: str | None = None,
        model: str = "convert-to-wav",
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """Add a task whose detail answer is fixed (no life cycle), for parsing tests.

        Args:
            task_id: Its id; a fresh one when None.
            status: The status answered, any string.
            files: The files answered; None gives a ``wav_url`` on this fake when
                ``status`` is ``"finished"`` (the file is served), else ``[]``.
            progress: Sent as ``progress`` when not None.
            error_message: Sent as ``error_message``.
            created_time: Sent as ``created_time``; now when None.
            model: Recorded model of the task.
            extra: Extra fields merged into the answer's ``data``.

        Returns:
            The task id.
        """
        seeded = SeededAnswer(
            status=status,
            files=files,
            progress=progress,
            error_message=error_message,
            extra=dict(extra or {}),
        )
        task = self._new_task(task_id, model=model, seeded=seeded)
        if created_time is not None:
            task.created_time = created_time
        return task.task_id

    def add_media_task(
        self, kind: Literal["image", "video"], *, fail_message: str | None = None
    ) -> str:
        """Add an image or video task, read through the generic status route.

        Returns:
            The task id.
        """
        if kind not in MEDIA_KINDS:
            raise ValueError(f"kind must be 'image' or 'video', got {kind!r}")
        task = self._new_task(None, model=f"generate-{kind}", kind=kind)
        task.fail_message = fail_message
        return task.task_id

    def _new_task(self, task_id: str | None, *, model: str, **fields: Any) -> FakeTask:
        book = self._book
        task = FakeTask(
            task_id=task_id or book.new_id(),
            model=model,
            input={},
            created_time=now_iso(),
            accepted_at=book.clock(),
            queue_time=book.queue_time,
            run_time=book.run_time,
            **fields,
        )
        return book.add(task)
