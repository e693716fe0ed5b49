"""The API key out of every text the SDK repeats from a server: messages, excerpts of
bodies, header values, URLs.

Redaction works on decoded text - parsed JSON strings, decoded bodies, header
values - never on the raw bytes: a raw replace misses the key when it is
escaped, and corrupts honest answers when a short key occurs in their structure.
"""

from __future__ import annotations

import functools
import re
from typing import Any

__all__ = ["REDACTED", "may_hold", "redact", "redact_json"]

#: What stands in for a secret in any text we repeat.
REDACTED = "[redacted]"

# A key of _LONG_KEY characters or more occurring anywhere in an answer is the
# server echoing it: it is redacted from every string and object key. A shorter
# one (a test key such as "task", against a local fake) may occur in honest data
# by chance: the values the SDK reads as data (_kept) and object keys then stay
# exact, and the same letters are redacted from the words of messages.
_LONG_KEY = 16


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` replaced, however it is written.

    Besides the key itself this finds it with any of its characters
    JSON-escaped (``\\/``, ``\\uXXXX``) or percent-encoded (``quote``,
    ``quote_plus``: a key holds no space), in any mix and hex case.
    """
    if not may_hold(text, secret):
        return text
    return _pattern(secret).sub(REDACTED, text)


def may_hold(text: str, secret: str) -> bool:
    """Whether ``text`` may hold ``secret`` in some form: every form but the key
    itself needs a backslash or a percent sign."""
    return bool(secret) and (secret in text or "\\" in text or "%" in text)


@functools.lru_cache(maxsize=8)
def _pattern(secret: str) -> re.Pattern[str]:
    return re.compile("".join(f"(?:{'|'.join(_forms(char))})" for char in secret))


def _forms(char: str) -> list[str]:
    """Patterns of the ways JSON or a URL may write ``char``."""
    forms = [re.escape(char)]
    if char in '"\\/':
        forms.append(re.escape("\\" + char))
    units = char.encode("utf-16-be")  # a character past U+FFFF is a surrogate pair in JSON
    forms.append("".join("\\\\u" + _hex(units[i : i + 2]) for i in range(0, len(units), 2)))
    forms.append("".join("%" + _hex(bytes([byte])) for byte in char.encode("utf-8")))
    return forms


def _hex(data: bytes) -> str:
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in data.hex())


def _kept(name: str) -> bool:
    """Whether the string under key ``name`` is one the SDK reads as data: an id
    it sends back, a ``status`` or ``code`` it matches, a time, number or URL it
    parses or fetches. These stay exact, so that an honest answer reads the same
    whatever the key (a download redacts its URL wherever it repeats it)."""
    return name in _KEPT or name.endswith(("_id", "_url", "_time"))


_KEPT = frozenset({"id", "status", "code", "url", "progress", "credits_amount"})


def redact_json(value: Any, secret: str) -> Any:
    """Parsed JSON ``value`` with ``secret`` redacted from its strings, in place.

    A short key (under ``_LONG_KEY`` characters) is left in object keys and in
    the values of :func:`_kept` keys. The walk is iterative: a nesting as deep
    as the JSON decoder allows is no ``RecursionError``.
    """
    if isinstance(value, str):
        return redact(value, secret)
    everywhere = len(secret) >= _LONG_KEY
    pending = [value] if isinstance(value, (dict, list)) else []
    while pending:
        node = pending.pop()
        if everywhere and isinstance(node, dict):
            for name in [name for name in node if redact(name, secret) != name]:
                node[redact(name, secret)] = node.pop(name)
        items: Any = node.items() if isinstance(node, dict) else enumerate(node)
        for name, item in items:
            if not everywhere and isinstance(name, str) and _kept(name):
                continue
            if isinstance(item, str):
                node[name] = redact(item, secret)  # replaces a value: the dict's size holds
            elif isinstance(item, (dict, list)):
                pending.append(item)
    return value
