"""Tasks and credits: the fake's business state, free of HTTP.

A task's status is computed from the clock when asked, so no background work
runs per task: ``not_started`` for ``queue_time``, ``running`` for
``run_time`` (progress rising linearly), then ``finished`` or ``failed``.
"""

from __future__ import annotations

import random
import string
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import attrs

WAV_MODEL = "convert-to-wav"
MEDIA_KINDS = frozenset({"image", "video"})
_ALPHABET = string.ascii_lowercase + string.digits
SEEDED_EPOCH = 1757165031
"""The epoch in the ids of a seeded fake: the vendor's example id's, in place of the time."""


class ApiError(Exception):
    """An error answer of the API: HTTP ``status`` with the JSON ``body`` (and ``headers``)."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})
        self.body: dict[str, Any] = {"code": status, "message": message, **extra}


@attrs.define(kw_only=True)
class Quirks:
    """Fake-wide deviations from the happy path, shared by the book and its tasks.

    Attributes:
        files_lag: Seconds a task reports ``finished`` with ``files: []``
            before its files appear (for tasks accepted from now on).
        visibility_lag: Seconds after acceptance during which the detail and
            status routes answer 404 for a task (for tasks accepted from now on).
        integer_task_ids: New task ids are decimal digits, sent as JSON integers.
        status_aliases: Life-cycle status -> the text answered instead.
    """

    files_lag: float = 0.0
    visibility_lag: float = 0.0
    integer_task_ids: bool = False
    status_aliases: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class SeededAnswer:
    """A fixed detail answer of a task created with ``seed_task`` (no life cycle)."""

    status: str
    files: list[dict[str, Any]] | None
    progress: int | None
    error_message: str | None
    extra: Mapping[str, Any]


@attrs.define(kw_only=True)
class FakeTask:
    """One task of the fake: its request, its timing and its fate.

    Attributes:
        task_id: The id the API gave it.
        model: The submitted model (``"image"``/``"video"`` tasks have ``kind`` set).
        input: The submitted input object.
        created_time: ISO 8601 creation time, no zone.
        accepted_at: Clock reading at acceptance.
        queue_time: Seconds spent ``not_started``.
        run_time: Seconds spent ``running``.
        fail_message: When set, the task ends ``failed`` with this message.
        callback_url: The callback URL submitted, if any.
        kind: ``"music"``, ``"image"`` or ``"video"``.
        seeded: A fixed answer replacing the life cycle.
        files_lag: Seconds the task is ``finished`` with no files yet.
        hidden_for: Seconds after ``accepted_at`` during which lookups answer 404.
        quirks: The fake's :class:`Quirks` (integer ids, status aliases).
    """

    task_id: str
    model: str
    input: dict[str, Any]
    created_time: str
    accepted_at: float
    queue_time: float
    run_time: float
    fail_message: str | None = None
    callback_url: str | None = None
    kind: str = "music"
    seeded: SeededAnswer | None = None
    files_lag: float = 0.0
    hidden_for: float = 0.0
    quirks: Quirks = attrs.field(factory=Quirks, eq=False, repr=False)

    @property
    def wire_id(self) -> str | int:
        """The id as sent in JSON: an integer when the fake uses integer ids."""
        if self.quirks.integer_task_ids and self.task_id.isdecimal():
            return int(self.task_id)
        return self.task_id

    def visible(self, now: float) -> bool:
        """Whether lookups find the task at ``now`` (see ``hidden_for``)."""
        return now >= self.accepted_at + self.hidden_for

    @property
    def audio_id(self) -> str | None:
        """The ``input.audio_id`` of a music task, if any."""
        value = self.input.get("audio_id")
        return value if isinstance(value, str) else None

    def status(self, now: float) -> str:
        """The status at clock reading ``now``."""
        if self.seeded is not None:
            return self.seeded.status
        elapsed = now - self.accepted_at
        if elapsed < self.queue_time:
            return "not_started"
        if elapsed < self.queue_time + self.run_time:
            return "running"
        return "failed" if self.fail_message is not None else "finished"

    def progress(self, now: float) -> int:
        """Progress 0..100 at ``now`` (100 once terminal)."""
        if self.seeded is not None and self.seeded.progress is not None:
            return self.seeded.progress
        status = self.status(now)
        if status == "not_started":
            return 0
        if status != "running":
            return 100
        done = (now - self.accepted_at - self.queue_time) / self.run_time
        return max(0, min(100, int(done * 100)))

    def files(self, now: float, base_url: str) -> list[dict[str, Any]]:
        """The ``files`` list at ``now``; URLs point at ``base_url``."""
        if self.seeded is not None and self.seeded.files is not None:
            return list(self.seeded.files)
        if self.status(now) != "finished":
            return []
        if now < self.accepted_at + self.queue_time + self.run_time + self.files_lag:
            return []
        stem = f"{base_url}/files/{self.task_id}"
        if self.kind in MEDIA_KINDS:
            suffix = "png" if self.kind == "image" else "mp4"
            return [{"file_url": f"{stem}.{suffix}", "file_type": self.kind}]
        if self.model == WAV_MODEL:
            return [{"wav_url": f"{stem}.wav"}]
        if self.model == "separate-vocals":
            return [{"audio_url": f"{stem}.wav", "instrumental_url": f"{stem}-instrumental.wav"}]
        return [{"audio_id": self.audio_id, "audio_url": f"{stem}.wav"}]

    def data(self, now: float, base_url: str, *, with_progress: bool) -> dict[str, Any]:
        """The ``data`` object of a detail or status answer at ``now``."""
        status = self.status(now)
        error = self.fail_message if status == "failed" else None
        if self.seeded is not None:
            error = self.seeded.error_message
        if self.seeded is None:
            status = self.quirks.status_aliases.get(status, status)
        answer: dict[str, Any] = {
            "task_id": self.wire_id,
            "status": status,
            "files": self.files(now, base_url),
            "created_time": self.created_time,
            "error_message": error,
        }
        if with_progress or (self.seeded is not None and self.seeded.progress is not None):
            answer["progress"] = self.progress(now)
        if self.seeded is not None:
            answer.update(self.seeded.extra)
        return answer


def now_iso() -> str:
    """The current UTC time as the API writes it: ISO 8601, seconds, no zone."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


