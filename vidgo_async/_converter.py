"""The one cattrs converter, beneath every module that registers hooks on it.

Each shape's hooks are registered beside what defines that shape: the task
handle's (a JSON of our own) in ``_models``, the vendor's answers in
``_wire.convert``. Journal rows need none.
"""

from __future__ import annotations

import cattrs

__all__ = ["converter"]

converter = cattrs.Converter(detailed_validation=False)
