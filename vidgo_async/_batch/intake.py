"""A batch's input: pairs read lazily, one at a time, and checked; the file of each WAV."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any

from .._models import ConversionResult
from .._validate import check_id
from .._wire.peers import safe_file_name

__all__ = [
    "Key",
    "Pairs",
    "check_pairs",
    "describe_pair",
    "each_pair",
    "pair_key",
    "result_of",
    "wav_file_name",
]

Pairs = Iterable[Any] | AsyncIterable[Any]
#: A checked ``(task_id, audio_id)`` pair.
Key = tuple[str, str]


def check_pairs(pairs: object) -> None:
    """Raises TypeError unless ``pairs`` is a plain or async iterable of items (a string
    or bytes would be read a character at a time, a mapping by its keys)."""
    if isinstance(pairs, (str, bytes, Mapping)) or not isinstance(pairs, (Iterable, AsyncIterable)):
        kind = type(pairs).__name__
        raise TypeError(f"pairs must be an iterable of (task_id, audio_id) pairs, got {kind}")


async def each_pair(pairs: Pairs) -> AsyncIterator[Any]:
    """The items of a plain or async iterable, one at a time, as they are asked for."""
    if isinstance(pairs, AsyncIterable):
        async for pair in pairs:
            yield pair
    else:
        for pair in pairs:
            yield pair


def pair_key(pair: Any) -> Key:
    """The checked pair.

    Raises:
        TypeError, ValueError: ``pair`` is not a ``(task_id, audio_id)`` pair of ids.
    """
    if isinstance(pair, (str, bytes)) or not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(f"each pair must be a (task_id, audio_id) tuple, got {pair!r:.80}")
    return check_id("task_id", pair[0]), check_id("audio_id", pair[1])


def result_of(
    key: Key,
    *,
    task_id: str | None = None,
    wav_url: str | None = None,
    error: Exception | None = None,
) -> ConversionResult:
    """The result of the pair ``key``."""
    return ConversionResult(
        source_task_id=key[0], audio_id=key[1], task_id=task_id, wav_url=wav_url, error=error
    )


def describe_pair(pair: Any) -> tuple[str, str]:
    """What a malformed ``pair`` shows as, in its result."""
    if isinstance(pair, (tuple, list)) and len(pair) == 2:
        return str(pair[0])[:256], str(pair[1])[:256]
    return repr(pair)[:80], ""


def wav_file_name(audio_id: str) -> str:
    """The name ``convert_many(download_to=...)`` and the CLI give ``audio_id``'s WAV.

    ``<audio_id>.wav``; an id that had to be changed to be a safe file name
    (other characters than letters, digits, ``.``, ``_``, ``-``; a leading
    dot; over 200 characters) gets a short hash of itself, so that two ids
    never share a file.
    """
    safe = safe_file_name(audio_id) or "audio"
    if safe != audio_id:
        safe += "-" + hashlib.sha256(audio_id.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return safe + ".wav"
