"""Field-level diffs of events and of rebuilt model requests, and how times are compared.

Times are compared as instants within a tolerance (``time_tolerance`` seconds, 10 ms by
default), never as text, and so are the fields that are time differences (``latency``,
``duration``, ``idle_seconds``, ``downtime``). Why not exactly: virtual time is a float, so a
recorded 0.3 s may replay as 0.30000000000000004 s, which rounds to the same microsecond
almost always but not always; and a run recorded on the wall clock spent time between
events (commits, thread hand-offs) that a virtual replay does not. The replay re-anchors its
clock on the recorded timestamps wherever the recorded executor waited or carried on, so in
practice replayed times equal recorded ones to the microsecond; the tolerance only absorbs
rounding, and it is far below anything a deadline or a critic reacts to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from pydantic import JsonValue

from executus.events import Event, RunState, encode_event, rebuild

__all__ = ["FieldDifference", "canonical_request", "diff_events", "diff_values", "request_differences"]

_INSTANT_FIELDS: Final = frozenset({"at", "old_deadline", "new_deadline", "started_at", "next_attempt_at"})
_SECONDS_FIELDS: Final = frozenset({"latency", "duration", "idle_seconds", "downtime"})
_ENVELOPE: Final = frozenset({"run_id", "seq"})


@dataclass(frozen=True, slots=True)
class FieldDifference:
    """One field that differs between the recorded and the replayed value.

    Attributes:
        path: where, e.g. ``tool_calls[0].arguments.query`` or ``messages[0] (system).content``.
        expected: the recorded value (None when the field is absent there).
        actual: the replayed value (None when the field is absent there).
    """

    path: str
    expected: JsonValue
    actual: JsonValue

    def __str__(self) -> str:
        return f"{self.path}:\n    expected: {_show(self.expected)}\n    actual:   {_show(self.actual)}"


def _show(value: JsonValue) -> str:
    text = repr(value) if isinstance(value, str) else str(value) if value is not None else "(absent)"
    return text if len(text) <= 300 else f"{text[:297]}..."


def _instant(value: JsonValue) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _close(key: str, expected: JsonValue, actual: JsonValue, tolerance: float) -> bool:
    if key in _INSTANT_FIELDS:
        left, right = _instant(expected), _instant(actual)
        if left is not None and right is not None:
            return abs((left - right).total_seconds()) <= tolerance
    if key in _SECONDS_FIELDS and isinstance(expected, int | float) and isinstance(actual, int | float):
        return abs(float(expected) - float(actual)) <= tolerance
    return expected == actual


def _label(items: Sequence[JsonValue], index: int) -> str:
    item = items[index]
    if isinstance(item, dict) and isinstance(item.get("role"), str):
        return f"[{index}] ({item['role']})"
    return f"[{index}]"


def diff_values(
    expected: JsonValue, actual: JsonValue, path: str = "", *, tolerance: float = 0.01, key: str = ""
) -> list[FieldDifference]:
    """Every leaf that differs between two JSON values, with its path.

    Lists of objects with a ``name`` and no ``id`` (tool specs) are matched by name, other
    lists by position; instants and durations are compared within ``tolerance`` seconds.
    """
    if isinstance(expected, dict) and isinstance(actual, dict):
        differences: list[FieldDifference] = []
        for name in sorted(set(expected) | set(actual)):
            where = f"{path}.{name}" if path else name
            if name not in actual:
                differences.append(FieldDifference(where, expected[name], None))
            elif name not in expected:
                differences.append(FieldDifference(where, None, actual[name]))
            else:
                differences += diff_values(expected[name], actual[name], where, tolerance=tolerance, key=name)
        return differences
    if isinstance(expected, list) and isinstance(actual, list):
        if _by_name(expected) and _by_name(actual):
            return diff_values(_named(expected), _named(actual), path, tolerance=tolerance)
        differences = []
        for index in range(max(len(expected), len(actual))):
            if index >= len(actual):
                differences.append(FieldDifference(f"{path}{_label(expected, index)}", expected[index], None))
            elif index >= len(expected):
                differences.append(FieldDifference(f"{path}{_label(actual, index)}", None, actual[index]))
            else:
                differences += diff_values(
                    expected[index], actual[index], f"{path}{_label(expected, index)}", tolerance=tolerance
                )
        return differences
    if _close(key, expected, actual, tolerance):
        return []
    return [FieldDifference(path or "value", expected, actual)]


def _by_name(items: list[JsonValue]) -> bool:
    return bool(items) and all(
        isinstance(item, dict)
        and isinstance(item.get("name"), str)
        and not ({"id", "call_id", "role"} & set(item))
        for item in items
    )


def _named(items: list[JsonValue]) -> dict[str, JsonValue]:
    named: dict[str, JsonValue] = {}
    for item in items:
        assert isinstance(item, dict)
        named[f"[{item['name']}]"] = item
    return named


def _payload(event: Event, ignore: frozenset[str]) -> dict[str, Any]:
    data = encode_event(event)
    return {key: value for key, value in data.items() if key not in _ENVELOPE and key not in ignore}


def diff_events(
    expected: Event, actual: Event, *, tolerance: float, ignore: frozenset[str] = frozenset()
) -> list[FieldDifference]:
    """The fields that differ between a recorded and a replayed event (envelope seq/run id aside)."""
    differences = diff_values(_payload(expected, ignore), _payload(actual, ignore), tolerance=tolerance)
    # ``foo.bar`` paths come from nested dicts; tidy the "[name]" keys made for named lists.
    return [FieldDifference(d.path.replace(".[", "["), d.expected, d.actual) for d in differences]


def canonical_request(state: RunState) -> dict[str, JsonValue]:
    """The model request a run's state makes next, as the data its fingerprint covers."""
    return {
        "model": state.agent.model,
        "tools": [tool.model_dump(mode="json") for tool in state.agent.tools],
        "messages": [message.model_dump(mode="json") for message in state.transcript],
    }


def request_differences(expected_log: Sequence[Event], actual_log: Sequence[Event]) -> list[FieldDifference]:
    """Rebuild the request each log makes next (fold the log) and diff the two."""
    expected = canonical_request(rebuild(expected_log))
    actual = canonical_request(rebuild(actual_log))
    differences = diff_values(expected, actual, tolerance=0.0)
    return [FieldDifference(d.path.replace(".[", "["), d.expected, d.actual) for d in differences]
