"""The vendor's JSON shapes to models, through the one cattrs converter (``_converter``).

Lenient where the API is loose (unknown status strings, odd ``progress``,
unparsable timestamps, unknown keys, integer ids), strict where going on
would be wrong: no task id, an id that could not be sent back unchanged,
an answer about another task. Every failure here becomes
:class:`InvalidResponseError`; no ``KeyError``, ``OverflowError`` or
``RecursionError`` escapes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cattrs.gen import make_dict_structure_fn, override

from .._converter import converter
from .._models import Balance, Task, TaskFile, TaskStatus
from .._validate import MAX_ID
from ..errors import ConflictError, InvalidResponseError, UnusableTaskIdError
from .redaction import redact

__all__ = [
    "parse_accepted",
    "parse_balance",
    "parse_task",
    "server_id",
]

_LENGTH_LIMIT = 40  # digits of a number worth reading; longer ones are not data


def server_id(value: Any, _: object = None) -> str:
    """A task id the server sent, as the string we will send back.

    Raises:
        InvalidResponseError: Not a non-blank string (or integer) of at most
            256 characters.
        UnusableTaskIdError: One that would not survive being sent back (a
            lone surrogate has no UTF-8 form).
    """
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**_LENGTH_LIMIT:
        return str(value)  # ids are strings in the docs, integers on some platforms
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID:
        raise InvalidResponseError(f"not a usable task id: {value!r:.80}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            message = f"a task id that cannot be sent back unchanged: {value!r:.80}"
            raise UnusableTaskIdError(message) from None
    return value


def _number(value: Any) -> float | None:
    """A finite number, from a JSON number or a numeric string (``"42"``, ``"42%"``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip().rstrip("%")
        if len(text) > _LENGTH_LIMIT:
            return None
        try:
            value = float(text)
        except ValueError:
            return None
    if isinstance(value, int):
        value = float(value) if abs(value) < 10**_LENGTH_LIMIT else math.inf
    return value if isinstance(value, float) and math.isfinite(value) else None


def _progress(value: Any, _: object) -> float | None:
    number = _number(value)
    return None if number is None else min(100.0, max(0.0, number))


def _datetime(value: Any, _: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        text = value.strip()  # Python 3.10's fromisoformat reads no "Z"
        return datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None


def _text(value: Any, _: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value)  # already parsed once: its depth is a JSON decoder's
    return str(value) if isinstance(value, (int, float, bool)) else None


def _files(value: Any, _: object) -> tuple[TaskFile, ...]:
    if isinstance(value, dict):  # one file, sent as itself rather than in a list
        value = [value]
    if not isinstance(value, list):
        return ()
    return tuple(TaskFile(_file(item)) for item in value if isinstance(item, dict))


def _file(item: dict[str, Any]) -> dict[str, Any]:
    """A file entry as sent, its ``audio_id`` a string (some platforms send integers)."""
    audio_id = item.get("audio_id")
    if isinstance(audio_id, int) and not isinstance(audio_id, bool):
        return {**item, "audio_id": str(audio_id)}
    return item


def _raw_status(value: Any, _: object) -> str:
    return value if isinstance(value, str) else repr(value)[:80]


def _status(value: Any, _: object) -> TaskStatus:
    return TaskStatus.parse(value)


converter.register_structure_hook(
    Task,
    make_dict_structure_fn(
        Task,
        converter,
        task_id=override(struct_hook=server_id),
        status=override(struct_hook=_status),
        raw_status=override(rename="status", struct_hook=_raw_status),
        files=override(struct_hook=_files),
        created_time=override(struct_hook=_datetime),
        progress=override(struct_hook=_progress),
        error_message=override(struct_hook=_text),
    ),
)
converter.register_structure_hook(
    Balance,
    make_dict_structure_fn(
        Balance,
        converter,
        credits_amount=override(struct_hook=lambda value, _: _required(_number(value))),
        email=override(struct_hook=lambda value, _: value if isinstance(value, str) else None),
    ),
)


def _required(number: float | None) -> float:
    if number is None:
        raise ValueError("not a finite number")
    return number


def _one_object(data: Any) -> Mapping[str, Any]:
    if isinstance(data, list) and len(data) == 1:
        data = data[0]  # a one-task list, as some platforms wrap it
    if not isinstance(data, Mapping):
        raise InvalidResponseError("expected a task object in data", excerpt=_excerpt(data))
    return data


def _excerpt(value: object) -> str:
    try:
        return repr(value)[:120]
    except RecursionError:  # a list nested past the interpreter's limit
        return type(value).__name__


class OtherTaskError(InvalidResponseError):
    """A read's answer describes a task other than the one asked for."""


def parse_task(data: Any, *, task_id: str | None = None, secret: str = "") -> Task:
    """The :class:`Task` a ``data`` object describes.

    Args:
        data: The envelope's ``data``.
        task_id: The id asked for: used when ``data`` names none, and an
            answer naming another task is refused.
        secret: The API key, redacted from what an error quotes of ``data`` (a short
            key stays in the values read as data: see ``redaction.redact_json``).

    Raises:
        InvalidResponseError: ``data`` is not a description of that task.
    """
    data = _one_object(data)
    if not data.get("task_id"):
        fallback = data.get("id") or task_id  # "id" on some platforms; else the id asked for
        data = {**data, "task_id": fallback}
    try:
        task = converter.structure(data, Task)
    except UnusableTaskIdError:
        if task_id is None:
            raise
        # Not the id asked for (that one was sent): an answer about another task.
        raise OtherTaskError(
            f"asked for task {task_id!r:.80}, the answer is about an id that cannot be sent back"
        ) from None
    except InvalidResponseError:
        raise
    except (KeyError, ValueError, TypeError, RecursionError) as exc:
        shown = redact(_excerpt(data), secret)
        raise InvalidResponseError("unreadable task object", excerpt=shown) from exc
    if task_id is not None and task.task_id != task_id:
        other = redact(task.task_id, secret)
        raise OtherTaskError(f"asked for task {task_id!r:.80}, the answer is about {other!r:.80}")
    return task


def conflict_task(exc: ConflictError, body: Mapping[str, Any]) -> str | None:
    """The task a submit's 409 names, if it is the conversion: an error body echoing
    the request names the parent music task (the input's ``task_id``) instead."""
    if exc.task_id is not None and exc.task_id == body["input"].get("task_id"):
        return None
    return exc.task_id


def parse_accepted(data: Any, *, parent: str | None = None) -> tuple[str, Mapping[str, Any]]:
    """The id of the task a submit answer's ``data`` names, and the object naming it.

    Only the id is read (a wait needs nothing else): an answer with no
    ``status`` - some platforms send the id alone - is accepted too.

    Args:
        parent: The music task a WAV conversion's input names: an answer naming it
            echoes the input, and names no new task.

    Raises:
        InvalidResponseError: ``data`` names no usable task id, or the parent.
    """
    data = _one_object(data)
    task_id = server_id(data.get("task_id") or data.get("id"))
    if parent is not None and task_id == parent:
        raise InvalidResponseError(f"the answer names the parent task {parent!r:.80}, no new one")
    return task_id, data


def parse_balance(data: Any) -> Balance:
    """The :class:`Balance` a ``data`` object describes.

    Raises:
        InvalidResponseError: ``data`` has no finite numeric ``credits_amount``.
    """
    try:
        balance: Balance = converter.structure(data, Balance)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidResponseError(
            "expected a numeric credits_amount", excerpt=_excerpt(data)
        ) from exc
    return balance
