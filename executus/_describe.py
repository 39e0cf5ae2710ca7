"""One line per event: what happened, in words, with untrusted text made inert for a terminal.

Pure functions of an event, shared by ``executus show`` (the terminal timeline) and the HTML
report (:mod:`executus.report`), so both say the same thing about the same event.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Final, get_args

from pydantic import JsonValue

from executus._attempts import failure_label
from executus._events import (
    CancelCause,
    ChildRunStarted,
    CriticDecided,
    Event,
    InFlight,
    ModelAttemptFailed,
    ModelChunk,
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
from executus._text import terminal_text

__all__ = ["describe_event"]

_CANCEL_CAUSES: Final = frozenset(get_args(CancelCause))


def _arguments(arguments: dict[str, JsonValue], limit: int = 60) -> str:
    # Strings raw in quotes, so terminal_text sees (and never cuts through) what needs escaping.
    shown = ", ".join(
        f"{key}='{value}'" if isinstance(value, str) else f"{key}={json.dumps(value, ensure_ascii=False)}"
        for key, value in sorted(arguments.items())
    )
    return terminal_text(shown, limit)


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
        case ModelChunk():
            return _describe_chunk(event), "quiet"
        case ModelResponded():
            parts = [quote(event.text, 70)] if event.text else []
            parts += [f"{call.name}({_arguments(call.arguments)})" for call in event.tool_calls]
            usage = _tokens(event.usage.total_tokens)
            return (
                f"step {event.step}: {' + '.join(parts) or '(empty reply)'} · {event.latency:.1f}s · {usage}",
                "plain",
            )
        case ModelAttemptFailed():
            wait = format_duration((event.next_attempt_at - event.at).total_seconds())
            return (
                f"step {event.step}: attempt {event.attempt} failed, {failure_label(event.error)}; "
                f"retrying in {wait} at {format_clock(event.next_attempt_at)}",
                "warn",
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
            taken = ""
            if event.worker_id is not None:
                source = f" from {quote(event.previous_owner)}" if event.previous_owner else ""
                how = " by force" if event.forced else ""
                taken = f"{quote(event.worker_id)} took over{source}{how}; "
            rerun = f"; run again (idempotent): {', '.join(map(quote, event.rerun))}" if event.rerun else ""
            down = format_duration(event.downtime)
            return f"{taken}after {down} down{moved}; interrupted: {interrupted}{rerun}", "warn"
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
    # A kind added to the catalogue after this function: named, and shown in full elsewhere.
    return event.kind, "quiet"


def _describe_chunk(event: ModelChunk) -> str:
    """The streamed text in full (a live view shows the reply as it grows), then call fragments."""
    parts = []
    if event.text:
        parts.append(f"“{terminal_text(' '.join(event.text.split()))}”")
    for fragment in event.tool_calls:
        name = f"{fragment.name} " if fragment.name else ""
        call = f"[{fragment.id}] " if fragment.id else ""
        parts.append(f"call #{fragment.index} {name}{call}+{len(fragment.arguments)} chars of arguments")
    return f"step {event.step}: streaming {' + '.join(parts) or '(nothing)'}"


def _ending(event: RunFinished) -> str:
    error = event.error
    if error is None:
        return "no error recorded"
    # A stop's error repeats the cancel cause recorded just before it; the message says more.
    return error.message if error.type in _CANCEL_CAUSES else str(error)


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
