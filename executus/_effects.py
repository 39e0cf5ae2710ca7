"""What the core asks its driver to do: the effects of a decision.

Effects are data. The driver performs them in order, after the decision's events are
committed (the durability rule: a log always says what was started before it started).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeAlias

from executus._events import CancelCause, ErrorInfo, Event, RunStatus
from executus._messages import AssistantMessage, Message, ToolCall
from executus._state import RunState

__all__ = [
    "STATUS_OF_CAUSE",
    "CallModel",
    "CancelInFlight",
    "Decision",
    "Effect",
    "Finish",
    "Outcome",
    "RunPostRun",
    "StartChild",
    "StartTools",
    "WaitToRetry",
    "WakeAt",
    "decided_outcome",
]


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the run ends; decided once, by the first cause, and never changed after."""

    status: RunStatus
    output: str | None = None
    error: ErrorInfo | None = None


STATUS_OF_CAUSE: Final[Mapping[CancelCause, RunStatus]] = {
    "caller": "cancelled",
    "shutdown": "cancelled",
    "parent_stopped": "cancelled",
    "timeout": "timeout",
    "critic_kill": "killed",
}


def decided_outcome(state: RunState) -> Outcome | None:
    """The outcome a log records before its ``run_finished`` (or without one), if any."""
    if state.cancellation is not None:
        cause, detail = state.cancellation.cause, state.cancellation.detail
        return Outcome(STATUS_OF_CAUSE[cause], error=ErrorInfo(type=cause, message=detail))
    if state.error is not None:
        return Outcome("error", error=state.error)
    last = state.transcript[-1]
    if isinstance(last, AssistantMessage) and not last.tool_calls:
        return Outcome("ok", output=last.text or "")
    return None


@dataclass(frozen=True, slots=True)
class CallModel:
    """Call the model for ``step`` with this snapshot of the transcript."""

    step: int
    messages: Sequence[Message]
    """An immutable snapshot of the transcript (a :class:`MessagesSnapshot`)."""


@dataclass(frozen=True, slots=True)
class StartTools:
    """Start these tool calls (concurrently when there are several)."""

    calls: tuple[ToolCall, ...]


@dataclass(frozen=True, slots=True)
class StartChild:
    """Let the tool call ``call_id`` start its child run (refused once the outcome is decided)."""

    call_id: str
    child_run_id: str
    allowed: bool


@dataclass(frozen=True, slots=True)
class WakeAt:
    """Fire the watchdog timer at ``at`` (replacing any earlier arming); None disarms it."""

    at: datetime | None


@dataclass(frozen=True, slots=True)
class WaitToRetry:
    """Report :class:`~executus._inputs.RetryDue` for ``step`` once the clock reaches ``at``.

    The wait counts as the model call in flight: :class:`CancelInFlight` ends it."""

    step: int
    at: datetime


@dataclass(frozen=True, slots=True)
class CancelInFlight:
    """Cancel the model call and tool calls still running; their results are no longer wanted."""


@dataclass(frozen=True, slots=True)
class RunPostRun:
    """Run the session's post-run hook and cleanup for this outcome, then report PostRunDone."""

    outcome: Outcome


@dataclass(frozen=True, slots=True)
class Finish:
    """The run is over (``run_finished`` is among the decision's events)."""

    outcome: Outcome


Effect: TypeAlias = (
    CallModel | StartTools | StartChild | WakeAt | WaitToRetry | CancelInFlight | RunPostRun | Finish
)


@dataclass(frozen=True, slots=True)
class Decision:
    """The events to record and the effects to perform, in order, for one input."""

    events: Sequence[Event]
    effects: Sequence[Effect]
