"""Checks of a downloaded WAV file's RIFF header: its magic, and its declared size."""

from __future__ import annotations

__all__ = ["HEAD", "is_wav", "riff_mismatch"]

#: Bytes of the header checked: ``RIFF`` (or ``RF64``), the size, ``WAVE``.
HEAD = 12
#: RIFF sizes that promise nothing: streaming writers leave 0 or all ones there.
_UNKNOWN_SIZES = frozenset({0, 0xFFFFFFFF})


def is_wav(head: bytes) -> bool:
    """Whether ``head`` starts a RIFF/WAVE (or RF64/WAVE) file."""
    return len(head) >= HEAD and head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE"


def riff_mismatch(head: bytes, size: int) -> str | None:
    """Why a file of ``size`` bytes disagrees with the size its RIFF header declares, if it does.

    RF64 files and RIFF sizes of 0 or 0xFFFFFFFF declare nothing usable and
    always pass; so does a header too short to read.
    """
    if len(head) < 8 or head[:4] != b"RIFF":
        return None
    declared = int.from_bytes(head[4:8], "little")
    if declared in _UNKNOWN_SIZES or declared + 8 == size:
        return None
    return f"the RIFF header declares {declared + 8} bytes, got {size}"
