"""The ``vidgo-async`` command line: a thin shell over the public API.

Only ``vidgo_async``, ``vidgo_async.errors`` and ``vidgo_async.testing`` are
imported from the SDK; rich (extra ``cli``) draws the progress bar when present.
"""

from .main import main

__all__ = ["main"]
