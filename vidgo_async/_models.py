"""Value classes. Only the task handle knows a JSON form, its own (a string a user
keeps to resume a wait elsewhere); the vendor's JSON is converted at the edge,
in ``_wire.convert``."""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
from cattrs.gen import make_dict_structure_fn, override

from ._converter import converter

__all__ = [
    "WAV_MODEL",
    "Balance",
    "ConversionResult",
    "Task",
    "TaskFile",
    "TaskHandle",
    "TaskStatus",
    "is_url",
]

#: The model name of a WAV conversion.
WAV_MODEL = "convert-to-wav"


class TaskStatus(str, enum.Enum):
    """Where a task stands. ``FINISHED`` and ``FAILED`` are terminal."""

    NOT_STARTED = "not_started"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    #: A status string the docs do not list; never terminal, so a wait goes on.
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        """Whether the task will not change any more."""
        return self in (TaskStatus.FINISHED, TaskStatus.FAILED)

    @classmethod
    def parse(cls, value: object) -> TaskStatus:
        """The status named by ``value`` (in any case, ``-`` or a space for ``_``), or
        by a sister platform's word for it (``"success"``, ``"error"``, ``"queued"``
        ..., and ``FAILED`` for any ``"..._failed"`` or ``"..._error"``, such as
        ``"GENERATE_AUDIO_FAILED"``); ``UNKNOWN`` for anything else."""
        if not isinstance(value, str):
            return cls.UNKNOWN
        word = value.strip().lower().replace("-", "_").replace(" ", "_")
        if word.endswith(("_failed", "_error")):
            return cls.FAILED
        return _BY_TEXT.get(word, cls.UNKNOWN)


# The documented words, and the words sister task APIs use for the same states. A task
# that says it succeeded is done: waiting on to the deadline would cost the caller its
# time and the account its quota, and a finished answer without a wav_url is an error
# that says so. ("text_success", "first_success": a stage, not the end: unknown.)
_BY_TEXT: dict[str, TaskStatus] = {
    **{status.value: status for status in TaskStatus if status is not TaskStatus.UNKNOWN},
    **dict.fromkeys(
        ["pending", "queued", "waiting", "submitted", "created"], TaskStatus.NOT_STARTED
    ),
    **dict.fromkeys(["processing", "in_progress", "generating", "started"], TaskStatus.RUNNING),
    **dict.fromkeys(
        ["success", "succeeded", "successful", "completed", "complete", "done"],
        TaskStatus.FINISHED,
    ),
    **dict.fromkeys(
        ["failure", "error", "errored", "cancelled", "canceled", "timeout", "timed_out"],
        TaskStatus.FAILED,
    ),
}


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@attrs.frozen
class TaskFile(Mapping[str, Any]):
    """One entry of a task's ``files``, every key the server sent kept.

    ``convert-to-wav`` fills ``wav_url``; other models fill other keys
    (``audio_url``, ``video_url``, ``file_url`` ...), read them by name.
    """

    data: Mapping[str, Any] = attrs.field(converter=_frozen_mapping, factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: str, default: Any = None) -> Any:
        # Mapping's own get() reads a missing key as a caught KeyError.
        return self.data.get(key, default)

    @property
    def wav_url(self) -> str | None:
        """The WAV download URL, if this file has one."""
        value = self.data.get("wav_url")
        return value if isinstance(value, str) and value else None


@attrs.frozen(kw_only=True)
class Task:
    """A snapshot of a task as the server described it.

    Attributes:
        task_id: The task's id.
        status: Where it stands.
        files: Result files, empty until ``finished``.
        created_time: When the server created it (naive, as the API sends it).
        progress: Percent done (0-100), when the server reports it.
        error_message: Why it failed, for a ``failed`` task.
        raw_status: The status string exactly as sent (useful for ``UNKNOWN``).
    """

    task_id: str
    status: TaskStatus
    files: tuple[TaskFile, ...] = ()
    created_time: datetime | None = None
    progress: float | None = None
    error_message: str | None = None
    raw_status: str = attrs.field(default="", repr=False)

    @property
    def wav_url(self) -> str | None:
        """The first file's WAV URL, or ``None`` until there is one."""
        return self.wav_url_for(None)

    def wav_url_for(self, audio_id: str | None) -> str | None:
        """The WAV URL of track ``audio_id``: the first file's that is an absolute
        http(s) URL without control characters (a terminal would obey them when
        the URL is printed): the first that names this ``audio_id`` (as a number too,
        blanks around it aside), else one naming it as a hex id (a UUID) in another
        letter case (a server may lower-case it), else one naming no track (blank, or
        no string or number); never another track's (under ``audioId`` too)."""
        usable = [(_named(file), url) for file in self.files if is_url(url := file.wav_url)]
        if audio_id is None:
            return usable[0][1] if usable else None
        ranked = [(rank, url) for named, url in usable if (rank := _rank(named, audio_id)) >= 0]
        return min(ranked, key=lambda item: item[0])[1] if ranked else None

    @property
    def is_terminal(self) -> bool:
        """Whether the task will not change any more."""
        return self.status.is_terminal


