"""One line per event: the summaries ``executus show`` prints, free of any terminal code.

Pure functions of the events, so a report can reuse them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from pydantic import JsonValue

from executus._events import (
    ChildRunStarted,
    CriticDecided,
    Event,
    InFlight,
    ModelFailed,
    ModelRequested,
    ModelResponded,
    PostRunFinished,
    RunCancelled,
    RunFinished,
    RunResumed,
    RunStarted,
    SteerInjected,
    ToolFinished,
    ToolStarted,
)
from executus._forensics import format_clock, format_duration, quote

__all__ = ["IdleGap", "TimelineEntry", "describe_event", "relative_time", "timeline"]

DEFAULT_GAP_SECONDS = 30.0
"""Idle gaps at least this long are called out between timeline entries."""


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One event on a run's timeline.

    Attributes:
        event: the event.
        offset: seconds since the run started.
        summary: what happened, in one line.
        tone: how to colour it: ``plain``, ``good``, ``bad``, ``warn`` or ``quiet``.
    """

    event: Event
    offset: float
    summary: str
    tone: str


@dataclass(frozen=True, slots=True)
class IdleGap:
    """A stretch of time with no events, long enough to call out.

    Attributes:
        seconds: how long nothing was recorded.
        after_seq: the event the gap follows.
    """

    seconds: float
    after_seq: int


def relative_time(seconds: float) -> str:
    """An offset from the run's start, like ``+6m29s``."""
    return "+" + format_duration(seconds)


def _arguments(arguments: dict[str, JsonValue], limit: int = 60) -> str:
    shown = ", ".join(f"{key}={value!r}" for key, value in sorted(arguments.items()))
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _in_flight(items: Iterable[InFlight]) -> str:
    names = [f"{item.name} [{item.call_id}]" if item.call_id else f"model {item.name}" for item in items]
    return ", ".join(names) or "nothing"


def _tokens(count: int) -> str:
    return f"{count} token{'s' if count != 1 else ''}"


def describe_event(event: Event) -> tuple[str, str]:
    """A one-line summary of an event, and its tone (see :class:`TimelineEntry`)."""
    match event:
        case RunStarted():
            agent = event.agent
            limits = f"max_iterations {agent.max_iterations}"
            if agent.max_runtime is not None:
                limits += f", max_runtime {format_duration(agent.max_runtime)}"
            critic = f", critic {agent.critic.name}" if agent.critic else ""
            return f"{agent.name} on {agent.model} ({limits}{critic}): {quote(event.input, 60)}", "quiet"
        case ModelRequested():
            return f"step {event.step}: asked the model ({event.message_count} messages)", "quiet"
        case ModelResponded():
            parts = [quote(event.text, 70)] if event.text else []
            parts += [f"{call.name}({_arguments(call.arguments)})" for call in event.tool_calls]
            usage = _tokens(event.usage.total_tokens)
            return (
                f"step {event.step}: {' + '.join(parts) or '(empty reply)'} · {event.latency:.1f}s · {usage}",
                "plain",
            )
        case ModelFailed():
            return f"step {event.step}: {event.error}", "bad"
        case ToolStarted():
            return f"{event.name}({_arguments(event.arguments)}) [{event.call_id}]", "plain"
        case ToolFinished():
            took = format_duration(event.duration)
            if event.error is not None:
                return f"{event.name} [{event.call_id}] failed after {took}: {event.error}", "bad"
            return f"{event.name} [{event.call_id}] → {quote(event.result or '', 60)} ({took})", "plain"
        case SteerInjected():
            texts = "; ".join(quote(message.text, 50) for message in event.messages)
            images = sum(len(message.images) for message in event.messages)
            attached = f" + {images} image{'s' if images != 1 else ''}" if images else ""
            return f"from {event.source}: {texts}{attached}", "warn" if event.source == "critic" else "plain"
        case CriticDecided():
            return _describe_decision(event), "bad" if event.decision == "kill" else "warn"
        case RunCancelled():
            detail = f": {event.detail}" if event.detail else ""
            return f"{event.cause}{detail}; in flight: {_in_flight(event.in_flight)}", "bad"
        case RunResumed():
            moved = ""
            if event.old_deadline and event.new_deadline:
                moved = f"; deadline {format_clock(event.old_deadline)} → {format_clock(event.new_deadline)}"
            interrupted = _in_flight(event.interrupted)
            return f"after {format_duration(event.downtime)} down{moved}; interrupted: {interrupted}", "warn"
        case ChildRunStarted():
            return f"child run {event.child_run_id} from {event.tool_name} [{event.call_id}]", "plain"
        case PostRunFinished():
            if event.error is not None:
                return f"post-run hook failed: {event.error}", "bad"
            made = ", ".join(f"{a.name} ({a.media_type}, {a.size} B)" for a in event.artifacts)
            return f"artifacts: {made or 'none'}", "plain"
        case RunFinished():
            outcome = quote(event.output or "", 60) if event.status == "ok" else _ending(event)
            steps = f"{event.steps} step{'s' if event.steps != 1 else ''}"
            totals = f"{steps} · {_tokens(event.usage.total_tokens)} · {format_duration(event.duration)}"
            return f"{event.status}: {outcome} · {totals}", "good" if event.status == "ok" else "bad"
    raise AssertionError(f"unhandled event kind {event.kind}")  # pragma: no cover


def _ending(event: RunFinished) -> str:
    error = event.error
    if error is None:
        return "no error recorded"
    # A stop's error repeats the cancel cause recorded just before it; the message says more.
    return error.message if error.type in ("critic_kill", "timeout", "caller", "shutdown") else str(error)


def _describe_decision(event: CriticDecided) -> str:
    idle = f"after {format_duration(event.idle_seconds)} idle"
    if event.decision == "nudge":
        return f"nudge {idle}: {quote(event.nudge or '', 60)}"
    if event.decision == "extend" and event.old_deadline and event.new_deadline:
        return (
            f"extend {idle}: deadline {format_clock(event.old_deadline)} → {format_clock(event.new_deadline)}"
        )
    if event.decision == "raise_steps":
        return f"raise_steps {idle}: step limit {event.old_max_steps} → {event.new_max_steps}"
    return f"{event.decision} {idle}: {event.reason}"


def timeline(
    events: Iterable[Event], started_at: datetime, previous_at: datetime | None, gap_seconds: float
) -> Iterator[TimelineEntry | IdleGap]:
    """The timeline entries of ``events``, with idle gaps of ``gap_seconds`` or more called out.

    Args:
        events: events of one run, in seq order (any slice of its log).
        started_at: when the run started (offsets are measured from it).
        previous_at: the time of the event just before ``events``, or None at the start.
        gap_seconds: the shortest gap worth calling out.
    """
    for event in events:
        if previous_at is not None:
            gap = (event.at - previous_at).total_seconds()
            if gap >= gap_seconds:
                yield IdleGap(gap, event.seq - 1)
        previous_at = event.at
        summary, tone = describe_event(event)
        yield TimelineEntry(event, (event.at - started_at).total_seconds(), summary, tone)
