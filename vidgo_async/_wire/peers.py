"""Which hosts may serve a download: https to public addresses only, unless told otherwise;
and where a download lands."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
import urllib.parse
from pathlib import Path

import aiohttp
from aiohttp.abc import ResolveResult
from yarl import URL

from ..errors import TransportError

__all__ = [
    "PublicResolver",
    "check_url",
    "download_target",
    "is_refused",
    "parse_url",
    "refuse_existing",
    "refused_address",
    "safe_file_name",
    "url_label",
]

_METADATA = frozenset(map(ipaddress.ip_address, ("169.254.169.254", "fd00:ec2::254")))
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address


# What a URL may not hold as it is: a character RFC 3986 does not allow, or a "%" that
# starts no escape.
_UNENCODED = re.compile(r"[^A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]|%(?![0-9A-Fa-f]{2})")


def parse_url(text: str) -> URL:
    """``text`` as a URL whose escapes reach the host as written: a signed storage URL's
    signature must arrive as signed (yarl would re-quote ``%2F`` as ``/``). Only what may
    not stand as it is gets quoted (a space, a letter past ASCII, a lone ``%``); a host
    past ASCII is left to yarl, which writes it in IDNA."""
    if not urllib.parse.urlsplit(text).netloc.isascii():
        return URL(text)
    return URL(
        _UNENCODED.sub(lambda found: urllib.parse.quote(found[0], safe=""), text), encoded=True
    )


def check_url(url: str, allow_private: bool) -> URL:
    """The parsed URL; ValueError unless absolute http(s), credential-free and allowed
    (TypeError unless a string)."""
    if not isinstance(url, str):
        raise TypeError(f"the URL must be a str, got {type(url).__name__}")
    try:
        parsed = parse_url(url)
        parsed.host  # noqa: B018 - decodes an IDNA host, which may fail ("xn--zz")
    except (TypeError, ValueError):  # UnicodeError included
        raise ValueError("not a valid URL") from None
    if not parsed.is_absolute() or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"not an absolute http(s) URL: {url_label(parsed)}")
    if parsed.user is not None or parsed.password is not None:
        raise ValueError(f"refusing a URL with credentials: {url_label(parsed)}")
    if allow_private:
        return parsed
    if parsed.scheme != "https":
        raise ValueError(
            f"refusing {parsed.scheme}: {url_label(parsed)} must be https (plain http only"
            " while the client's base URL is on this machine, as a fake server is)"
        )
    try:
        address = ipaddress.ip_address(parsed.host)
    except ValueError:
        return parsed  # a name: resolved and checked later
    if is_refused(address):
        raise ValueError(f"refusing {url_label(parsed)}: {address} is not a public address")
    return parsed


def is_refused(address: _IP) -> bool:
    """Loopback, private, link-local, reserved, multicast, unspecified or metadata."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            return is_refused(embedded)
    return (
        address in _METADATA
        or not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


async def refused_address(url: URL) -> str | None:
    """The first refused address the URL's host resolves to, if any."""
    host, loop = url.host or "", asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, url.port, type=socket.SOCK_STREAM)
    except UnicodeError:  # a host name no resolver accepts ("xn--zz", an empty label)
        raise TransportError(
            f"cannot resolve {host!r:.80}: not a valid host name", sent=False
        ) from None
    except socket.gaierror as exc:
        raise TransportError(f"cannot resolve {host} ({exc.strerror})", sent=False) from None
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if is_refused(address):
            return str(address)
    return None


def url_label(url: URL) -> str:
    """The URL without its credentials, query and fragment: signed storage URLs carry
    tokens in the query."""
    if url.is_absolute():
        url = url.with_user(None)
    return str(url.with_query(None).with_fragment(None))


def download_target(dest: str | os.PathLike[str], url: URL, overwrite: bool) -> Path:
    """The file to write: ``dest``, or a file named after the URL in directory ``dest``."""
    path = Path(os.fspath(dest))
    if path.is_dir():  # named after the URL path's last segment
        path = path / (safe_file_name(url.name) or "download.wav")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"directory {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory")
    refuse_existing(path, overwrite)
    return path


def refuse_existing(path: Path, overwrite: bool) -> None:
    """Raise FileExistsError if ``path`` exists and is not to be replaced."""
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} exists (pass overwrite=True to replace it)")


def safe_file_name(text: str) -> str:
    """``text`` as a file name: other characters than letters, digits, ``.``, ``_``,
    ``-`` replaced, no leading dot, 200 characters at most (empty if nothing is left)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".")[:200]


class PublicResolver(aiohttp.abc.AbstractResolver):
    """aiohttp's default resolver, keeping only public addresses for every host but
    the API's: a download connects where the check said it would, so a name that
    resolves elsewhere the second time (DNS rebinding) cannot reach a private peer,
    whatever the size of the answer."""

    def __init__(self, api_host: str) -> None:
        self._api_host = api_host
        self._resolver = aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        infos = await self._resolver.resolve(host, port, family)
        if host == self._api_host:
            return infos
        public = [info for info in infos if not is_refused(ipaddress.ip_address(info["host"]))]
        if not public:
            raise OSError(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        await self._resolver.close()