def is_url(url: object) -> bool:
    """Whether ``url`` (a file's ``wav_url``, a journal's) is one to hand a user: an
    absolute http(s) URL naming a host, without control characters (a terminal would
    obey them when it is printed)."""
    return (
        isinstance(url, str)
        and url.lower().startswith(("https://", "http://"))
        and url.partition("://")[2][:1] not in ("", "/")  # it names a host
        and url.isprintable()
    )


def _named(file: TaskFile) -> str | None:
    """The track a file names (``audio_id``, or ``audioId``), as text; None when blank,
    or neither a string nor a number."""
    value = file.get("audio_id", file.get("audioId"))
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 1.0: the 1 a JSON encoder wrote as a float
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value).strip() or None


def _rank(named: str | None, audio_id: str) -> int:
    """How well a file naming track ``named`` answers for ``audio_id``: 0 the same id,
    1 the same hex id (a UUID) in another letter case, 2 a file naming no track; -1
    another track (ids of other shapes may differ by case alone)."""
    if named is None:
        return 2
    if named == audio_id.strip():
        return 0
    hex_ids = _HEX_ID.fullmatch(named) and _HEX_ID.fullmatch(audio_id.strip())
    return 1 if hex_ids and named.lower() == audio_id.strip().lower() else -1


_HEX_ID = re.compile(r"[0-9A-Fa-f-]{16,}")  # a UUID's length: shorter ids may be base62


@attrs.frozen(kw_only=True)
class TaskHandle:
    """Enough to resume waiting on a task, here or in another process.

    Round-trips through JSON with :meth:`to_json` and :meth:`from_json`.

    Attributes:
        task_id: The id to poll (the *new* task, not the parent).
        model: The model submitted.
        source_task_id: The parent music task, for track models.
        audio_id: The track, for track models.
    """

    task_id: str
    model: str = WAV_MODEL
    source_task_id: str | None = None
    audio_id: str | None = None

    def to_json(self) -> str:
        """This handle as a JSON string."""
        return json.dumps(converter.unstructure(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> TaskHandle:
        """The handle a :meth:`to_json` string describes.

        Raises:
            ValueError: ``text`` is not such a string.
        """
        try:
            handle: TaskHandle = converter.structure(json.loads(text), TaskHandle)
        except (ValueError, TypeError, KeyError, RecursionError) as exc:
            raise ValueError(f"not a task handle: {str(text)[:80]!r}") from exc
        return handle


def _handle_text(value: Any, *, empty: bool = True, none: bool = False) -> Any:
    """A handle's field as written: cattrs's own str hook would make a string of anything."""
    if value is None and none:
        return None
    if not isinstance(value, str) or not (empty or value.strip()):
        raise TypeError(f"expected a string, got {value!r:.40}")
    return value


converter.register_structure_hook(
    TaskHandle,
    make_dict_structure_fn(
        TaskHandle,
        converter,
        task_id=override(struct_hook=lambda value, _: _handle_text(value, empty=False)),
        model=override(struct_hook=lambda value, _: _handle_text(value)),
        source_task_id=override(struct_hook=lambda value, _: _handle_text(value, none=True)),
        audio_id=override(struct_hook=lambda value, _: _handle_text(value, none=True)),
    ),
)


@attrs.frozen(kw_only=True)
class ConversionResult:
    """The outcome of one ``(task_id, audio_id)`` pair of a batch.

    Attributes:
        source_task_id: The parent music task of the input pair.
        audio_id: The track of the input pair.
        task_id: The conversion task's id, once one is known.
        wav_url: The WAV URL, when the conversion finished.
        path: Where the WAV was saved, when the batch downloads.
        error: Why this pair did not succeed, else ``None``: a
            :class:`~vidgo_async.VidgoError`, an ``OSError`` of the download,
            or a ``TypeError``/``ValueError`` for a malformed input pair.
    """

    source_task_id: str
    audio_id: str
    task_id: str | None = None
    wav_url: str | None = None
    path: Path | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """Whether the pair converted (and downloaded, when asked)."""
        return self.error is None and self.wav_url is not None


@attrs.frozen(kw_only=True)
class Balance:
    """The account's remaining credits.

    Attributes:
        credits_amount: Credits left.
        email: The account's e-mail address, when sent.
    """

    credits_amount: float
    email: str | None = None
