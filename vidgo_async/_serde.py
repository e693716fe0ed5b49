"""The one wire converter: JSON ``data`` objects to models and back.

Lenient where the API is loose (unknown status strings, odd ``progress``,
unparsable timestamps, unknown keys), strict only where we cannot go on (no
task id). Every failure here becomes :class:`InvalidResponseError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, override

from ._models import Balance, Task, TaskFile, TaskHandle, TaskStatus
from .errors import InvalidResponseError

__all__ = ["dump_handle", "load_handle", "parse_balance", "parse_task"]

_MAX_ID = 256


def _lenient_datetime(value: Any, _: type) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)  # ISO 8601, "Z" included, since Python 3.11
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip().rstrip("%"))
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return value
    return None


def _lenient_progress(value: Any, _: type) -> float | None:
    number = _number(value)
    return None if number is None else float(min(100.0, max(0.0, number)))


def _lenient_text(value: Any, _: type) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _files(value: Any, _: type) -> tuple[TaskFile, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(TaskFile(item) for item in value if isinstance(item, dict))


def _raw_status(value: Any, _: type) -> str:
    return value if isinstance(value, str) else repr(value)


def _task_id(value: Any, _: type) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_ID:
        raise ValueError(f"task_id must be a non-empty string, got {value!r:.80}")
    return value


_converter = cattrs.Converter()
_converter.register_structure_hook(TaskStatus, lambda value, _: TaskStatus.parse(value))
_converter.register_structure_hook_func(lambda kind: kind == tuple[TaskFile, ...], _files)
_converter.register_structure_hook(datetime | None, _lenient_datetime)
_converter.register_structure_hook(float | None, _lenient_progress)
_converter.register_structure_hook(str | None, _lenient_text)
_converter.register_structure_hook(
    Task,
    make_dict_structure_fn(
        Task,
        _converter,
        task_id=override(struct_hook=_task_id),
        raw_status=override(rename="status", struct_hook=_raw_status),
    ),
)


_structure_task = _converter.get_structure_hook(Task)  # the hook itself: one dispatch less


def _excerpt(value: object) -> str:
    return repr(value)[:120]


def parse_task(data: Any, *, task_id: str | None = None) -> Task:
    """The :class:`Task` a ``data`` object describes.

    Args:
        data: The envelope's ``data``.
        task_id: The id asked for, used when ``data`` omits it.

    Raises:
        InvalidResponseError: ``data`` is not a task description.
    """
    if type(data) is not dict:  # the usual answer skips the checks below
        if isinstance(data, list) and len(data) == 1:
            data = data[0]  # a one-task list, as some platforms wrap it
        if not isinstance(data, Mapping):
            raise InvalidResponseError("expected a task object in data", excerpt=_excerpt(data))
    if not data.get("task_id"):
        fallback = data.get("id") or task_id  # "id" on some platforms; else the id asked for
        if fallback is not None:
            data = {**data, "task_id": fallback}
    try:
        task: Task = _structure_task(data, Task)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        raise InvalidResponseError("unreadable task object", excerpt=_excerpt(data)) from exc
    return task


def parse_balance(data: Any) -> Balance:
    """The :class:`Balance` a ``data`` object describes.

    Raises:
        InvalidResponseError: ``data`` has no numeric ``credits_amount``.
    """
    credits = data.get("credits_amount") if isinstance(data, Mapping) else None
    amount = _number(credits)
    if amount is None:
        raise InvalidResponseError("expected a numeric credits_amount", excerpt=_excerpt(data))
    email = data.get("email") if isinstance(data, Mapping) else None
    return Balance(credits_amount=amount, email=email if isinstance(email, str) else None)


def dump_handle(handle: TaskHandle) -> str:
    """``handle`` as a JSON string."""
    return json.dumps(_converter.unstructure(handle), sort_keys=True)


def load_handle(text: str | bytes) -> TaskHandle:
    """The handle ``text`` describes.

    Raises:
        ValueError: ``text`` is not a JSON task handle.
    """
    try:
        data = json.loads(text)
        # cattrs would turn any value into a str (5.5 -> "5.5"): check the JSON types first.
        if not isinstance(data, dict) or not _handle_fields_ok(data):
            raise ValueError("wrong shape")
        return _converter.structure(data, TaskHandle)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        raise ValueError(f"not a task handle: {str(text)[:80]!r}") from exc


def _handle_fields_ok(data: dict[str, Any]) -> bool:
    task_id = data.get("task_id")
    if not isinstance(task_id, str) or not task_id.strip():
        return False
    if not isinstance(data.get("model", ""), str):
        return False
    optional = (data.get(name) for name in ("source_task_id", "audio_id"))
    return all(value is None or isinstance(value, str) for value in optional)
