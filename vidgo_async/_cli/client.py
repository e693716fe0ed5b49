"""The clients the commands use, built from the connection flags."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from typing import Any

from vidgo_async import VidgoClient

from .exits import UsageError

__all__ = ["DOWNLOAD_TIMEOUT", "download_client", "open_client"]

#: Seconds for a whole download, retries included: the client's own default for
#: ``download`` (an hour), which the core keeps private.
DOWNLOAD_TIMEOUT = 3600.0

# ``download`` sends no API key (storage hosts never get one), but a client needs one.
_UNUSED_KEY = "download-sends-no-key"


@contextlib.asynccontextmanager
async def open_client(args: argparse.Namespace) -> AsyncIterator[VidgoClient]:
    """A client from ``--api-key``, ``--base-url``, ``--max-polls-per-second``,
    ``--max-submits-per-second`` (and ``VIDGO_*``); with ``--shared-quota``, under a
    ``SharedQuota`` (which takes the submits' cap) opened before it and closed after it."""
    if args.shared_quota is None:
        if args.quota_namespace is not None:
            raise UsageError("--quota-namespace: only with --shared-quota")
        async with _client(args) as client:
            yield client
        return
    try:
        # Late binding: only a shared quota needs the postgres extra (and asyncpg).
        from vidgo_async.postgres import SharedQuota
    except ImportError as exc:
        raise UsageError(f"--shared-quota: {exc}") from None
    try:
        quota = SharedQuota(
            args.shared_quota,
            namespace=quota_namespace(args),
            max_submits_per_second=args.max_submits_per_second,
        )
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--quota-namespace: {exc}") from None
    async with quota, _client(args, quota=quota, max_submits_per_second=None) as client:
        yield client


def quota_namespace(args: argparse.Namespace) -> str:
    """``--quota-namespace``, else one derived from the API key: every process using
    the key shares its quota, and the key itself is never written to the database."""
    if args.quota_namespace is not None:
        return str(args.quota_namespace)
    key = args.api_key or os.environ.get("VIDGO_API_KEY") or ""
    digest = hashlib.sha256(b"vidgo-async quota namespace\x00" + key.encode()).hexdigest()
    return f"key-{digest[:16]}"


def _client(args: argparse.Namespace, **kwargs: Any) -> VidgoClient:
    kwargs.setdefault("max_submits_per_second", args.max_submits_per_second)
    return VidgoClient(
        args.api_key,
        base_url=args.base_url,
        max_polls_per_second=args.max_polls_per_second,
        **kwargs,
    )


def download_client(args: argparse.Namespace) -> VidgoClient:
    """A client for downloads only: no API key asked for; ``--base-url`` still decides
    whether loopback storage is allowed (the fake server's)."""
    return VidgoClient(_UNUSED_KEY, base_url=args.base_url)
