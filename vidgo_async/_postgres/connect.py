"""What the database can fail with, and how a failure to open it is told.

asyncpg raises its own errors for the server and the protocol, ``OSError``
and timeouts for the network, and ``ValueError`` for a DSN it cannot parse -
whose message may quote a piece of the password, so it is never repeated -
or ``OverflowError`` for a port out of range.
"""

from __future__ import annotations

import asyncio
import os
import urllib.parse

import asyncpg  # type: ignore[import-untyped]  # store.py says how to install it

from ..errors import ConfigurationError

__all__ = [
    "CONNECTION_ERRORS",
    "DB_ERRORS",
    "MALFORMED_DSN",
    "OPEN_ERRORS",
    "check_ports",
    "described",
    "open_failure",
]

#: What a broken connection, a refused login or a failed statement raises (a
#: connection the server dropped can also leave asyncpg "in another operation").
DB_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    asyncio.TimeoutError,
)
#: ... of which a lost connection, or one the server cannot give yet (restarting, failing
#: over): worth trying again. A failed statement (a revoked privilege, a dropped table) is not.
CONNECTION_ERRORS = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
    OSError,
    asyncio.TimeoutError,
)
#: What a DSN that does not parse raises (asyncpg.ClientConfigurationError is a
#: ValueError; a port past 65535 an OverflowError).
MALFORMED_DSN = (ValueError, OverflowError)
#: ... and what opening a connection raises: all of the above.
OPEN_ERRORS = (*DB_ERRORS, *MALFORMED_DSN)


def check_ports(dsn: str) -> None:
    """Refuse a port past 65535 in a DSN's host list or query, or in ``$PGPORT``:
    asyncpg takes such a port modulo 65536 for a host name, and connects to another.

    Raises:
        ValueError: Such a port (without quoting the DSN: it may hold a password).
    """
    parts = urllib.parse.urlsplit(dsn)
    hosts = parts.netloc.rpartition("@")[2].split(",")
    ports = [host.rpartition(":")[2] for host in hosts if ":" in host.rpartition("]")[2]]
    for value in urllib.parse.parse_qs(parts.query).get("port", []):
        ports += value.split(",")
    ports.append(os.environ.get("PGPORT", ""))
    if any(_past_65535(port) for port in ports):
        raise ValueError("the DSN (or $PGPORT) names a port past 65535")


def _past_65535(port: str) -> bool:
    try:
        return int(port) > 65535  # int() as asyncpg reads it: "+90091" and " 90091" too
    except ValueError:
        return False


def described(exc: BaseException) -> str:
    """``exc`` for a message: its type, and its text if it has one (a timeout has none)."""
    text = str(exc)[:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def open_failure(what: str, exc: BaseException) -> ConfigurationError:
    """The error for ``what`` (e.g. "the shared quota") that could not be opened."""
    if isinstance(exc, MALFORMED_DSN):
        return ConfigurationError(f"cannot open {what}: the DSN is malformed")
    return ConfigurationError(f"cannot open {what}: {described(exc)}")
