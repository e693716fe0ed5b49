"""What the CLI prints about results and tasks: the JSON shapes and the text lines.

The one place that turns SDK values into JSON for the CLI (``--json``,
``--output``), so that the shapes stay the same across commands.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vidgo_async import ConversionResult, Task

from .exits import one_line

__all__ = ["download_json", "printable", "result_json", "task_json", "task_text", "wav_json"]


def result_json(result: ConversionResult) -> dict[str, Any]:
    """One batch result, as a JSON object (a line of ``--output`` and ``--json``)."""
    return {
        "task_id": result.source_task_id,
        "audio_id": result.audio_id,
        "conversion_task_id": result.task_id,
        "ok": result.ok,
        "wav_url": result.wav_url,
        "path": os.fspath(result.path) if result.path else None,
        "error": None if result.error is None else one_line(result.error),
        "error_type": None if result.error is None else type(result.error).__name__,
    }


def wav_json(result: ConversionResult, path: Path | None) -> dict[str, Any]:
    """The answer of ``wav --json``: the URL, the file, and the conversion task (for
    ``vidgo-async status``)."""
    return {
        "wav_url": result.wav_url,
        "path": os.fspath(path) if path else None,
        "conversion_task_id": result.task_id,
    }


def download_json(path: Path) -> dict[str, Any]:
    """The answer of ``download --json``."""
    return {"path": os.fspath(path)}


def task_json(task: Task) -> dict[str, Any]:
    """A task, as ``status --json`` prints it."""
    return {
        "task_id": task.task_id,
        "status": task.status.value,
        "progress": task.progress,
        "wav_url": task.wav_url,
        "error_message": task.error_message,
        "created_time": task.created_time.isoformat() if task.created_time else None,
    }


def task_text(task: Task) -> str:
    """A task on one line: ``ID: status [progress%] [wav_url] [error: ...]``."""
    parts = [f"{task.task_id}: {task.status.value}"]
    if task.progress is not None:
        parts.append(f"{task.progress:g}%")
    if task.wav_url:
        parts.append(task.wav_url)
    if task.error_message:
        parts.append(f"error: {printable(task.error_message)}")
    return " ".join(parts)


def printable(text: str) -> str:
    """``text`` with its control characters escaped: a terminal would obey them."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
