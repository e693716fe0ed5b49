"""What a batch journal keeps of the task durations a client learned, per model: a
small JSON document, the same in SQLite and PostgreSQL, read leniently (a summary
that cannot be read only means the next run starts cold)."""

from __future__ import annotations

import json

from .._config import finite_number

__all__ = ["dump_durations", "load_durations"]


def dump_durations(observations: list[tuple[float, float]]) -> str:
    """Learned task durations (``(after, by)`` seconds from the submit) as a JSON string."""
    return json.dumps({"version": 1, "seen": [[round(a, 3), round(b, 3)] for a, b in observations]})


def load_durations(text: str) -> list[tuple[float, float]]:
    """The durations :func:`dump_durations` wrote; none from anything else (a hint
    that cannot be read only means starting cold)."""
    try:
        data = json.loads(text)
    except (ValueError, TypeError, RecursionError):
        return []
    seen = data.get("seen") if isinstance(data, dict) and data.get("version") == 1 else None
    if not isinstance(seen, list):
        return []
    return [
        (float(pair[0]), float(pair[1]))
        for pair in seen
        if isinstance(pair, list)
        and len(pair) == 2
        and all(not isinstance(x, bool) and finite_number(x) for x in pair)
    ]