class TaskBook:
    """All tasks, the 409 rule, credits, and the per-audio test settings."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        queue_time: float,
        run_time: float,
        credits: int,
        seed: int | None,
    ) -> None:
        self.clock = clock
        self.queue_time = queue_time
        self.run_time = run_time
        self.tasks: dict[str, FakeTask] = {}
        self.accepted: dict[str, list[str]] = {}
        self.accept_count: Counter[str] = Counter()
        self.failures: dict[str, str] = {}
        self.durations: dict[str, tuple[float | None, float | None, float | None]] = {}
        self.quirks = Quirks()
        self.forbidden: set[str] = set()
        self.strict_parents = False
        self.conflict_includes_task_id = False
        self._spent = 0
        self._initial_credits = credits
        self._by_audio: dict[tuple[str, str], str] = {}
        self._rng = random.Random(seed)
        self._epoch: int | None = None if seed is None else SEEDED_EPOCH

    def new_id(self) -> str:
        """A fresh id shaped like the vendor's: ``task-unified-<epoch>-<8 chars>``.

        The epoch is the current time, or :data:`SEEDED_EPOCH` with a seed, so
        that a seed gives the same ids run after run. With integer ids, ten
        decimal digits instead.
        """
        while True:
            if self.quirks.integer_task_ids:
                number = str(self._rng.randrange(10**9, 10**10))
                if number not in self.tasks:
                    return number
                continue
            suffix = "".join(self._rng.choice(_ALPHABET) for _ in range(8))
            epoch = int(time.time()) if self._epoch is None else self._epoch
            task_id = f"task-unified-{epoch}-{suffix}"
            if task_id not in self.tasks:
                return task_id

    @property
    def credits(self) -> int:
        """Credits left; failed conversions are refunded."""
        now = self.clock()
        refunds = sum(
            1
            for task in self.tasks.values()
            if task.model == WAV_MODEL and task.seeded is None and task.status(now) == "failed"
        )
        return self._initial_credits - self._spent + refunds

    @credits.setter
    def credits(self, value: int) -> None:
        self._initial_credits += value - self.credits

    def submit(self, model: str, task_input: dict[str, Any], callback_url: str | None) -> FakeTask:
        """Accept a validated submit, or raise :class:`ApiError` (409, 402, 400)."""
        audio_id = _check_input(model, task_input)
        if audio_id is not None:
            self._check_parent(task_input)
            self._check_conflict(model, audio_id)
        # Refunds only add credits: count them (a scan of all tasks) only when it matters.
        if model == WAV_MODEL and self._initial_credits <= self._spent and self.credits <= 0:
            raise ApiError(402, "Insufficient credits")
        task = self._create(model, task_input, callback_url, audio_id)
        if audio_id is not None:
            self._by_audio[(model, audio_id)] = task.task_id
        if model == WAV_MODEL:
            self._spent += 1
            assert audio_id is not None
            self.accepted.setdefault(audio_id, []).append(task.task_id)
            self.accept_count[audio_id] += 1
        return task

    def add(self, task: FakeTask) -> FakeTask:
        """Store ``task`` (seeded and media tasks), sharing the book's quirks."""
        task.quirks = self.quirks
        self.tasks[task.task_id] = task
        return task

    def lookup(self, task_id: str) -> FakeTask:
        """The task ``task_id``, or :class:`ApiError` 403/404."""
        if task_id in self.forbidden:
            raise ApiError(403, "Task belongs to another user")
        task = self.tasks.get(task_id)
        if task is None or not task.visible(self.clock()):
            raise ApiError(404, "Task not found")
        return task

    def set_failure(self, audio_id: str, message: str) -> None:
        """Make every conversion of ``audio_id``, past and future, end ``failed``."""
        self.failures[audio_id] = message
        for task in self._tasks_of(audio_id):
            task.fail_message = message

    def set_duration(
        self,
        audio_id: str,
        queue_time: float | None,
        run_time: float | None,
        files_lag: float | None = None,
    ) -> list[str]:
        """Override the timing of the tasks of ``audio_id``, past and future.

        Returns:
            The ids of the existing tasks retimed.
        """
        self.durations[audio_id] = (queue_time, run_time, files_lag)
        tasks = self._tasks_of(audio_id)
        for task in tasks:
            task.queue_time = self.queue_time if queue_time is None else queue_time
            task.run_time = self.run_time if run_time is None else run_time
            task.files_lag = self.quirks.files_lag if files_lag is None else files_lag
        return [task.task_id for task in tasks]

    def _tasks_of(self, audio_id: str) -> list[FakeTask]:
        return [t for t in self.tasks.values() if t.seeded is None and t.audio_id == audio_id]

    def _create(
        self, model: str, task_input: dict[str, Any], callback_url: str | None, audio_id: str | None
    ) -> FakeTask:
        queue_time, run_time, files_lag = self.durations.get(audio_id or "", (None, None, None))
        task = FakeTask(
            task_id=self.new_id(),
            model=model,
            input=task_input,
            created_time=now_iso(),
            accepted_at=self.clock(),
            queue_time=self.queue_time if queue_time is None else queue_time,
            run_time=self.run_time if run_time is None else run_time,
            fail_message=self.failures.get(audio_id or ""),
            callback_url=callback_url,
            files_lag=self.quirks.files_lag if files_lag is None else files_lag,
            hidden_for=self.quirks.visibility_lag,
        )
        return self.add(task)

    def _check_parent(self, task_input: dict[str, Any]) -> None:
        if self.strict_parents and task_input["task_id"] not in self.tasks:
            raise ApiError(400, "Parent task not found")

    def _check_conflict(self, model: str, audio_id: str) -> None:
        existing = self._by_audio.get((model, audio_id))
        if existing is None:
            return
        message = (
            "Audio track already converted to WAV"
            if model == WAV_MODEL
            else f"Audio track already processed by {model}"
        )
        if self.conflict_includes_task_id:
            raise ApiError(409, message, data={"task_id": self.tasks[existing].wire_id})
        raise ApiError(409, message)


def _check_input(model: str, task_input: dict[str, Any]) -> str | None:
    """Validate the input of ``model``; return its audio id when it names one."""
    if model != WAV_MODEL and "audio_id" not in task_input:
        return None
    for key in ("task_id", "audio_id"):
        value = task_input.get(key)
        if not isinstance(value, str) or not value:
            raise ApiError(400, f"input.{key} must be a non-empty string")
    audio_id: str = task_input["audio_id"]
    return audio_id
