"""The request log: every request the fake saw, in arrival order."""

from __future__ import annotations

import time
from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """One request as the fake saw it, and how the fake answered.

    Attributes:
        method: HTTP method.
        path: URL path, without the query string.
        query: Query parameters (last value wins on repeats).
        headers: Request headers as a plain dict.
        json: The parsed JSON body, or None when absent or not JSON.
        status: The HTTP status answered; None while in flight, or when the
            connection was reset or stalled instead.
        fault: The kind of the fault applied, or None.
        route: The route name (``"submit"``, ``"detail"``, ...), None for an
            unknown path.
        at: When it arrived, on ``time.monotonic()`` (one clock for every
            process of the machine: rates on the wire can be counted from it).
    """

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any | None
    status: int | None = None
    fault: str | None = None
    route: str | None = None
    at: float = attrs.field(factory=time.monotonic)


class RequestLog:
    """Append-only log whose entries are completed in place once answered."""

    def __init__(self) -> None:
        self._entries: list[RecordedRequest] = []

    def __len__(self) -> int:
        return len(self._entries)

    def snapshot(self) -> list[RecordedRequest]:
        """A copy of the entries, oldest first."""
        return list(self._entries)

    def add(self, entry: RecordedRequest) -> RecordedRequest:
        """Append ``entry`` and return it (the handle for :meth:`update`)."""
        self._entries.append(entry)
        return entry

    def update(self, entry: RecordedRequest, **changes: Any) -> RecordedRequest:
        """Replace ``entry`` by a copy with ``changes``; a no-op if the log was reset since."""
        updated = attrs.evolve(entry, **changes)
        for index in range(len(self._entries) - 1, -1, -1):
            if self._entries[index] is entry:
                self._entries[index] = updated
                break
        return updated

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def matching(self, path_or_route: str) -> list[RecordedRequest]:
        """Entries whose route name or path equals ``path_or_route``."""
        return [e for e in self._entries if path_or_route in (e.route, e.path)]
