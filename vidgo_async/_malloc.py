"""A one-off nudge to glibc's allocator, so that socket reads stay off ``mmap``."""

from __future__ import annotations

import functools
import os

__all__ = ["let_glibc_serve_socket_reads_from_its_heap"]


@functools.cache
def let_glibc_serve_socket_reads_from_its_heap() -> None:
    """Free one 1 MiB block, once per process, where the C library is glibc.

    asyncio reads a socket into a fresh 256 KiB buffer, then shrinks it to
    what arrived. glibc hands out blocks that size by ``mmap`` until its
    threshold for that has risen, which it does for good when a larger
    block is freed. Until then every read of every response costs three
    system calls and fresh pages (mmap, mremap, munmap): in a batch, 25 µs
    of kernel time per conversion, ~10 % of its CPU (see BENCHMARKS.md).

    The effect is process-wide and lasting: glibc then serves blocks up to
    1 MiB from its heap instead of ``mmap``, and returns heap memory to the
    system less eagerly (its trim threshold follows to 2 MiB). Any process
    gets there once it has freed such a block. Set the environment variable
    ``VIDGO_ASYNC_KEEP_MALLOC=1`` to leave the allocator alone.
    """
    if os.environ.get("VIDGO_ASYNC_KEEP_MALLOC"):
        return
    try:
        glibc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):  # not a glibc system
        return
    if glibc.startswith("glibc"):
        block = bytearray(1 << 20)
        del block
