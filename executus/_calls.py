"""The tool calls of one model reply: unique ids, which are unanswered, and what a resume answers.

Model APIs match each tool result to its call by id and refuse a request in which a call of
the last reply has no result, so every call of a reply must end up with exactly one answer.
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from executus._events import ErrorInfo
from executus._messages import AssistantMessage, ToolCall, ToolMessage
from executus._state import RunState

__all__ = ["INTERRUPTED", "NOT_STARTED", "unanswered_calls", "unique_call_ids"]

INTERRUPTED: Final = ErrorInfo(
    type="Interrupted",
    message="the process running this tool stopped before it finished; it was not re-run",
)
"""The result a resumed run records for a tool call that was in flight when its process died."""
NOT_STARTED: Final = ErrorInfo(
    type="NotStarted",
    message="the process running this run stopped before this tool call started; it was not run",
)
"""The result a resumed run records for a call of a sequential batch that never started, so
that every tool call of a reply has its answer (model APIs refuse a request without one)."""


def unanswered_calls(state: RunState) -> list[ToolCall]:
    """The tool calls of the last reply that have no result yet, in call order."""
    answered: Counter[str] = Counter()
    for message in reversed(state.transcript):
        if isinstance(message, ToolMessage):
            answered[message.call_id] += 1
        elif isinstance(message, AssistantMessage):
            unanswered = []
            for call in message.tool_calls:
                if answered[call.id] > 0:
                    answered[call.id] -= 1
                else:
                    unanswered.append(call)
            return unanswered
        else:
            return []
    return []


def unique_call_ids(calls: tuple[ToolCall, ...]) -> tuple[ToolCall, ...]:
    """The calls with every id made unique and non-empty (``id#2`` for a repeat).

    A reply's results are matched to its calls by id; two calls with one id would leave one
    unanswered (and lose a result after a resume).
    """
    seen: set[str] = set()
    unique = []
    for index, call in enumerate(calls, start=1):
        new_id = call.id or f"call-{index}"
        suffix = 2
        while new_id in seen:
            new_id = f"{call.id or 'call'}#{suffix}"
            suffix += 1
        seen.add(new_id)
        unique.append(call if new_id == call.id else call.model_copy(update={"id": new_id}))
    return tuple(unique)
