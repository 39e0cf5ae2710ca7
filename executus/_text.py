"""Untrusted text made inert for a terminal: the one place that decides how a log string prints.

A run's log holds text nobody vetted: model replies, tool arguments, results and errors (often
fetched from the web), agent names, caller ids, run ids from an imported cassette. Printed raw,
such text can drive the terminal: OSC 52 writes the user's clipboard, OSC 8 plants hyperlinks,
OSC 0 retitles the window, CSI and DCS sequences move the cursor and repaint lines already
printed, a backspace or carriage return overwrites what came before, and bidi overrides make a
line read differently from what it holds. :func:`terminal_text` shows every such character as a
visible escape (``\\x1b``, ``\\u202e``) instead, on a terminal and in a pipe alike.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["ELLIPSIS", "terminal_text"]

ELLIPSIS: Final = "…"

_CONTROLS: Final = (
    "\x00-\x09\x0b-\x1f"  # C0 controls but newline: ESC, BEL, BS, CR, TAB, ...
    "\x7f-\x9f"  # DEL and the C1 controls (U+009B is a one-character CSI, U+009D an OSC)
    "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # bidi marks, embeddings, overrides, isolates
    "\ud800-\udfff"  # lone surrogates: not text, and unencodable on output
)
_UNSAFE: Final = re.compile(f"([{_CONTROLS}\n])")
_UNSAFE_BUT_NEWLINES: Final = re.compile(f"([{_CONTROLS}])")


def _visible(character: str) -> str:
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"  # pragma: no cover - nothing unsafe lies beyond the BMP today


def terminal_text(text: str, limit: int | None = None, *, newlines: bool = False) -> str:
    """``text`` with every control character, escape introducer and bidi control made visible.

    ESC, BEL, backspace, carriage return, tab and the other C0 controls, DEL, the C1 controls
    (U+0080 to U+009F), bidi marks, embeddings, overrides and isolates (U+202A to U+202E,
    U+2066 to U+2069) and lone surrogates print as ``\\x1b``, ``\\u202e`` and the like; the
    result holds none of them, so printing it can never drive a terminal.

    Args:
        text: untrusted text, e.g. from a run's log or a cassette.
        limit: cut the result to at most this many characters, ending in ``…``. The cut is
            made on the escaped text and never splits an escape.
        newlines: keep line breaks (for multi-line reports); by default they show as ``\\x0a``.
    """
    pattern = _UNSAFE_BUT_NEWLINES if newlines else _UNSAFE
    escaped = pattern.sub(lambda match: _visible(match.group()), text)
    if limit is None or len(escaped) <= limit:
        return escaped
    budget = max(limit - len(ELLIPSIS), 0)
    kept: list[str] = []
    # split() with a group alternates runs of safe text (cut anywhere) with one unsafe
    # character each (whose escape is kept whole or not at all).
    for index, part in enumerate(pattern.split(text)):
        piece = _visible(part) if index % 2 else part
        if len(piece) > budget:
            if not index % 2:
                kept.append(piece[:budget])
            break
        kept.append(piece)
        budget -= len(piece)
    return "".join(kept) + ELLIPSIS
