"""Every byte the CLI prints passes here: text through :func:`executus._text.terminal_text`, JSON
with the characters a terminal acts on escaped, so nothing from a log can drive the terminal."""

from __future__ import annotations

import json
import re
from typing import Final

import click

from executus._text import terminal_text

__all__ = ["echo", "json_text"]

# JSON already escapes the C0 controls; these it would print raw (ensure_ascii=False).
_RAW_IN_JSON: Final = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def echo(text: str = "", *, err: bool = False) -> None:
    """Print untrusted text as one or more lines (its line breaks kept, all else made inert)."""
    click.echo(terminal_text(text, newlines=True), err=err)


def json_text(value: object, *, indent: int | None = 2) -> str:
    """``value`` as JSON (non-ASCII text kept readable) that holds no character a terminal acts on.

    The escapes are JSON's own (``\\u009b``), so the document parses to the same value.
    """
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return _RAW_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
