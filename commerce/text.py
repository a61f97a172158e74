"""Text a database can store: the one check JSON bodies (server/) and socket text (realtime/) share.

PostgreSQL refuses NUL in text, and UTF-8 cannot encode a lone surrogate (JSON and Socket.IO
both let a client send one as `\\ud800`), so such text would fail in the database, not where it
came in. Both checks live here, in the pure domain package both sides may import.
"""

from __future__ import annotations

import re
from typing import Any


def is_storable(text: str) -> bool:
    """Whether `text` holds neither a NUL nor a lone surrogate."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def has_unstorable_text(data: Any) -> bool:
    """Whether any string in decoded JSON (a key or a value, at any depth) is not storable."""
    stack = [data]  # iterative: the parser allows deeper nesting than a recursive walk would
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not is_storable(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def mask(text: str, words: list[str]) -> tuple[str, bool]:
    """Replace banned words (case-insensitive) with asterisks; says whether anything changed.

    The one rule for every neighbour's text: live comments and questions, and 晒单 posts."""
    masked = text
    for word in sorted(words, key=len, reverse=True):
        if word:
            masked = re.sub(re.escape(word), "*" * len(word), masked, flags=re.IGNORECASE)
    return masked, masked != text
