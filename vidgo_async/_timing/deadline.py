"""``Deadline``: when an operation must be over, passed down instead of clamped in each caller."""

from __future__ import annotations

import time

import attrs

__all__ = ["Deadline"]

# Of the time left, the share (at most _LAST_READ seconds) kept for a wait's last read.
_LAST_READ = 1.0
_LAST_READ_SHARE = 0.1


@attrs.frozen
class Deadline:
    """A ``time.monotonic`` instant, or ``None`` for no deadline."""

    at: float | None = None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        """The deadline ``seconds`` from now (``None``: never)."""
        return cls(None if seconds is None else time.monotonic() + seconds)

    def remaining(self) -> float | None:
        """Seconds left (negative once passed), or ``None``."""
        return None if self.at is None else self.at - time.monotonic()

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.at is not None and time.monotonic() >= self.at

    def clamp(self, delay: float) -> float:
        """``delay``, cut so that it ends at the deadline at the latest (never negative)."""
        left = self.remaining()
        return max(0.0, delay if left is None else min(delay, left))

    def pause(self, delay: float) -> float:
        """A wait's pause before its next read: ``delay``, cut so that the read
        still starts before the deadline, with a little time to be answered."""
        left = self.remaining()
        if left is None or delay < left:
            return max(0.0, delay)
        return max(0.0, left - min(_LAST_READ, left * _LAST_READ_SHARE))
