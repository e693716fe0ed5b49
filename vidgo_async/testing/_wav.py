"""Valid WAV bytes of any size, produced lazily in chunks.

The fake storage host serves files as large as a real conversion (hundreds of
megabytes) without ever holding one in memory: a 44-byte RIFF/WAVE header
followed by silence, cut into chunks on demand.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

HEADER_SIZE = 44
"""Size of the canonical PCM header; the smallest valid file has no samples."""

_CHUNK_SIZE = 64 * 1024


def wav_header(
    total_size: int, *, sample_rate: int = 44100, channels: int = 2, bits: int = 16
) -> bytes:
    """Build the canonical 44-byte PCM WAV header for a file of ``total_size`` bytes.

    Args:
        total_size: Size of the whole file, header included; at least 44.
        sample_rate: Samples per second.
        channels: Number of interleaved channels.
        bits: Bits per sample.

    Returns:
        The header bytes.

    Raises:
        ValueError: ``total_size`` is smaller than the header.
    """
    if total_size < HEADER_SIZE:
        raise ValueError(f"a WAV file needs at least {HEADER_SIZE} bytes, got {total_size}")
    block_align = channels * bits // 8
    data_size = total_size - HEADER_SIZE
    return b"".join(
        [
            b"RIFF",
            struct.pack("<I", total_size - 8),
            b"WAVE",
            b"fmt ",
            struct.pack(
                "<IHHIIHH",
                16,
                1,
                channels,
                sample_rate,
                sample_rate * block_align,
                block_align,
                bits,
            ),
            b"data",
            struct.pack("<I", data_size),
        ]
    )


def iter_wav(
    total_size: int, *, start: int = 0, stop: int | None = None, chunk_size: int = _CHUNK_SIZE
) -> Iterator[bytes]:
    """Yield the bytes ``file[start:stop]`` of a silent WAV file of ``total_size`` bytes.

    Args:
        total_size: Size of the whole file, header included; at least 44.
        start: First byte to produce (for ranged requests).
        stop: Byte after the last one to produce; None for the end of the file.
        chunk_size: Largest chunk yielded.

    Yields:
        Consecutive chunks, none larger than ``chunk_size``.
    """
    header = wav_header(total_size)
    end = total_size if stop is None else min(stop, total_size)
    silence = bytes(chunk_size)
    position = start
    while position < end:
        if position < HEADER_SIZE:
            piece = header[position : min(end, HEADER_SIZE, position + chunk_size)]
        else:
            piece = silence[: min(chunk_size, end - position)]
        yield piece
        position += len(piece)
