"""``python -m vidgo_async``: the same as the ``vidgo-async`` command."""

import sys

from ._cli import main

sys.exit(main())
