"""A batch's input: pairs read lazily, one at a time, by any of its workers; what is
kept of a finished pair for its repeats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

from ._models import ConversionResult
from ._validate import check_id

__all__ = ["END", "Intake", "Kept", "Key", "Pairs", "describe_pair", "keep", "pair_key", "recall"]

Pairs = Iterable[Any] | AsyncIterable[Any]
#: A checked ``(task_id, audio_id)`` pair.
Key = tuple[str, str]
#: What :meth:`Intake.next` gives once the input is over.
END = object()


class Intake:
    """The input, shared by the workers: read one pair at a time, lazily."""

    def __init__(self, pairs: Pairs) -> None:
        self._pairs = pairs
        self.is_async = isinstance(pairs, AsyncIterable)  # an ABC check: once, not per pair
        self._sync: Iterator[Any] | None = None
        self._async: AsyncIterator[Any] | None = None
        self._lock = asyncio.Lock()  # an async iterator serves one reader at a time
        self.read = 0
        self.done = False

    def next_now(self) -> Any:
        """The next pair of a plain iterable; ``END`` once it is exhausted (or failed)."""
        if self.done:
            return END
        try:
            if self._sync is None:
                self._sync = iter(self._pairs)  # type: ignore[arg-type]
            pair = next(self._sync)
        except StopIteration:
            self.done = True
            return END
        except BaseException:
            self.done = True
            raise
        self.read += 1
        return pair

    async def next(self) -> Any:
        """The next pair of an async iterable; ``END`` once it is exhausted (or failed)."""
        if self.done:
            return END
        try:
            pair = await self._anext(self._pairs)  # type: ignore[arg-type]
        except StopAsyncIteration:
            self.done = True
            return END
        except BaseException:
            self.done = True
            raise
        self.read += 1
        return pair

    async def _anext(self, pairs: AsyncIterable[Any]) -> Any:
        async with self._lock:
            if self.done:  # it ended while this reader queued
                raise StopAsyncIteration
            if self._async is None:
                self._async = aiter(pairs)
            return await anext(self._async)


def pair_key(pair: Any) -> Key:
    """The checked pair.

    Raises:
        TypeError, ValueError: ``pair`` is not a ``(task_id, audio_id)`` pair of ids.
    """
    usual = type(pair) is tuple and len(pair) == 2  # skips the checks below
    if not usual and (
        isinstance(pair, (str, bytes)) or not isinstance(pair, (tuple, list)) or len(pair) != 2
    ):
        raise TypeError(f"each pair must be a (task_id, audio_id) tuple, got {pair!r:.80}")
    return check_id("task_id", pair[0]), check_id("audio_id", pair[1])


def describe_pair(pair: Any) -> tuple[str, str]:
    """What a malformed ``pair`` shows as, in its result."""
    if isinstance(pair, (tuple, list)) and len(pair) == 2:
        return str(pair[0]), str(pair[1])
    return repr(pair)[:80], ""


#: A finished pair's result as kept for repeats: a plain success as ``(task_id,
#: wav_url)``, anything else as it is.
Kept = ConversionResult | tuple[str | None, str]


def keep(result: ConversionResult) -> Kept:
    """What to keep of a result for repeats of its pair read later.

    A batch keeps one per pair. A tuple of strings is one object the garbage
    collector stops tracking, where a result is one it walks in every
    collection to the end of the batch (see BENCHMARKS.md, garbage collection).
    """
    if result.error is None and result.path is None and result.wav_url is not None:
        return (result.task_id, result.wav_url)
    return result


def recall(key: Key, kept: Kept) -> ConversionResult:
    """The result :func:`keep` kept for ``key``'s pair (an equal one)."""
    if isinstance(kept, ConversionResult):
        return kept
    task_id, wav_url = kept
    return ConversionResult(
        source_task_id=key[0], audio_id=key[1], task_id=task_id, wav_url=wav_url
    )
