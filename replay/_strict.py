"""Reading cassette lines as strictly as the store writes: bounded JSON, valid Unicode, run ids
that are identifiers, and the canonical text of each event (nothing coerced)."""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

from replay._errors import CassetteError

__all__ = [
    "MAX_DEPTH",
    "MAX_INTEGER",
    "MAX_NAME_LENGTH",
    "MAX_RUN_ID_LENGTH",
    "RUN_ID_PATTERN",
    "check_run_id",
    "first_difference",
    "json_line",
    "shown",
]

MAX_RUN_ID_LENGTH: Final = 128
RUN_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]*")
"""What an imported run id may hold: letters, digits and ``. _ : @ + -``, at most 128 of them."""
MAX_NAME_LENGTH: Final = 200
"""The longest agent name, model name or caller id the store keeps."""
MAX_DEPTH: Final = 64
"""The deepest nesting of JSON arrays and objects a cassette line may have."""
MAX_INTEGER: Final = 2**63 - 1
"""The largest integer (in magnitude) a cassette may hold: the store's 64-bit columns."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _bounded_integer(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_INTEGER:
        raise ValueError(f"the integer {text[:24]}{'…' if len(text) > 24 else ''} is out of range")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:24]} is out of range")
    return value


def _check_value(value: Any, number: int) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH` and text that is not valid Unicode."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise CassetteError(f"nested more than {MAX_DEPTH} levels deep", number)
        if isinstance(item, str):
            _check_text(item, number)
        elif isinstance(item, list):
            pending += [(element, depth + 1) for element in item]
        elif isinstance(item, dict):
            for key, element in item.items():
                _check_text(key, number)
                pending.append((element, depth + 1))


def _check_text(text: str, number: int) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(text[error.start])
        raise CassetteError(
            f"text holds a lone surrogate (U+{code:04X}): not valid Unicode", number
        ) from None


def json_line(text: str, number: int) -> dict[str, Any]:
    try:
        value = json.loads(
            text, parse_constant=_no_constant, parse_int=_bounded_integer, parse_float=_finite_float
        )
    except json.JSONDecodeError as error:
        raise CassetteError(f"not valid JSON ({error.msg} at column {error.colno})", number) from None
    except ValueError as error:
        raise CassetteError(str(error), number) from None
    except RecursionError:
        raise CassetteError(f"nested more than {MAX_DEPTH} levels deep", number) from None
    if not isinstance(value, dict):
        raise CassetteError(f"expected a JSON object, got {type(value).__name__}", number)
    _check_value(value, number)
    return value


def shown(text: str, limit: int = 40) -> str:
    """Untrusted text quoted for a message: escaped by repr, cut to ``limit`` characters first."""
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


def check_run_id(run_id: str, number: int = 1) -> None:
    """Refuse a run id that is empty, longer than :data:`MAX_RUN_ID_LENGTH` or holds characters
    outside :data:`RUN_ID_PATTERN` (which keeps escape sequences and paths out of run ids).

    Raises:
        CassetteError: naming line ``number``.
    """
    if len(run_id) > MAX_RUN_ID_LENGTH:
        raise CassetteError(f"run id {shown(run_id)} is longer than {MAX_RUN_ID_LENGTH} characters", number)
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise CassetteError(
            f"run id {shown(run_id)} may hold only letters, digits and . _ : @ + - (and not start with one)",
            number,
        )


def first_difference(given: Any, canonical: Any, path: str = "") -> str | None:
    """Where ``given`` (a line as written) differs from its canonical form, for the message."""
    if isinstance(given, dict) and isinstance(canonical, dict):
        for key in sorted(set(given) | set(canonical)):
            where = f"{path}.{key}" if path else key
            if key not in canonical:
                return f"{where} is not a field of this event"
            if key not in given:
                return f"{where} is missing"
            found = first_difference(given[key], canonical[key], where)
            if found:
                return found
        return None
    if isinstance(given, list) and isinstance(canonical, list) and len(given) == len(canonical):
        for index, (left, right) in enumerate(zip(given, canonical, strict=True)):
            found = first_difference(left, right, f"{path}[{index}]")
            if found:
                return found
        return None
    if type(given) is type(canonical) and given == canonical:
        return None
    written, expected = (shown(json.dumps(value, ensure_ascii=False)) for value in (given, canonical))
    return f"{path} is {written} where the store writes {expected}"
