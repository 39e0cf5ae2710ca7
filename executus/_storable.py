"""Text that every store can hold: what enters an event from outside is made valid here.

A tool result, a model's text or a tool argument can hold text that is not valid Unicode:
``os.listdir`` gives lone surrogates for a file name that is not UTF-8, and such text cannot
be encoded to UTF-8 at all. PostgreSQL's text columns also refuse NUL. Where outside text
enters an event (the core's inputs), lone surrogates and NUL are replaced by U+FFFD, the
Unicode replacement character, so that a log is always writable, hashable and readable on
every backend. Valid text, including every non-BMP character, passes unchanged.
"""

from __future__ import annotations

import re
from typing import Final, TypeVar

from pydantic import JsonValue

__all__ = ["REPLACEMENT", "clean_json", "clean_text"]

REPLACEMENT: Final = "\ufffd"
_UNSTORABLE: Final = re.compile("[\x00\ud800-\udfff]")

_Text = TypeVar("_Text", str, None)


def clean_text(text: _Text) -> _Text:
    """``text`` with each lone surrogate and NUL replaced by U+FFFD (None stays None)."""
    if text is None or (text.isascii() and "\x00" not in text):
        return text
    return _UNSTORABLE.sub(REPLACEMENT, text)


def clean_json(value: JsonValue) -> JsonValue:
    """A JSON value with :func:`clean_text` applied to every string in it, keys included."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(key): clean_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [clean_json(item) for item in value]
    return value
