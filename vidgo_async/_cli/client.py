"""The clients the commands use, built from the connection flags."""

from __future__ import annotations

import argparse

from vidgo_async import VidgoClient

__all__ = ["DOWNLOAD_TIMEOUT", "download_client", "make_client"]

#: Seconds for a whole download, retries included: the client's own default for
#: ``download`` (an hour), which the core keeps private.
DOWNLOAD_TIMEOUT = 3600.0

# ``download`` sends no API key (storage hosts never get one), but a client needs one.
_UNUSED_KEY = "download-sends-no-key"


def make_client(args: argparse.Namespace) -> VidgoClient:
    """A client from ``--api-key``, ``--base-url``, ``--max-polls-per-second`` (and ``VIDGO_*``)."""
    return VidgoClient(
        args.api_key, base_url=args.base_url, max_polls_per_second=args.max_polls_per_second
    )


def download_client(args: argparse.Namespace) -> VidgoClient:
    """A client for downloads only: no API key asked for; ``--base-url`` still decides
    whether loopback storage is allowed (the fake server's)."""
    return VidgoClient(_UNUSED_KEY, base_url=args.base_url)
