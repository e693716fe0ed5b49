"""What the database can fail with, and how a failure to open it is told.

asyncpg raises its own errors for the server and the protocol, ``OSError``
and timeouts for the network, and ``ValueError`` for a DSN it cannot parse -
whose message may quote a piece of the password, so it is never repeated.
"""

from __future__ import annotations

import asyncio

import asyncpg  # type: ignore[import-untyped]  # store.py says how to install it

from ..errors import ConfigurationError

__all__ = ["DB_ERRORS", "OPEN_ERRORS", "open_failure"]

#: What a broken connection, a refused login or a failed statement raises (a
#: connection the server dropped can also leave asyncpg "in another operation").
DB_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    asyncio.TimeoutError,
)
#: ... and what opening a connection adds: a DSN that does not parse.
OPEN_ERRORS = (*DB_ERRORS, ValueError)


def open_failure(what: str, exc: BaseException) -> ConfigurationError:
    """The error for ``what`` (e.g. "the shared quota") that could not be opened."""
    if isinstance(exc, ValueError):  # asyncpg.ClientConfigurationError is one too
        return ConfigurationError(f"cannot open {what}: the DSN is malformed")
    return ConfigurationError(f"cannot open {what}: {type(exc).__name__}: {str(exc)[:200]}")
